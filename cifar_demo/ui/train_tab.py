"""Train tab: pick a model and a preset, edit the recipe, start one run, watch it learn.

The run is the app's one background job (jobs.manager()): it lives in a child process and
its run directory, not in this page, so closing the tab does not stop it and a reopened tab
re-attaches by reading the run directory again (on page load, then every 2 s).
"""

from __future__ import annotations

import html

import gradio as gr

from .. import augment, data, export, jobs, plots, train, weights, zoo
from .common import data_status

TICK_SECONDS = 2
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


def config_from_form(model: str, preset: str | None, *values) -> train.TrainConfig:
    """A validated TrainConfig: the preset, overridden by every field of the form.

    Settings the form does not show (momentum, warmup, ...) keep the preset's values. The
    rules (a subset smaller than a batch, fp16 on a CPU, ...) are TrainConfig.validate()'s:
    its ValueError is the message the form shows."""
    form = dict(zip(FIELDS, values))
    for name in INT_FIELDS:
        form[name] = int(form[name] or 0)
    mixes = {m: float(form.pop(m) or 0.0) for m in augment.MIXES}
    form["mixes"] = {m: p for m, p in mixes.items() if p > 0}
    return train.make_config(preset or None, model=model, **form)  # make_config validates


# ----------------------------------------------------------------------------- start / stop

def start(model: str, preset: str | None, *values) -> str:
    """Start a run in the background; refused (gr.Error) without data, with a bad form, or
    while another run is going."""
    try:
        src = data.resolve_source(download=False)
    except data.DataSourceError as e:
        raise gr.Error(f"No CIFAR-10 data, so no training. {e}") from None
    try:
        # The resolved folder goes into the config: the run records what it read, and the
        # child process (other working directory) reads exactly this folder.
        cfg = config_from_form(model, preset, *values)
        cfg.data = str(src.path)
        run_id = jobs.manager().start(cfg)
    except (ValueError, jobs.JobError) as e:
        raise gr.Error(str(e)) from None
    return f"Started run `{run_id}`: {cfg.epochs} epoch(s) of `{cfg.model}` on {src.label}."


def stop() -> str:
    if jobs.manager().stop():
        return "Stopping at the next step; the run saves a checkpoint first."
    return "No run is going."


# ----------------------------------------------------------------------------- watching a run

def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}h {s // 60 % 60:02d}m" if s >= 3600 else f"{s // 60}m {s % 60:02d}s"


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.2f}%"


def _bar(fraction: float, text: str, color: str = "#f97316") -> str:
    width = max(0.0, min(1.0, fraction)) * 100
    return (f'<div style="border:1px solid #d4d4d8;border-radius:6px;height:14px;overflow:hidden;'
            f'background:#f4f4f5"><div style="width:{width:.1f}%;height:100%;background:{color}"></div></div>'
            f'<div style="margin-top:6px;font-size:0.95em">{text}</div>')


def progress_html(snap: jobs.Snapshot) -> str:
    """A progress bar and one line: epoch, step, images/s, ETA (or the run's outcome)."""
    if snap.run_id is None:
        return _bar(0, "No run yet. Pick a model and a preset, then press <b>Start</b>.")
    run = f"Run <code>{html.escape(snap.run_id)}</code>"
    start_ev, step = snap.last("start"), snap.last("step")
    total = start_ev["total_steps"] if start_ev else None
    done = step["step"] if step else (start_ev["step"] if start_ev else 0)
    frac = done / total if total else 0.0
    if snap.status == "starting" or (snap.running and step is None):
        return _bar(frac, f"{run}: starting (loading the data, building the model)...")
    if snap.running:
        epochs = start_ev["epochs"] if start_ev else "?"
        text = (f"{run}: epoch {min(int(step['epoch']) + 1, epochs)}/{epochs}, step {done}/{total} "
                f"({100 * frac:.0f}%), {step['images_per_s']:.0f} images/s, "
                f"elapsed {_duration(step['elapsed_s'])}, ETA {_duration(step['eta_s'])}")
        if snap.status == "stopping":
            text += " &mdash; <b>stopping</b>"
        return _bar(frac, text)
    s = snap.summary or {}
    if snap.status in ("finished", "early_stopped"):
        how = "finished" if snap.status == "finished" else "stopped early (no better validation accuracy)"
        return _bar(1.0 if snap.status == "finished" else frac,
                    f"{run} {how} after {s.get('epochs_run', '?')} epoch(s) in {_duration(s.get('elapsed_s'))}: "
                    f"best validation accuracy <b>{_pct(s.get('best_val_acc'))}</b> (epoch {s.get('best_epoch')}), "
                    f"test accuracy <b>{_pct(s.get('test_acc'))}</b>.", "#22c55e")
    if snap.status == "stopped":
        return _bar(frac, f"{run} stopped at step {done}/{total}. Continue it with "
                          f"<code>python -m cifar_demo train --resume {html.escape(snap.run_id)}</code>.",
                    "#a1a1aa")
    end = snap.last("end") or {}
    error = end.get("error") or "see the log below"
    return _bar(frac, f"{run} <b>failed</b>: {html.escape(str(error))}", "#ef4444")


