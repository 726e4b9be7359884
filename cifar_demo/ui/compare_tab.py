"""Compare recipes tab: an A/B test of two training recipes over 1-3 seeds, fairly judged.

The runs are ordinary runs of the app's one job manager, started one after another by
cifar_demo.analysis.compare's runner thread; the study lives in runs/.studies/<id>.json, so a closed
page or a restarted app shows it again. This module wires the form to compare.new_study /
start_study and draws compare.summarize's figures; it decides nothing itself.
"""

from __future__ import annotations

import html

import gradio as gr

from .. import data, jobs, train, zoo
from ..analysis import compare
from ..reporting import plots_compare
from . import lesson
from .common import data_status, owner_of
from .context import FREE, AppContext

TICK_SECONDS = 2
DEFAULT_MODEL = "simple_cnn"
# One thing differs by default (a batch mix on or off), so the verdict is about one choice.
DEFAULT_A = compare.Recipe("A", "standard", compare.MIX_OFF, 0.0)
DEFAULT_B = compare.Recipe("B", "standard", "cutmix", 0.0)
# Measured on this project's 2-core AMD EPYC while it was shared (load average 7-9): one run of
# simple_cnn on the default budget (3 epochs of 2,000 images, 1,000 validation images, fp32)
# took 162 s end to end, 129 s of it training (`python -m cifar_demo train --model simple_cnn
# --epochs 3 --train-limit 2000 --val-size 1000 --test-limit 500 --precision fp32 --augment
# standard --mixes '{}'`). Alone on the machine it is faster.
MINUTES_PER_RUN = "2-3"

INTRO = f"""Is one training recipe really better than another, or was it a lucky seed? Pick a model and
two recipes (**A** and **B**), and train each with 1-3 seeds on a small budget. The runs go through the
app's training queue one after another (A seed 0, B seed 0, A seed 1, ...), so a study stopped half way
is still balanced; seed *k* gives A and B the same validation split, training subset and initial weights.
One run of `{DEFAULT_MODEL}` on the default budget takes about {MINUTES_PER_RUN} minutes on this
machine's 2 CPU cores, so 3 seeds (6 runs) take 12-18 minutes.

The comparison reads **validation** accuracy only: picking a recipe on the test set would make its
figures dishonest. Rule: {compare.RULE}."""


# ----------------------------------------------------------------------------- start / stop

def _owner(ctx: AppContext, token=None) -> str:
    """The study's owner in the job queue (ui.common.owner_of): the local user, or in public mode
    the visitor, whose studies and runs live in its own folder as its Train tab runs do."""
    owner = owner_of(ctx, token)
    if owner is None:
        raise gr.Error("This page has no visitor token yet: reload it.")
    return owner


def start(ctx: AppContext, model: str, seeds, epochs, train_limit, val_size, aug_a: str, mix_a: str, ls_a,
          aug_b: str, mix_b: str, ls_b, token=None) -> str:
    """Plan and start a study; refused (gr.Error) without data, with a bad recipe or budget,
    or while another study is going. Every config is validated before the first run starts."""
    owner = _owner(ctx, token)
    try:
        src = data.resolve_source(download=False)
    except data.DataSourceError as e:
        raise gr.Error(f"No CIFAR-10 data, so no training. {e}") from None
    manager = ctx.manager
    try:
        budget = compare.Budget(epochs=int(epochs or 0), train_limit=int(train_limit or 0),
                                val_size=int(val_size or 0))
        if budget.val_size < 1:
            raise ValueError("the comparison reads validation accuracy: hold out at least 1 validation image")
        study = compare.new_study(model, compare.Recipe("A", aug_a, mix_a, float(ls_a or 0)),
                                  compare.Recipe("B", aug_b, mix_b, float(ls_b or 0)), int(seeds or 0),
                                  budget, data=str(src.path), owner=owner, manager=manager)
        busy = manager.snapshot()   # looked at first: once started, the study's own run is the busy one
        compare.start_study(study, manager, client=ctx.client())   # one place per address
    except (ValueError, compare.StudyError) as e:
        raise gr.Error(str(e)) from None
    text = f"Started study `{study.id}`: {len(study.plan)} runs of `{model}` ({int(seeds)} seed(s) per recipe)."
    if busy.running:
        text += f" Another training run is going (`{busy.run_id}`): the study's runs queue behind it."
    return text


def stop(ctx: AppContext, token=None) -> str:
    if compare.stop_active(_owner(ctx, token)):
        return "Stopping: the current run stops at its next step and the rest of the study is cancelled."
    return "No study is going."


# ----------------------------------------------------------------------------- watching a study

