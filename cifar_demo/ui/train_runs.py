"""The Train tab's past runs: the run lists (overlay, export), Export to weights/ (local mode),
and a finished run's Download weights and Push to the Hub (public mode).

Every list and action is the page owner's (ui.common.owner_of): a visitor sees and exports only
the runs of its own folder (jobs.Manager.runs_dir_for).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import gradio as gr

from .. import data, jobs, train, weights
from ..analysis import compare
from ..reporting import export
from .common import owner_of, owner_runs, run_label
from .context import AppContext


def page_owner(ctx: AppContext, token) -> str:
    """The job owner of the page (ui.common.owner_of); gr.Error while it has no token yet."""
    owner = owner_of(ctx, token)
    if owner is None:
        raise gr.Error("This page has no visitor token yet: reload it.")
    return owner


def _runs_dir(ctx: AppContext, token=None) -> Path:
    return ctx.runs_dir_for(page_owner(ctx, token))


def run_choices(ctx: AppContext, token=None) -> list[tuple[str, str]]:
    """Every run directory of the owner, its own newest first, then its studies', as (label, run id)."""
    return [(run_label(r, study), r["run_id"]) for r, study in owner_runs(_runs_dir(ctx, token))]


def exportable_choices(ctx: AppContext, token=None) -> list[tuple[str, str]]:
    """The owner's runs with a result and best weights: what export can turn into a weights file."""
    return [(run_label(r, study), r["run_id"]) for r, study in owner_runs(_runs_dir(ctx, token), finished=True)]


def refresh_runs(ctx: AppContext, overlay: list[str] | None = None, chosen: str | None = None, token=None):
    runs, done = run_choices(ctx, token), exportable_choices(ctx, token)
    keep = [r for r in overlay or [] if r in {v for _, v in runs}]
    # Preselected: the owner's newest own run (a study's runs come after them), never a study's.
    own = [v for label, v in done if not label.startswith("Compare study")]
    pick = chosen if chosen in {v for _, v in done} else (own[0] if own else None)
    return gr.Dropdown(choices=runs, value=keep, multiselect=True), gr.Dropdown(choices=done, value=pick)


def own_view(ctx: AppContext, view: jobs.View, runs_dir: Path) -> jobs.View:
    """What the Train tab draws: the job manager's view, except that a finished run of a Compare
    study (the owner's latest job after a study) gives way to the owner's own newest run."""
    snap = view.snap
    if snap.run_id is None or snap.running or snap.status == "queued":
        return view
    studies = compare.study_runs(runs_dir)
    if snap.run_id not in studies:
        return view
    own = next((r["run_id"] for r, study in owner_runs(runs_dir) if study is None), None)
    return view if own is None else dataclasses.replace(view, snap=ctx.manager.snapshot(own, runs_dir))


def _run_dir(run_id, runs_dir: Path) -> Path:
    """The directory of the run `run_id` of `runs_dir` (train.Run.by_id: a plain id, in that folder
    only); gr.Error that says what is wrong with the id, never whether another folder holds it."""
    try:
        return train.Run.by_id(run_id, runs_dir).dir
    except (ValueError, FileNotFoundError) as e:
        raise gr.Error(str(e)) from None


def export_run(ctx: AppContext, run_id: str | None, replace: bool) -> str:
    """Score the run's best weights on the test set and write weights/<model>.safetensors + card.
    Local mode only: in public mode nothing a visitor does writes the shared tree."""
    if ctx.public:
        raise gr.Error("Export to weights/ is not offered on a shared app; use Download weights.")
    if not run_id:
        raise gr.Error("Pick a finished run to export.")
    run_dir = _run_dir(run_id, ctx.manager.runs_dir)
    # The name export_run writes: the model's, or <model>-<dataset> for a run of your own classes.
    target = weights.weights_dir() / f"{export.export_name(run_dir)}.safetensors"
    if target.exists() and not replace:
        raise gr.Error(f"{target} already exists (the weights the Predict tab uses). "
                       "Tick 'Replace existing weights' to overwrite it.")
    try:
        weights_path, _, card = export.export_run(run_dir)
    except (FileNotFoundError, data.DataSourceError, weights.WeightsError, ValueError) as e:
        raise gr.Error(str(e)) from None
    except Exception as e:  # anything else: one line for the user, not a traceback
        raise gr.Error(f"Export failed: {type(e).__name__}: {e}") from None
    tta = "n/a" if card.test_accuracy_tta is None else f"{100 * card.test_accuracy_tta:.2f}%"
    return (f"Exported `{card.model}` to `{weights_path}`: test accuracy {100 * card.test_accuracy:.2f}% "
            f"(with TTA {tta}) on {card.dataset}.")


def download_weights(ctx: AppContext, run_id: str | None, token=None) -> dict:
    """The owner's finished run exported (scored, carded) into one .zip kept in the run's directory
    (export.run_download: scored once, a second click serves the same file, deleted with the run):
    <model>.safetensors + <model>.json, which `python -m cifar_demo predict --weights FILE` reads."""
    if not run_id:
        raise gr.Error("Pick a finished run of yours first.")
    try:
        path = export.run_download(_run_dir(run_id, _runs_dir(ctx, token)))
    except (FileNotFoundError, data.DataSourceError, weights.WeightsError, ValueError) as e:
        raise gr.Error(str(e)) from None
    return gr.update(value=str(path), visible=True)


def push_weights(ctx: AppContext, run_id: str | None, token=None) -> str:
    """Into the Hub repo this app may push visitors' weights to (ctx.hub_repo): set by the Space's
    owner (HF_TOKEN as a Space secret and CIFAR_DEMO_HUB_REPO), never by a visitor."""
    repo = ctx.hub_repo
    if repo is None:
        raise gr.Error("Pushing is not set up on this app (HF_TOKEN and CIFAR_DEMO_HUB_REPO).")
    if not run_id:
        raise gr.Error("Pick a finished run of yours first.")
    try:
        # Into visitors/<run id>/: a visitor never replaces the weights at the repo's root.
        result = export.push_run(_run_dir(run_id, _runs_dir(ctx, token)), repo, folder=f"visitors/{run_id}")
    except (FileNotFoundError, data.DataSourceError, weights.WeightsError, ValueError) as e:
        raise gr.Error(str(e)) from None
    return f"Pushed {', '.join(result.files)} to [{result.repo}]({result.url})."