def log_text(snap: jobs.Snapshot) -> str:
    """One line per epoch (train.format_epoch), framed by the start and the outcome."""
    lines = []
    for e in snap.events:
        kind = e.get("kind")
        if kind == "start":
            lines.append(f"{'resumed' if e.get('resumed') else 'started'} {e['run_id']}: {e['n_train']} training "
                         f"and {e['n_val']} validation images, {e['epochs']} epoch(s) of {e['steps_per_epoch']} "
                         f"steps, {e['device']} ({e['precision']})")
        elif kind == "epoch":
            lines.append(train.format_epoch(e))
        elif kind == "end":
            lines.append(f"end: {e.get('status')}" + (f" ({e['error']})" if e.get("error") else ""))
    if snap.status == "failed":
        # The child's own output holds the traceback's last line when it died before any event.
        lines += ["", "last output of the training process:", snap.log_tail.strip()[-1500:]]
    return "\n".join(lines)


def curves(snap: jobs.Snapshot, overlay: list[str] | None):
    """Training curves of the current run plus the chosen past runs."""
    runs = []
    if snap.run_id is not None:
        runs.append({"name": snap.run_id, "records": snap.events})
    for run_id in overlay or []:
        if run_id != snap.run_id:
            runs.append({"name": run_id, "records": jobs.manager().snapshot(run_id).events})
    return plots.training_curves(runs)


def tick(overlay: list[str] | None = None, chosen: str | None = None, last_seen=None):
    """Timer / page-load handler: (curves, progress HTML, log, what was drawn, run lists).

    The figure is redrawn only when there is something new (events, status, overlay), so an
    idle tab costs nothing; the run lists are refreshed when the status changes (a run that
    just finished becomes exportable). gr.skip() leaves an output as it is."""
    snap = jobs.manager().snapshot()
    seen = [snap.run_id, len(snap.events), snap.status, sorted(overlay or [])]
    figure = gr.skip() if seen == last_seen else curves(snap, overlay)
    status_changed = last_seen is None or last_seen[0::2] != seen[0::2]
    lists = refresh_runs(overlay, chosen) if status_changed else (gr.skip(), gr.skip())
    return (figure, progress_html(snap), log_text(snap), seen, *lists)


# ----------------------------------------------------------------------------- past runs

def _run_label(r: dict) -> str:
    s = r["summary"]
    if s is None:
        return f"{r['run_id']} (no result yet)"
    return f"{r['run_id']} ({s['status']}, val {_pct(s.get('best_val_acc'))}, test {_pct(s.get('test_acc'))})"


def run_choices() -> list[tuple[str, str]]:
    """Every run directory, newest first, as (label, run id)."""
    return [(_run_label(r), r["run_id"]) for r in train.list_runs(jobs.manager().runs_dir)]


def exportable_choices() -> list[tuple[str, str]]:
    """Runs with a result and best weights: what export_run can turn into weights/."""
    return [(_run_label(r), r["run_id"]) for r in train.list_runs(jobs.manager().runs_dir)
            if r["summary"] is not None and r["has_best"]]


def refresh_runs(overlay: list[str] | None = None, chosen: str | None = None):
    runs, done = run_choices(), exportable_choices()
    keep = [r for r in overlay or [] if r in {v for _, v in runs}]
    pick = chosen if chosen in {v for _, v in done} else (done[0][1] if done else None)
    return gr.Dropdown(choices=runs, value=keep, multiselect=True), gr.Dropdown(choices=done, value=pick)


def export_run(run_id: str | None, replace: bool) -> str:
    """Score the run's best weights on the test set and write weights/<model>.safetensors + card."""
    if not run_id:
        raise gr.Error("Pick a finished run to export.")
    runs_dir = jobs.manager().runs_dir
    target = weights.weights_dir() / f"{train.Run.find(run_id, runs_dir).config().model}.safetensors"
    if target.exists() and not replace:
        raise gr.Error(f"{target} already exists (the weights the Predict tab uses). "
                       "Tick 'Replace existing weights' to overwrite it.")
    try:
        weights_path, _, card = export.export_run(run_id, runs_dir=runs_dir)
    except (FileNotFoundError, data.DataSourceError, weights.WeightsError, ValueError) as e:
        raise gr.Error(str(e)) from None
    except Exception as e:  # anything else: one line for the user, not a traceback
        raise gr.Error(f"Export failed: {type(e).__name__}: {e}") from None
    tta = "n/a" if card.test_accuracy_tta is None else f"{100 * card.test_accuracy_tta:.2f}%"
    return (f"Exported `{card.model}` to `{weights_path}`: test accuracy {100 * card.test_accuracy:.2f}% "
            f"(with TTA {tta}) on {card.dataset}.")


# ----------------------------------------------------------------------------- layout

