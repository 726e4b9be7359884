"""The Gradio app, one module per tab. Wiring and presentation only: every computation is a
call into cifar_demo. Nothing is built or loaded here: models load on first use."""

from __future__ import annotations

import gradio as gr

from . import augment_tab, compare_tab, evaluate_tab, predict_tab, robustness_tab, train_tab, zoo_tab

TITLE = "cifar-demo: CIFAR-10 in the browser"
MAX_FILE_SIZE = "10mb"
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
    with gr.Blocks(title=TITLE) as app:
        gr.Markdown(f"# {TITLE}\n{INTRO}")
        with gr.Tabs():
            predict_tab.build()
            train_tab.build()
            compare_tab.build()
            evaluate_tab.build()
            augment_tab.build()
            robustness_tab.build()
            zoo_tab.build()
    # The public API is /predict and /familiarity; the other events are the page's own wiring (ticks, refreshes,
    # start/stop): hide them from the API page and the client libraries.
    for fn in app.fns.values():
        if fn.api_name not in PUBLIC_API:
            fn.api_visibility = "private"
    return app


def launch(app: gr.Blocks, *, host: str = "127.0.0.1", port: int = 7860, share: bool = False, **kwargs):
    # Each event runs one request at a time (a whole-zoo prediction already uses both cores);
    # training runs in a separate low-priority process (jobs.py), so it never blocks the queue.
    app.queue(default_concurrency_limit=1)
    return app.launch(server_name=host, server_port=port, share=share, max_file_size=MAX_FILE_SIZE,
                      show_error=False, theme=gr.themes.Soft(), css=CSS, **kwargs)
