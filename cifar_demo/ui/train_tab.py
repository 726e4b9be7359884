"""Train tab's handlers: pick a model and a preset, edit the recipe, start one run, watch it learn
(the layout and wiring: ui.train_page).

Runs go through the app's one queue (the context's job manager): a run lives in a child process and its run
directory, not in this page, so closing the tab does not stop it and a reopened tab re-attaches by reading the run
directory again (on page load, then on a timer: every 2 s, or once a logged step while a run's steps come slower than
that; see tick_interval). Each page has an owner (ui.common.owner_of: the local user, or in public mode the visitor's
browser token): only the owner sees Stop and Resume for its run; others watch the run that is training. In public
mode Export to weights/ is not offered; the owner downloads its weights instead (and
pushes them to the Hub where the Space owner configured one): ui.train_runs.
"""

from __future__ import annotations

import gradio as gr

from .. import augment, data, jobs, train
from ..reporting import plots
from . import own_data
from .common import cached_png, data_status, log_text, owner_of, view_html
from .context import AppContext
from .train_runs import download_weights, export_run, own_view, page_owner, push_weights, refresh_runs  # noqa: F401

TICK_SECONDS = 2       # the Train tab's timer: its shortest interval
MAX_TICK_SECONDS = 10  # and its longest, while a run logs a step less often than every 2 s
CURVES_FIGSIZE = (10, 4.6)  # inches: half of a projector's width beside the live guesses (ui.train_page)
FINETUNE = "finetune"   # the preset offered for your own images (train.presets())
# Form fields in the order of the components (and of the handlers' *values).
FIELDS = ("epochs", "batch_size", "optimizer", "lr", "schedule", "weight_decay", "label_smoothing",
          "augment", "mixup", "cutmix", "ricap", "ema", "precision", "train_limit", "val_size")
INT_FIELDS = {"epochs", "batch_size", "train_limit", "val_size"}

# ----------------------------------------------------------------------------- dataset

def data_panel():
    """(status HTML, download button update): the button shows only when no data is found."""
    try:
        data.resolve_source(download=False)
        found = True
    except data.DataSourceError:
        found = False
    return data_status(), gr.update(visible=not found)


def download_data():
    """Download the official CIFAR-10 files (170 MB) through torchvision, then show the status."""
    try:
        data.resolve_source(download=True)
    except data.DataSourceError as e:
        raise gr.Error(f"Download failed. {e}") from None
    return data_panel()


# ----------------------------------------------------------------------------- presets and the form

def preset_choices(model: str) -> list[str]:
    """The presets that train `model`: its own recipe, extras naming it, and model-free extras."""
    return [name for name, p in train.presets().items() if p.get("model", model) == model]


def default_preset(model: str) -> str:
    """"demo" (a short speed recipe) when the model has one, else the model's own recipe."""
    choices = preset_choices(model)
    return "demo" if "demo" in choices else model


def form_values(cfg: train.TrainConfig) -> list:
    """The form's values for a config, in FIELDS order."""
    values = dict(cfg.to_dict(), **{m: float(cfg.mixes.get(m, 0.0)) for m in augment.MIXES})
    return [values[f] for f in FIELDS]


def on_model(model: str):
    """Model changed: its presets, the default one selected, and the form filled from it."""
    preset = default_preset(model)
    cfg = train.make_config(preset, model=model)
    return (gr.Dropdown(choices=preset_choices(model), value=preset), *form_values(cfg))


def on_preset(model: str, preset: str) -> list:
    """Preset changed: fill the form from it."""
    return form_values(train.make_config(preset or None, model=model))


