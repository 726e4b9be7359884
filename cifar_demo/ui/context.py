"""What the tabs know about the app they are part of, and which events may run side by side.

AppContext is made once (ui.build_app, from app.py's flags and the environment) and passed to
every tab's build(ctx); a handler that needs it gets it bound at wiring time (AppContext.bind).
No tab reads a process-wide job manager or os.environ for it.

The concurrency lanes are stated where each event is wired (`**MODELS`, `**HEAVY`, ...), for a
class on one 2-core machine. Events that run every model of the zoo take both cores each: two
at a time, in one line, so they do not thrash. The Predict page's event for a new picture and
the API's /predict and /familiarity (SERVE) mostly wait: up to 64 at once (a class of 30
uploading, with room for API clients) hand their pictures to analysis.serve's batcher, whose one
worker runs the zoo model by model on every waiting picture (a slot is a waiting thread:
ui.launch gives Gradio MAX_THREADS, not its default 40).
Whole-test-set work (evaluations, exports, robustness curves, decoding an upload or the dataset
download) one at a time in its own line, so it never holds up a Predict. Augmentation previews
(numpy on a few 32x32 pictures) four at a time. Everything else (ticks, page loads, starting or
stopping a run, reading caches) only reads small files: FREE, no limit, so it is never stuck
behind the above.

Who a request comes from (AppContext.client): in public mode the job manager lets one client
hold one place in the training queue (a run or a study), whatever tokens it mints. A client is
its network address, as the Space's proxy reports it: the peer of the connection, or, behind
CIFAR_DEMO_TRUSTED_PROXIES proxies that each append the address they saw to X-Forwarded-For, the
entry that many places from the right (what the outermost trusted proxy saw; entries further
left are the client's to write). Default: 1 on a Hugging Face Space (SPACE_ID set: its proxy
appends), 0 elsewhere. Too high a number lets a client pick its own address; too low makes every
visitor one client (fewer runs at once, never more). The address is kept only as a keyed hash.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import inspect
import os
import secrets
import typing
from dataclasses import dataclass
from typing import Callable

from gradio.context import LocalContext

from .. import data, jobs, weights

GROUPS = {"models": 2, "heavy": 1, "augment": 4, "serve": 64}
MAX_THREADS = 128   # Gradio's worker threads: the serve lane's waiting ones and every other lane's
MODELS = {"concurrency_id": "models", "concurrency_limit": GROUPS["models"]}
SERVE = {"concurrency_id": "serve", "concurrency_limit": GROUPS["serve"]}
HEAVY = {"concurrency_id": "heavy", "concurrency_limit": GROUPS["heavy"]}
AUGMENT = {"concurrency_id": "augment", "concurrency_limit": GROUPS["augment"]}
FREE = {"concurrency_limit": None}

PROXIES_ENV = "CIFAR_DEMO_TRUSTED_PROXIES"
# Keys the hash of a client's address (not saved: a job record holds no address a reader could
# reverse by trying all four billion; after a restart a client's earlier places are not matched).
_CLIENT_KEY = secrets.token_bytes(32)


def trusted_proxies(environ=None) -> int:
    """How many proxies in front of the app append to X-Forwarded-For: CIFAR_DEMO_TRUSTED_PROXIES,
    else 1 on a Hugging Face Space (SPACE_ID), else 0."""
    environ = os.environ if environ is None else environ
    value = environ.get(PROXIES_ENV, "").strip()
    if value.isdigit():
        return int(value)
    return 1 if environ.get("SPACE_ID") else 0


def client_address(peer: str | None, forwarded: list[str], proxies: int) -> str:
    """The address a request comes from: in [X-Forwarded-For entries..., the peer], the entry
    `proxies` places from the right. A chain too short for that (the header missing) gives the
    peer: every such request is then one client, which never grants more than one place."""
    chain = [e.strip() for value in forwarded for e in value.split(",") if e.strip()] + [peer or "?"]
    return chain[-1 - proxies] if len(chain) > proxies else chain[-1]


def client_key(address: str) -> str:
    """The job manager's client for an address: a keyed hash of it (never the address)."""
    return "addr-" + hmac.new(_CLIENT_KEY, address.encode(), hashlib.sha256).hexdigest()[:20]


@dataclass(frozen=True)
class AppContext:
    """The app's job manager (its one training queue, and where runs live: manager.runs_dir),
    whether the app is public (a shared Space: runs per visitor, public caps, no writes to
    weights/), and the Hub repo visitors' weights may be pushed to (None: not set up)."""

    manager: jobs.JobManager
    public: bool
    hub_repo: str | None = None
    proxies: int = 0           # trusted proxies in front of the app (trusted_proxies)

    def __post_init__(self):
        if self.manager.public != self.public:
            raise ValueError(f"the job manager is {'public' if self.manager.public else 'local'}, "
                             f"the app {'public' if self.public else 'local'}")

    @classmethod
    def of(cls, manager: jobs.JobManager, hub_repo: str | None = None) -> AppContext:
        """The context of an app around `manager` (public when it is)."""
        return cls(manager, manager.public, hub_repo, trusted_proxies())

    @classmethod
    def from_env(cls, public: bool | None = None, runs_dir=None) -> AppContext:
        """The app's context: public as asked (app.py --public), else by the environment
        (jobs.public_mode: SPACE_ID, CIFAR_DEMO_PUBLIC); a Hub repo where the Space's owner set
        HF_TOKEN (and CIFAR_DEMO_HUB_REPO)."""
        public = jobs.public_mode() if public is None else public
        hub = weights.hub_repo() if os.environ.get("HF_TOKEN") else None
        return cls(jobs.JobManager(runs_dir, public=public), public, hub, trusted_proxies())

    def client(self, request=None) -> str | None:
        """Who the event being handled comes from (public mode; None locally, or outside an
        event): client_key of its address. `request` defaults to the event's own, which Gradio
        keeps for the handler's thread (gradio.context.LocalContext, as gr.Request is filled)."""
        request = request if request is not None else LocalContext.request.get(None)
        if not self.public or request is None:
            return None
        headers = request.headers
        forwarded = (headers.getlist("x-forwarded-for") if hasattr(headers, "getlist")
                     else [headers.get("x-forwarded-for") or ""])
        peer = request.client.host if getattr(request, "client", None) else None
        return client_key(client_address(peer, forwarded, self.proxies))

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
