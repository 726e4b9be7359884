"""The Train tab's layout and wiring, sized for a projector (1280x720): what to train and Start on top,
then the run's progress, its curves and the live guesses side by side, all in the first screen; the
dataset (CIFAR-10 or your own images) and the whole recipe in closed sections below; the log, past
runs and export after them. The handlers are train_tab's (runs, form, ticks), lesson's (the first
choice, epoch times) and live_strip's (the guesses).
"""

from __future__ import annotations

import gradio as gr

from .. import augment, data, jobs, train
from . import lesson, live_strip, lr_find_panel, own_data, train_tab
from .context import FREE, HEAVY, MODELS, AppContext
from .train_runs import download_weights, export_run, push_weights, refresh_runs
from .train_tab import FIELDS, TICK_SECONDS, form_values

CURVES_HEIGHT = 250   # px: the curves and the guesses share one row of the first screen


def dataset_open():
    """Page load: the dataset section opens by itself when no CIFAR-10 is found (it says how to get it);
    otherwise it is left as it is (a visitor may have opened it already)."""
    try:
        data.resolve_source(download=False)
    except data.DataSourceError:
        return gr.Accordion(open=True)
    return gr.skip()


def on_pick(pick: str | None):
    """A pick chosen (ui.lesson.PICKS): its model, its preset (with the model's other presets), every
    setting, and the sentence that says what to notice. gr.Error for a name that is not a pick."""
    if pick not in lesson.NOTES:
        raise gr.Error("Pick one of the trainings offered.")
    model = lesson.model_of(pick)
    cfg = train.make_config(pick, model=model)
    return (gr.update(value=model), gr.Dropdown(choices=train_tab.preset_choices(model), value=pick),
            *form_values(cfg), lesson.NOTES[pick])


