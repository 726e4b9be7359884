"""The Train tab's "Find a learning rate": the range test (analysis.lr_find) of the form's model and
preset, run through the training queue (jobs.lr_find_job: it trains, so it waits for the one slot
and is held to the public bounds), its plot, and the suggestion filled into the form on request.

train_tab builds it beside the learning rate (`panel = build()`) and wires it once its form exists
(`panel.wire(...)`): two lines there, everything else here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import gradio as gr

from .. import data, jobs
from ..analysis.lr_find import RULE, RangeTest
from ..reporting import plots_lessons
from . import own_data
from .context import FREE, AppContext
from .train_runs import page_owner

TICK = 2.0
HELP = ("Smith's range test: a few hundred steps on the training images with the learning rate growing from 1e-6 "
        f"to 10, stopped when the loss diverges. Rule for the suggestion: {RULE}. It trains, so it waits in the "
        "training queue; the model and optimizer it used are thrown away (nothing of it reaches a run). With Muon "
        "the number scales the conv filters' muon_lr by the same factor (the result says how).")


def find(ctx: AppContext, make_cfg: Callable, model, preset, steps, *values):
    """Queue the test for this page's owner: (job id, message, the timer on)."""
    form, (choice, token) = values[:-2], values[-2:]
    owner = page_owner(ctx, token)
    try:
        own = own_data.path_of(ctx, choice, token)
        src = data.resolve_source(own, download=False, limits=ctx.data_limits)
        cfg = make_cfg(model, preset, *form)
        cfg.data = str(src.path)
        job_id = jobs.lr_find_job.submit(ctx.manager, cfg, owner, int(steps or 0), ctx.client())
    except data.DataSourceError as e:
        raise gr.Error(f"No data, so no range test. {e}") from None
    except (ValueError, TypeError, jobs.JobError) as e:
        raise gr.Error(str(e)) from None
    position = ctx.manager.view(owner).position
    where = f"number {position} in the queue" if position else "starting"
    message = f"Range test `{job_id}` queued ({int(steps)} steps of `{cfg.model}`): {where}."
    return job_id, message, gr.Timer(active=True)


def poll(ctx: AppContext, job_id, token=None):
    """(message, plot, suggestion, timer): the job's state, then its curve once it has ended."""
    if not job_id:
        return gr.update(), gr.update(), None, gr.Timer(active=False)
    state, result = jobs.lr_find_job.status(ctx.manager, job_id, page_owner(ctx, token))
    if state in ("queued", "running"):
        return f"Range test `{job_id}`: {state}…", gr.update(), None, gr.Timer(active=True)
    if state != "done":
        return f"Range test `{job_id}`: {state} (see the log beside the runs).", None, None, gr.Timer(active=False)
    r = RangeTest(**{k: v for k, v in result.items() if k in RangeTest.__dataclass_fields__})
    text = (r.meaning() + (f" Stopped early: {r.stopped}." if r.stopped else "")
            + f" ({len(r.lrs)} steps, {r.seconds:.0f} s.)")
    return text, plots_lessons.lr_find_plot(result), r.suggestion, gr.Timer(active=False)


def use(suggestion, lr):
    """The form's learning rate after "Use the suggestion": the suggestion to 3 significant digits
    (the plot's own precision; 1.832980710832436 in the field said more than the sweep knows)."""
    return float(f"{suggestion:.3g}") if suggestion else lr


@dataclass
class Panel:
    button: gr.Button
    steps: gr.Slider
    message: gr.Markdown
    plot: gr.Plot
    apply: gr.Button
    job: gr.State
    suggestion: gr.State
    timer: gr.Timer

    def wire(self, ctx: AppContext, make_cfg: Callable, model, preset, form: list, lr, dataset, token: list) -> None:
        """`make_cfg(model, preset, *form)`: the Train tab's config_from_form."""
        def start(model, preset, steps, *values):
            return find(ctx, make_cfg, model, preset, steps, *values, *([None] * (2 - len(token) - 1)))

        start.__name__ = "lr_find"
        self.button.click(start, [model, preset, self.steps, *form, dataset, *token],
                          [self.job, self.message, self.timer], show_progress="hidden", **FREE)
        self.timer.tick(ctx.bind(poll), [self.job, *token], [self.message, self.plot, self.suggestion, self.timer],
                        show_progress="hidden", **FREE)
        self.apply.click(use, [self.suggestion, lr], lr, **FREE)


def build() -> Panel:
    """The panel's components, where the caller is in the layout (beside the learning rate)."""
    with gr.Accordion("Find a learning rate", open=False, elem_id="lr-find"):
        gr.Markdown(HELP)
        with gr.Row(equal_height=True):
            steps = gr.Slider(20, jobs.lr_find_job.MAX_STEPS, value=100, step=10, label="Steps", scale=2)
            button = gr.Button("Find a learning rate", elem_id="lr-find-go", scale=1)
            apply = gr.Button("Use the suggestion", elem_id="lr-find-use", scale=1)
        message = gr.Markdown(elem_id="lr-find-message")
        plot = gr.Plot(label="Range test", show_label=False, elem_id="lr-find-plot")
    return Panel(button, steps, message, plot, apply, gr.State(None), gr.State(None), gr.Timer(TICK, active=False))