def progress_line(study: compare.Study, manager: jobs.JobManager) -> str:
    """One line: "run 3 of 6: recipe B, seed 1, epoch 2/3", or where the study stands."""
    total = len(study.plan)
    done = sum(1 for e in study.plan if e.get("outcome") in compare.ENDED_OK)
    status = compare.status_of(study)
    cur = study.current()
    if status in ("running", "stopping") and cur is not None:
        entry = study.plan[cur]
        snap = manager.snapshot(entry["run_id"], study.runs_dir)
        start_ev, step = snap.last("start"), snap.last("step")
        epochs = start_ev["epochs"] if start_ev else entry["config"]["epochs"]
        where = (f"epoch {min(int(step['epoch']) + 1, epochs)}/{epochs}" if step else
                 "queued behind another run" if snap.status == "queued" else "starting")
        line = f"run {cur + 1} of {total}: recipe {entry['recipe']}, seed {entry['seed']}, {where}"
        return line + (" (stopping)" if status == "stopping" else "")
    if status == "waiting":
        return f"waiting ({done} of {total} runs done): {study.message}"
    if status == "interrupted":
        return f"interrupted ({done} of {total} runs done): the app restarted while the study was going"
    if status == "planned":
        return f"starting: {total} runs planned"
    return f"{status} ({done} of {total} runs done)" + (f": {study.message}" if study.message else "")


def status_html(study: compare.Study | None, manager: jobs.JobManager) -> str:
    """The study's line, plus a notice when another run (not one of a study) holds the job manager."""
    busy = manager.snapshot()
    mine = {e.get("run_id") for e in study.plan} if study is not None else set()
    # Every study of the run's owner, read from disk: a study read a moment before its runner saved
    # the run's id, or no study at all (a page without its token yet), still knows its own runs.
    foreign = busy.running and busy.run_id not in mine and busy.run_id not in compare.study_runs(
        manager.runs_dir_for(busy.owner or jobs.LOCAL))
    notice = ""
    if foreign:
        whose = ("A training run of the Train tab" if study is None or busy.owner in (None, study.owner)
                 else "Another visitor's training run")
        notice = (f'<div class="cmp-wait" style="border-left:4px solid #f59e0b;background:#fffbeb;'
                  f'padding:8px 12px;border-radius:4px;margin-bottom:6px">{whose} is '
                  f"going (<code>{html.escape(busy.run_id)}</code>). The app trains one run at a time: a study "
                  "waits for it to end, then starts its next run.</div>")
    if study is None:
        return notice + "<div>No study yet. Pick two recipes and press <b>Start</b>.</div>"
    return (notice + f"<div>Study <code>{html.escape(study.id)}</code> (<code>{html.escape(study.model)}</code>): "
            f"<b>{html.escape(progress_line(study, manager))}</b></div>")


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.2f}%"


def summary_markdown(summary: compare.Summary) -> str:
    """Each recipe, its final validation accuracy per seed, mean and std; then the verdict."""
    seeds = sorted(set(summary.a.final) | set(summary.b.final) | set(summary.a.curves) | set(summary.b.curves))
    head = "| recipe | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | std |"
    rows = [head, "|" + "---|" * (len(seeds) + 3)]
    for rs in (summary.a, summary.b):
        cells = [_pct(rs.final.get(s)) for s in seeds]
        rows.append(f"| **{rs.key}**: {rs.recipe.describe()} | " + " | ".join(cells) +
                    f" | {_pct(rs.final_mean)} | {_pct(rs.final_std)} |")
    return ("Final validation accuracy (last epoch) of each finished run:\n\n" + "\n".join(rows) +
            f"\n\n**Verdict.** {summary.verdict}\n\n*Rule: {summary.rule}.*")


def _seen_key(study: compare.Study | None, summary: compare.Summary | None) -> list | None:
    if study is None:
        return None
    points = [[rs.key, s, len(p)] for rs in (summary.a, summary.b) for s, p in sorted(rs.curves.items())]
    return [study.id, study.status, [e.get("outcome") for e in study.plan], points]


def tick(ctx: AppContext, last_seen=None, token=None):
    """Timer / page-load handler: (status HTML, band plot, summary Markdown, what was drawn).

    Reads the newest study from disk (so a reopened page or a restarted app shows it); the
    figure and the table are redrawn only when a run reached a new epoch or ended."""
    manager = ctx.manager
    owner = owner_of(ctx, token)
    study = compare.latest_study(manager.runs_dir_for(owner)) if owner is not None else None
    summary = compare.summarize(study) if study is not None else None
    seen = _seen_key(study, summary)
    if study is None:
        return status_html(None, manager), None, "", seen
    if seen == last_seen:
        return status_html(study, manager), gr.skip(), gr.skip(), seen
    return status_html(study, manager), plots_compare.study_bands(summary), summary_markdown(summary), seen