def build(ctx: AppContext, visitor: gr.BrowserState | None = None) -> None:
    """The tab; `visitor` is the page's token (ui.build_app makes it), None for a local-only page."""
    public = ctx.public
    pick0 = lesson.first_pick()
    model0 = lesson.model_of(pick0)
    v = dict(zip(FIELDS, form_values(train.make_config(pick0, model=model0))))

    with gr.Tab("Train"):
        with gr.Row(equal_height=True):
            pick = gr.Radio(lesson.pick_choices(), value=pick0, scale=5, elem_id="train-pick", show_label=False,
                            label="What to train (fills in the model and the recipe below)")
            with gr.Column(min_width=140, scale=1):
                start_btn = gr.Button("Start", variant="primary", elem_id="train-start")
                stop_btn = gr.Button("Stop", variant="stop", visible=False, elem_id="train-stop")
                resume_btn = gr.Button("Resume", visible=False, elem_id="train-resume")
        note = gr.Markdown(lesson.NOTES[pick0], elem_id="train-note")
        progress = gr.HTML(elem_id="train-progress")
        with gr.Row(equal_height=False):
            plot = gr.Image(label="Loss, accuracy and learning rate", show_label=False, type="filepath",
                            interactive=False, buttons=["download"], elem_id="train-curves",
                            height=CURVES_HEIGHT, scale=1)
            strip = gr.HTML(live_strip.empty_strip(), elem_id="train-live-strip")
        message = gr.Markdown()
        if public:
            gr.Markdown(f"On this shared app each run is limited to {ctx.manager.bounds.describe()}; "
                        f"one run of yours at a time, at most {jobs.QUEUE_CAP} waiting.",
                        elem_classes="bounds-line")

        with gr.Accordion("Dataset: CIFAR-10 or your own images", open=False) as dataset_acc:
            data_md = gr.HTML()
            download_btn = gr.Button("Download CIFAR-10 (170 MB, official files)", visible=False, size="sm")
            with gr.Row(equal_height=True):
                dataset = gr.Dropdown(own_data.choices(ctx), value=own_data.CIFAR, scale=2,
                                      label="Dataset", elem_id="train-dataset",
                                      info="CIFAR-10, or your own images: upload a .zip of class folders.")
                upload = gr.File(label="Your images: a .zip with one folder per class (or train/ and test/)",
                                 file_types=[".zip"], type="filepath", scale=3, height=90, elem_id="train-upload")
            dataset_md = gr.Markdown(elem_id="train-dataset-info")

        with gr.Accordion("Model and recipe: optimiser, learning rate, augmentation, EMA, precision", open=False):
            with gr.Row(equal_height=True):
                model = gr.Dropdown(lesson.model_choices({}), value=model0, label="Model", elem_id="train-model",
                                    info="An architecture of the zoo.")
                preset = gr.Dropdown(train_tab.preset_choices(model0), value=pick0, label="Preset",
                                     info="A recipe: fills in every setting.")
                epochs = gr.Number(v["epochs"], label="Epochs", precision=0, minimum=1)
                batch_size = gr.Number(v["batch_size"], label="Batch size", precision=0, minimum=1)
                train_limit = gr.Number(v["train_limit"], label="Train on a subset", precision=0, minimum=0,
                                        info="Images; 0 = the whole training set.")
            with gr.Row():
                optimizer = gr.Dropdown(list(train.OPTIMIZERS), value=v["optimizer"], label="Optimizer")
                lr = gr.Number(v["lr"], label="Learning rate (peak)", minimum=0,
                               info="With muon: the rate of biases, BatchNorm and the head; the conv "
                                    "filters take Muon steps of a fixed share of their size, set by the preset "
                                    f"({train.make_config('muon').muon_lr} in muon, "
                                    f"{train.make_config('muon_lowres').muon_lr} in muon_lowres).")
                schedule = gr.Dropdown(list(train.SCHEDULES), value=v["schedule"], label="LR schedule")
                weight_decay = gr.Number(v["weight_decay"], label="Weight decay", minimum=0)
                label_smoothing = gr.Slider(0, 0.5, v["label_smoothing"], step=0.05, label="Label smoothing")
            finder = lr_find_panel.build()   # "Find a learning rate", beside it (issue 38)
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
                                        info="auto: bf16 on a CPU that has it natively, else fp32; fp16/bf16 on GPU.")
                val_size = gr.Number(v["val_size"], label="Validation images", precision=0, minimum=0,
                                     info="Held out of the training set to pick the best epoch.")

        with gr.Row(equal_height=False):
            log = gr.Textbox(label="Log: one line per epoch", lines=10, max_lines=10, interactive=False,
                             autoscroll=True)
            with gr.Column():
                with gr.Row(equal_height=True):
                    overlay = gr.Dropdown([], value=[], multiselect=True, scale=3,
                                          label="Overlay past runs on the curves")
                    refresh = gr.Button("Refresh the list of runs", scale=1, size="sm")
                export_choice = gr.Dropdown([], label="Finished run of yours" if public else "Finished run to export",
                                            info="Scores its best weights on the test set and makes "
                                            + ("a .zip of the weights and their model card." if public else
                                               "weights/<model>.safetensors with its model card."))
                with gr.Row(equal_height=True):
                    if public:  # nothing a visitor does writes the shared tree: a download instead
                        download_btn_w = gr.Button("Download weights", elem_id="train-download")
                        push_btn = gr.Button("Push to the Hub", visible=ctx.hub_repo is not None)
                    else:
                        replace = gr.Checkbox(False, label="Replace existing weights")
                        export_btn = gr.Button("Export to weights/")
                export_md = gr.Markdown()
                download_file = gr.File(label="Your weights (.zip: safetensors + model card)", visible=False,
                                        interactive=False, elem_id="train-download-file")
        seen = gr.State(None)
        strip_key = gr.State(None)
        timer = gr.Timer(TICK_SECONDS)

    form = [epochs, batch_size, optimizer, lr, schedule, weight_decay, label_smoothing, augment_preset,
            mixup, cutmix, ricap, ema, precision, train_limit, val_size]
    token = [visitor] if visitor is not None else []
    finder.wire(ctx, train_tab.config_from_form, model, preset, form, lr, dataset, token)
    bind = ctx.bind
    pick.input(on_pick, pick, [model, preset, *form, note], **FREE)
    model.input(train_tab.on_model, model, [preset, *form], **FREE)
    preset.input(train_tab.on_preset, [model, preset], form, **FREE)
    # Decoding an upload reads every image once: heavy.
    upload.upload(bind(train_tab.on_upload), [model, preset, upload, *token], [dataset, dataset_md, preset, *form],
                  **HEAVY)
    dataset.input(bind(train_tab.on_dataset), [model, preset, dataset, *token], [dataset_md, preset, *form], **FREE)
    # Ticks only read run directories (the picture comes from ui.common.cached_png): no limit.
    watch = dict(fn=bind(train_tab.tick), inputs=[overlay, export_choice, seen, *token],
                 outputs=[plot, progress, log, seen, overlay, export_choice, stop_btn, resume_btn, timer],
                 show_progress="hidden", **FREE)
    start_btn.click(bind(train_tab.start), [model, preset, *form, dataset, *token], message, show_progress="hidden",
                    **FREE).success(**watch)
    stop_btn.click(bind(train_tab.stop), token, message, **FREE).then(**watch)
    resume_btn.click(bind(train_tab.resume), token, message, **FREE).success(**watch)
    timer.tick(**watch)
    overlay.input(**watch)
    refresh.click(bind(refresh_runs), [overlay, export_choice, *token], [overlay, export_choice], **FREE).then(**watch)
    # The live guesses: a stat of the run's checkpoint on each new tick (free), the forward pass only
    # when a new epoch wrote it (the models' lane).
    seen.change(bind(live_strip.strip_key), [seen, strip_key, *token], strip_key, show_progress="hidden", **FREE)
    strip_key.change(bind(live_strip.update_strip), [strip_key, *token], strip, show_progress="hidden", **MODELS)
    # Scoring the test set for a card: heavy, one at a time with the Evaluate tab's scoring.
    if public:
        download_btn_w.click(bind(download_weights), [export_choice, *token], download_file, **HEAVY)
        push_btn.click(bind(push_weights), [export_choice, *token], export_md, **HEAVY)
    else:
        export_btn.click(bind(export_run), [export_choice, replace], export_md, **HEAVY)
    # Page load (triggers=None and no inputs): say what the dataset is, and re-attach to the run.
    gr.on(None, train_tab.data_panel, None, [data_md, download_btn], **FREE)
    gr.on(None, dataset_open, None, dataset_acc, **FREE)
    gr.on(None, bind(lesson.model_list), token, model, **FREE)
    gr.on(None, bind(own_data.refresh), [dataset, *token], dataset, **FREE)
    download_btn.click(train_tab.download_data, None, [data_md, download_btn], **HEAVY)
    # On load the page's token is the one its browser kept (a first visit gets one from ui's
    # load event, and the next tick sees it).
    gr.on(None, **watch)

