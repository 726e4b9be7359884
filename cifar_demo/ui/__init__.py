"""The Gradio app, one module per tab. Wiring and presentation only: every computation is a
call into cifar_demo. Nothing is built or loaded here: models load on first use."""

from __future__ import annotations

import gradio as gr

from .. import jobs
from . import (
    augment_tab,
    common,
    compare_tab,
    evaluate_tab,
    gradio_fixes,
    predict_tab,
    robustness_tab,
    train_tab,
    zoo_tab,
)

TITLE = "cifar-demo: CIFAR-10 in the browser"
# Uploads: pictures (pictures.MAX_BYTES, 10 MB, is checked by the Predict tab itself) and zips of
# your own images, whose cap is the data layer's (data.PUBLIC_LIMITS: 100 MB on a shared app).
MAX_FILE_SIZE = {"public": "100mb", "local": "2gb"}
PUBLIC_API = ("predict", "familiarity")
# CIFAR-sized uploads (32x32) would show as a thumbnail-sized speck: draw them large and crisp.
CSS = "#predict-input img {image-rendering: pixelated; min-width: 45%; object-fit: contain;}"
INTRO = (
    "Classify a picture with every model of the zoo, train a network and watch it learn, "
    "look inside its mistakes, and see what each data augmentation does. "
    "All models see 32x32 colour images of ten classes: airplane, automobile, bird, cat, deer, "
    "dog, frog, horse, ship, truck."
)


def build_app() -> gr.Blocks:
    gradio_fixes.apply()
    with gr.Blocks(title=TITLE) as app:
        gr.Markdown(f"# {TITLE}\n{INTRO}")
        gr.HTML(common.mode_html(), elem_id="mode-line")
        # The visitor's token, kept by the browser across reloads (public mode: who owns which run).
        visitor = gr.BrowserState(None, storage_key=common.VISITOR_KEY, secret=common.browser_secret())
        with gr.Tabs():
            predict_tab.build(visitor)
            train_tab.build(visitor)
            compare_tab.build(visitor)
            evaluate_tab.build(visitor)
            augment_tab.build(visitor)
            robustness_tab.build()
            zoo_tab.build()
        app.load(common.new_token, visitor, visitor, show_progress="hidden")
    # The public API is /predict and /familiarity; the other events are the page's own wiring (ticks, refreshes,
    # start/stop): hide them from the API page and the client libraries.
    for fn in app.fns.values():
        if fn.api_name not in PUBLIC_API:
            fn.api_visibility = "private"
        fn.concurrency_id, fn.concurrency_limit = concurrency(fn.fn)
    return app


# Which events may run side by side, for a class on one 2-core machine. Events that run every
# model of the zoo take both cores each: two at a time, in one line, so thirty Predicts do not
# thrash. Whole-test-set work (evaluations, exports, robustness curves) one at a time in its
# own line, so it never holds up a Predict. Augmentation previews (numpy on a few 32x32
# pictures) four at a time. Everything else (ticks, page loads, starting or stopping a run,
# reading caches) only reads small files: no limit, so it is never stuck behind the above.
MODEL_EVENTS = {"predict_image", "predict_run", "familiarity_check", "image_clicked", "show_picture", "measure", "measure_once"}
HEAVY_EVENTS = {"run_evaluation", "evaluate_with_drilldown", "export_run", "download_weights", "push_weights",
                "compute_curves", "compute_all", "download_data", "on_upload"}
GROUPS = {"models": 2, "heavy": 1, "augment": 4}


def concurrency(fn) -> tuple[str | None, int | None]:
    """(concurrency id, limit) of an event handler; (None, None) = its own line, no limit."""
    name = getattr(fn, "__name__", "") if fn is not None else ""
    module = getattr(getattr(fn, "func", fn), "__module__", "") or ""
    if name in MODEL_EVENTS:
        group = "models"
    elif name in HEAVY_EVENTS:
        group = "heavy"
    elif module.endswith("augment_tab"):
        group = "augment"
    else:
        return None, None
    return group, GROUPS[group]


def launch(app: gr.Blocks, *, host: str = "127.0.0.1", port: int = 7860, share: bool = False, **kwargs):
    # Limits per event are set by concurrency() in build_app; training runs in a separate
    # low-priority process (jobs), so it never blocks the queue.
    app.queue(default_concurrency_limit=1)
    return app.launch(server_name=host, server_port=port, share=share, max_file_size=MAX_FILE_SIZE["public" if jobs.manager().public else "local"],
                      show_error=False, theme=gr.themes.Soft(), css=CSS, **kwargs)
