"""What the tabs know about the app they are part of, and which events may run side by side.

AppContext is made once (ui.build_app, from app.py's flags and the environment) and passed to
every tab's build(ctx); a handler that needs it gets it bound at wiring time (AppContext.bind).
No tab reads a process-wide job manager or os.environ for it.

The concurrency lanes are stated where each event is wired (`**MODELS`, `**HEAVY`, ...), for a
class on one 2-core machine. Events that run every model of the zoo take both cores each: two
at a time, in one line, so they do not thrash. The Predict tab's /predict and /familiarity
(SERVE) mostly wait: up to 24 at once hand their pictures to analysis.serve's batcher, whose one
worker runs them as a few batched passes (a slot is a waiting thread; Gradio has 40).
Whole-test-set work (evaluations, exports, robustness curves, decoding an upload or the dataset
download) one at a time in its own line, so it never holds up a Predict. Augmentation previews
(numpy on a few 32x32 pictures) four at a time. Everything else (ticks, page loads, starting or
stopping a run, reading caches) only reads small files: FREE, no limit, so it is never stuck
behind the above.
"""

from __future__ import annotations

import functools
import inspect
import os
import typing
from dataclasses import dataclass
from typing import Callable

from .. import data, jobs, weights

GROUPS = {"models": 2, "heavy": 1, "augment": 4, "serve": 24}
MODELS = {"concurrency_id": "models", "concurrency_limit": GROUPS["models"]}
SERVE = {"concurrency_id": "serve", "concurrency_limit": GROUPS["serve"]}
HEAVY = {"concurrency_id": "heavy", "concurrency_limit": GROUPS["heavy"]}
AUGMENT = {"concurrency_id": "augment", "concurrency_limit": GROUPS["augment"]}
FREE = {"concurrency_limit": None}


@dataclass(frozen=True)
class AppContext:
    """The app's job manager (its one training queue, and where runs live: manager.runs_dir),
    whether the app is public (a shared Space: runs per visitor, public caps, no writes to
    weights/), and the Hub repo visitors' weights may be pushed to (None: not set up)."""

    manager: jobs.JobManager
    public: bool
    hub_repo: str | None = None

    def __post_init__(self):
        if self.manager.public != self.public:
            raise ValueError(f"the job manager is {'public' if self.manager.public else 'local'}, "
                             f"the app {'public' if self.public else 'local'}")

    @classmethod
    def of(cls, manager: jobs.JobManager, hub_repo: str | None = None) -> AppContext:
        """The context of an app around `manager` (public when it is)."""
        return cls(manager, manager.public, hub_repo)

    @classmethod
    def from_env(cls, public: bool | None = None, runs_dir=None) -> AppContext:
        """The app's context: public as asked (app.py --public), else by the environment
        (jobs.public_mode: SPACE_ID, CIFAR_DEMO_PUBLIC); a Hub repo where the Space's owner set
        HF_TOKEN (and CIFAR_DEMO_HUB_REPO)."""
        public = jobs.public_mode() if public is None else public
        hub = weights.hub_repo() if os.environ.get("HF_TOKEN") else None
        return cls(jobs.JobManager(runs_dir, public=public), public, hub)

    @property
    def data_limits(self) -> data.DataLimits:
        """What an uploaded dataset may hold: the small public caps on a shared app."""
        return data.PUBLIC_LIMITS if self.public else data.DEFAULT_LIMITS

    def runs_dir_for(self, owner: str) -> os.PathLike:
        return self.manager.runs_dir_for(owner)

    def bind(self, fn: Callable) -> Callable:
        """`fn(ctx, ...)` as an event handler `(...)`: the same name (Gradio's api_name), signature
        less its first parameter, and type hints (gr.SelectData, gr.Progress are found by them)."""
        sig = inspect.signature(fn)
        first = next(iter(sig.parameters))
        hints = {k: v for k, v in typing.get_type_hints(fn).items() if k != first}

        @functools.wraps(fn)
        def handler(*args, **kwargs):
            return fn(self, *args, **kwargs)

        del handler.__wrapped__   # Gradio reads the signature below, not fn's
        handler.__signature__ = sig.replace(parameters=list(sig.parameters.values())[1:])
        handler.__annotations__ = hints
        return handler