def build() -> None:
    names = zoo.names()
    model0 = "airnet" if "airnet" in names else names[0]
    preset0 = default_preset(model0)
    v = dict(zip(FIELDS, form_values(train.make_config(preset0, model=model0))))

    with gr.Tab("Train"):
        gr.Markdown("Train a model of the zoo on CIFAR-10 and watch it learn. One run at a time for "
                    "the whole app; closing this page does not stop it, and the curves are here when "
                    "you come back.")
        data_md = gr.HTML()
        download_btn = gr.Button("Download CIFAR-10 (170 MB, official files)", visible=False, size="sm")
        with gr.Row(equal_height=True):
            model = gr.Dropdown(names, value=model0, label="Model", info="An architecture of the zoo.")
            preset = gr.Dropdown(preset_choices(model0), value=preset0, label="Preset",
                                 info="A recipe: fills in every setting.")
            epochs = gr.Number(v["epochs"], label="Epochs", precision=0, minimum=1)
            batch_size = gr.Number(v["batch_size"], label="Batch size", precision=0, minimum=1)
            train_limit = gr.Number(v["train_limit"], label="Train on a subset", precision=0, minimum=0,
                                    info="Images; 0 = the whole training set. 5,000 for a quick demo.")
            with gr.Column(min_width=140):
                start_btn = gr.Button("Start", variant="primary")
                stop_btn = gr.Button("Stop", variant="stop")
        with gr.Accordion("Recipe: optimisation, augmentation, extras", open=True):
            with gr.Row():
                optimizer = gr.Dropdown(list(train.OPTIMIZERS), value=v["optimizer"], label="Optimizer")
                lr = gr.Number(v["lr"], label="Learning rate (peak)", minimum=0)
                schedule = gr.Dropdown(list(train.SCHEDULES), value=v["schedule"], label="LR schedule")
                weight_decay = gr.Number(v["weight_decay"], label="Weight decay", minimum=0)
                label_smoothing = gr.Slider(0, 0.5, v["label_smoothing"], step=0.05, label="Label smoothing")
            with gr.Row():
                augment_preset = gr.Dropdown(list(augment.PRESETS), value=v["augment"], label="Augmentation",
                                             info="standard: crop + flip; seed004: albumentations; "
                                                  "see the Augmentations tab.")
                mixup = gr.Slider(0, 1, v["mixup"], step=0.05, label="MixUp", info="Chance per batch.")
                cutmix = gr.Slider(0, 1, v["cutmix"], step=0.05, label="CutMix", info="Chance per batch.")
                ricap = gr.Slider(0, 1, v["ricap"], step=0.05, label="RICAP",
                                  info="Chance per batch; the three sum to at most 1.")
            with gr.Row():
                ema = gr.Number(v["ema"], label="EMA decay", minimum=0, maximum=0.9999,
                                info="Average of the weights over steps; 0 = off, 0.999 typical.")
                precision = gr.Dropdown(list(train.PRECISIONS), value=v["precision"], label="Precision",
                                        info="auto: bf16 on CPU, fp16/bf16 on GPU.")
                val_size = gr.Number(v["val_size"], label="Validation images", precision=0, minimum=0,
                                     info="Held out of the training set to pick the best epoch.")
        message = gr.Markdown()
        progress = gr.HTML()
        plot = gr.Plot(label="Loss, accuracy and learning rate", show_label=False)
        with gr.Row(equal_height=False):
            log = gr.Textbox(label="Log: one line per epoch", lines=10, max_lines=10, interactive=False, autoscroll=True)
            with gr.Column():
                with gr.Row(equal_height=True):
                    overlay = gr.Dropdown([], value=[], multiselect=True, scale=3,
                                          label="Overlay past runs on the curves")
                    refresh = gr.Button("Refresh the list of runs", scale=1, size="sm")
                export_choice = gr.Dropdown([], label="Finished run to export",
                                            info="Scores its best weights on the test set and writes "
                                                 "weights/<model>.safetensors with its model card.")
                with gr.Row(equal_height=True):
                    replace = gr.Checkbox(False, label="Replace existing weights")
                    export_btn = gr.Button("Export to weights/")
                export_md = gr.Markdown()
        seen = gr.State(None)
        timer = gr.Timer(TICK_SECONDS)

    form = [epochs, batch_size, optimizer, lr, schedule, weight_decay, label_smoothing, augment_preset,
            mixup, cutmix, ricap, ema, precision, train_limit, val_size]
    model.input(on_model, model, [preset, *form])
    preset.input(on_preset, [model, preset], form)
    watch = dict(fn=tick, inputs=[overlay, export_choice, seen],
                 outputs=[plot, progress, log, seen, overlay, export_choice], show_progress="hidden")
    start_btn.click(start, [model, preset, *form], message, show_progress="hidden").success(**watch)
    stop_btn.click(stop, None, message)
    timer.tick(**watch)
    overlay.input(**watch)
    refresh.click(refresh_runs, [overlay, export_choice], [overlay, export_choice]).then(**watch)
    export_btn.click(export_run, [export_choice, replace], export_md)
    # Page load (triggers=None and no inputs): say what the dataset is, and re-attach to the run.
    gr.on(None, data_panel, None, [data_md, download_btn])
    download_btn.click(download_data, None, [data_md, download_btn])
    gr.on(None, tick, None, watch["outputs"], show_progress="hidden")