def fitting_batch(batch: int, n_train: int) -> int:
    """The batch size for `n_train` training images: `batch` where it fits, else the largest
    power of two up to half of them (a batch needs that many pictures: batches are full, so a
    larger one would give no step at all)."""
    if batch <= n_train:
        return batch
    return 1 << max(0, (max(n_train // 2, 1)).bit_length() - 1)


def on_dataset(ctx: AppContext, model: str, preset: str | None, choice: str | None, token=None):
    """Dataset picked: its description; for own images the fine-tuning preset where the model has
    one (a few hundred pictures are learnt from a CIFAR-10 start, not from scratch), with a batch
    size their training split can fill (fitting_batch), and back to the model's default preset
    for CIFAR-10."""
    text = own_data.describe_choice(ctx, choice, token)
    own = bool(choice) and choice != own_data.CIFAR
    pick = FINETUNE if own and FINETUNE in preset_choices(model) else (
        default_preset(model) if not own and preset == FINETUNE else preset)
    if own and pick != FINETUNE:   # said, not switched behind the visitor's back
        base = train.presets()[FINETUNE].get("model")
        text += (f"\n\n`{model}` has no fine-tuning preset: it will learn your pictures from scratch, which "
                 f"needs many more of them. To start from a network that already knows CIFAR-10, pick the model "
                 f"`{base}` (or *First training (short)*): its `{FINETUNE}` preset is then chosen.")
    values = [gr.skip()] * len(FIELDS) if pick == preset else on_preset(model, pick)
    if own:
        cfg = train.make_config(pick or None, model=model)
        try:
            n_train = len(own_data.load(ctx, choice, token, val_size=cfg.val_size).train)
        except (ValueError, data.DataSourceError):   # described as unusable above
            n_train = None
        batch = fitting_batch(cfg.batch_size, n_train) if n_train else cfg.batch_size
        if batch != cfg.batch_size:
            values[FIELDS.index("batch_size")] = batch
            text += (f"\n\nBatch size set to {batch}: the {n_train} training pictures do not fill the "
                     f"preset's batches of {cfg.batch_size}.")
    preset_update = gr.skip() if pick == preset else gr.Dropdown(choices=preset_choices(model), value=pick)
    return (text, preset_update, *values)


def on_upload(ctx: AppContext, model: str, preset: str | None, upload, token=None):
    """A zip uploaded: the dataset dropdown with it chosen, then what on_dataset shows."""
    if own_data.upload_path(upload) is None:   # the file was cleared
        return (gr.skip(),) * (3 + len(FIELDS))
    choice, _ = own_data.on_upload(ctx, upload, token)
    return (gr.Dropdown(choices=own_data.choices(ctx, token), value=choice),
            *on_dataset(ctx, model, preset, choice, token))


def config_from_form(model: str, preset: str | None, *values) -> train.TrainConfig:
    """A validated TrainConfig: the preset, overridden by every field of the form.

    Settings the form does not show (momentum, warmup, ...) keep the preset's values. The
    rules (a subset smaller than a batch, fp16 on a CPU, ...) are train.validate()'s:
    its ValueError is the message the form shows."""
    form = dict(zip(FIELDS, values))
    for name in INT_FIELDS:
        form[name] = int(form[name] or 0)
    mixes = {m: float(form.pop(m) or 0.0) for m in augment.MIXES}
    form["mixes"] = {m: p for m, p in mixes.items() if p > 0}
    return train.make_config(preset or None, model=model, **form)  # make_config validates


# ----------------------------------------------------------------------------- start / stop

def start(ctx: AppContext, model: str, preset: str | None, *values) -> str:
    """Queue a run for this page's owner (values: the form, then the dataset choice and the visitor
    token, both optional: CIFAR-10 and the local user); refused (gr.Error) without data, with a bad
    form, past the public bounds, or while the owner already has a run queued or going. It starts
    at once when the cores are free."""
    extra, values = values[len(FIELDS):], values[:len(FIELDS)]
    choice, token = (list(extra) + [None, None])[:2]
    owner = page_owner(ctx, token)
    try:
        own = own_data.path_of(ctx, choice, token)
        src = data.resolve_source(own, download=False, limits=ctx.data_limits)
    except ValueError as e:
        raise gr.Error(str(e)) from None
    except data.DataSourceError as e:
        raise gr.Error(f"No {'usable dataset' if own else 'CIFAR-10 data'}, so no training. {e}") from None
    try:
        # The resolved folder goes into the config: the run records what it read, and the
        # child process (other working directory) reads exactly this folder.
        cfg = config_from_form(model, preset, *values)
        cfg.data = str(src.path)
        run_id = ctx.manager.submit(cfg, owner, ctx.client())   # client: one place per address
    except (ValueError, jobs.JobError) as e:
        raise gr.Error(str(e)) from None
    what, gpu = f"{cfg.epochs} epoch(s) of `{cfg.model}` on {src.label}", jobs.start_note(cfg)  # ZeroGPU: its quota
    position = ctx.manager.view(owner).position
    if position:
        return f"Queued run `{run_id}` ({what}): number {position} in the queue; it starts by itself.{gpu}"
    return f"Started run `{run_id}`: {what}.{gpu}"


def stop(ctx: AppContext, token=None) -> str:
    manager = ctx.manager
    owner = page_owner(ctx, token)
    queued = manager.view(owner).position is not None
    if manager.stop(owner):
        return ("Taken out of the queue." if queued else
                "Stopping at the next step; the run saves a checkpoint first.")
    return "No run of yours is going."


def resume(ctx: AppContext, token=None) -> str:
    """Continue the owner's latest run from its last checkpoint (through the queue)."""
    manager = ctx.manager
    owner = page_owner(ctx, token)
    view = manager.view(owner)
    if not (view.mine and view.snap.status == "stopped"):
        raise gr.Error("There is no stopped run of yours to resume.")
    try:
        run_id = manager.resume(view.snap.run_id, owner, ctx.client())
    except (FileNotFoundError, jobs.JobError) as e:
        raise gr.Error(str(e)) from None
    return f"Resuming run `{run_id}` from its last checkpoint."


# ----------------------------------------------------------------------------- watching a run

def curves(ctx: AppContext, snap: jobs.Snapshot, overlay: list[str] | None, runs_dir=None):
    """Training curves of the current run plus the chosen past runs (of `runs_dir`)."""
    runs = []
    if snap.run_id is not None:
        runs.append({"name": snap.run_id, "records": snap.events})
    for run_id in overlay or []:
        if run_id != snap.run_id:
            runs.append({"name": run_id, "records": ctx.manager.snapshot(run_id, runs_dir).events})
    return plots.training_curves(runs, figsize=CURVES_FIGSIZE)


def tick_interval(snap: jobs.Snapshot) -> float:
    """Seconds between the Train tab's ticks: about one logged step of the running run.

    A tick draws only what a new event brings, so ticking faster than the run logs steps sends
    the server events that find nothing (a `demo` step takes ~6 s on 2 CPU cores: two of three
    2-second ticks were empty, and twenty open tabs cost training ~20%). The interval is the
    median gap between the last logged steps (elapsed training time, so a resume does not count
    its pause), rounded to half a second and kept within TICK_SECONDS..MAX_TICK_SECONDS; when no
    run is going, or it has not logged two steps yet, TICK_SECONDS."""
    if not snap.running:
        return float(TICK_SECONDS)
    times = [e["elapsed_s"] for e in snap.events if e.get("kind") == "step" and "elapsed_s" in e][-6:]
    gaps = sorted(b - a for a, b in zip(times, times[1:]) if b > a)
    if not gaps:
        return float(TICK_SECONDS)
    gap = gaps[len(gaps) // 2]
    return min(max(round(gap * 2) / 2, float(TICK_SECONDS)), float(MAX_TICK_SECONDS))


def tick(ctx: AppContext, overlay: list[str] | None = None, chosen: str | None = None, last_seen=None, token=None):
    """Timer / page-load handler: (curves, progress HTML, log, what was drawn, run lists, Stop,
    Resume, the timer's interval).

    The picture is redrawn only when there is something new (events, status, overlay), so an
    idle tab costs nothing; the run lists are refreshed when the status changes (a run that
    just finished becomes exportable); the timer follows the run's step cadence (tick_interval).
    gr.skip() leaves an output as it is."""
    owner = owner_of(ctx, token)
    if owner is None:   # the page's token is not there yet: the next tick has it
        return (gr.skip(),) * 9
    manager = ctx.manager
    runs_dir = manager.runs_dir_for(owner)
    view = own_view(ctx, manager.view(owner), runs_dir)   # the owner's own run, not a study's
    snap = view.snap
    # What the page shows, as one JSON-able list: the picture depends on the first four entries,
    # the run lists and buttons on the run, its status, the queue position and ownership; the
    # last is the timer's interval.
    seen = [snap.run_id, len(snap.events), snap.status, sorted(overlay or []), view.position, view.mine,
            tick_interval(snap)]
    before = list(last_seen or []) + [None] * (len(seen) - len(last_seen or []))
    timer = gr.skip() if seen[6] == before[6] else seen[6]
    if seen[:6] == before[:6] and view.position is None:
        # Nothing new (the run's page draws only from its events; a queued one's estimate moves
        # with the clock): every output stays, which spares Gradio the postprocessing of eight.
        if seen[6] == before[6]:
            return (gr.skip(),) * 9
        return (*(gr.skip(),) * 3, seen, *(gr.skip(),) * 4, timer)
    # The overlay names runs of the owner's folder: only then is the folder part of the picture's key
    # (twenty visitors watching one run share one drawing).
    key = ("curves", *seen[:3], tuple(seen[3]), str(runs_dir) if overlay else None)
    figure = gr.skip() if seen[:4] == before[:4] else cached_png(key, lambda: curves(ctx, snap, overlay, runs_dir))
    status_changed = last_seen is None or [before[i] for i in (0, 2, 4, 5)] != [seen[i] for i in (0, 2, 4, 5)]
    lists = refresh_runs(ctx, overlay, chosen, token) if status_changed else (gr.skip(), gr.skip())
    return (figure, view_html(view), log_text(snap), seen, *lists,
            gr.update(visible=view.can_stop, value="Leave the queue" if view.position else "Stop"),
            gr.update(visible=view.mine and snap.status == "stopped"), timer)