def form_of_study(ctx: AppContext, filled: bool = False, token=None) -> list:
    """The form as the newest study of the page's owner was started (model, seeds, epochs, images,
    validation images, recipe A, recipe B), then whether the form is filled now. Asked on the
    page's first looks until it has a study to show: after a reload the form says what the study
    shown did, not the defaults. gr.skip() everywhere once filled, or while there is no study."""
    owner = owner_of(ctx, token)
    study = compare.latest_study(ctx.manager.runs_dir_for(owner)) if owner is not None and not filled else None
    if study is None:
        return [gr.skip()] * (5 + 6) + [filled]
    a, b, budget = study.recipe("A"), study.recipe("B"), compare.Budget(**study.budget)
    seeds = len({e["seed"] for e in study.plan})
    return [study.model, seeds, budget.epochs, budget.train_limit, budget.val_size,
            a.augment, a.mix, a.label_smoothing, b.augment, b.mix, b.label_smoothing, True]


# ----------------------------------------------------------------------------- layout

def _recipe_form(recipe: compare.Recipe, title: str):
    with gr.Column(variant="panel"):
        gr.Markdown(f"**Recipe {title}**")
        aug = gr.Dropdown(list(train.AUGMENTATIONS), value=recipe.augment, label=f"{title}: augmentation",
                          info="See the Augmentations tab.")
        mix = gr.Dropdown(list(compare.MIX_CHOICES), value=recipe.mix, label=f"{title}: batch mix",
                          info=f"off, or mixed into {compare.MIX_PROB:.0%} of the batches.")
        ls = gr.Slider(0, 0.5, recipe.label_smoothing, step=0.05, label=f"{title}: label smoothing")
    return [aug, mix, ls]


def build(ctx: AppContext, visitor: gr.BrowserState | None = None) -> None:
    """The tab; `visitor` is the page's token (ui.build_app makes it), None for a local-only page."""
    names = zoo.names()
    model0 = DEFAULT_MODEL if DEFAULT_MODEL in names else names[0]
    b = compare.Budget()
    with gr.Tab("Compare recipes"):
        gr.Markdown(INTRO)
        data_md = gr.HTML()
        with gr.Row(equal_height=True):
            model = gr.Dropdown(names, value=model0, label="Model",
                                info="Trained with its own recipe; A and B change only what is below.")
            seeds = gr.Slider(1, compare.MAX_SEEDS, 2, step=1, label="Seeds per recipe")
            epochs = gr.Number(b.epochs, label="Epochs per run", precision=0, minimum=1)
            train_limit = gr.Number(b.train_limit, label="Training images per run", precision=0, minimum=1)
            val_size = gr.Number(b.val_size, label="Validation images", precision=0, minimum=1)
            with gr.Column(min_width=140):
                start_btn = gr.Button("Start study", variant="primary")
                stop_btn = gr.Button("Stop study", variant="stop")
                pair_btn = gr.Button("Fill in: overfitting", size="sm", elem_id="compare-overfit")
        with gr.Row():
            form_a = _recipe_form(DEFAULT_A, "A")
            form_b = _recipe_form(DEFAULT_B, "B")
        message = gr.Markdown()
        status = gr.HTML()
        plot = gr.Plot(label="Validation accuracy, mean ± std over seeds", show_label=False)
        table = gr.Markdown()
        seen = gr.State(None)
        filled = gr.State(False)   # the form shows the study's settings (form_of_study)
        timer = gr.Timer(TICK_SECONDS)

    token = [visitor] if visitor is not None else []
    # Ticks only read small files (the study, the runs' metrics): no concurrency limit.
    watch = dict(fn=ctx.bind(tick), inputs=[seen, *token], outputs=[status, plot, table, seen],
                 show_progress="hidden", **FREE)
    start_btn.click(ctx.bind(start), [model, seeds, epochs, train_limit, val_size, *form_a, *form_b, *token],
                    message, show_progress="hidden", **FREE).success(**watch)
    stop_btn.click(ctx.bind(stop), token, message, **FREE).then(**watch)
    # The Train tab's overfitting lesson as a study: its budget, A without augmentation, B with it.
    pair_btn.click(lesson.overfit_pair, None, [model, seeds, epochs, train_limit, val_size, *form_a, *form_b], **FREE)
    timer.tick(**watch)
    fill = dict(fn=ctx.bind(form_of_study), inputs=[filled, *token],
                outputs=[model, seeds, epochs, train_limit, val_size, *form_a, *form_b, filled],
                show_progress="hidden", **FREE)
    timer.tick(**fill)   # a visitor's token arrives after the page's load: its first ticks fill the form
    gr.on(None, **fill)
    # Page load (triggers=None): which dataset the runs read, and the newest study (of the local
    # user; a visitor's shows at the first timer tick, which has its token).
    gr.on(None, data_status, None, data_md, **FREE)
    gr.on(None, ctx.bind(tick), None, watch["outputs"], show_progress="hidden", **FREE)
