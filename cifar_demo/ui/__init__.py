"""The Gradio app, one module per tab. Wiring and presentation only: every computation is a
call into cifar_demo. Nothing is built or loaded here: models load on first use."""

from __future__ import annotations

import sys

import gradio as gr
from starlette.middleware import Middleware

from .. import jobs, runtime
from . import (
    adversarial_tab,
    augment_tab,
    common,
    compare_tab,
    evaluate_tab,
    gradio_fixes,
    http_guard,
    inside_tab,
    lesson,
    predict_tab,
    robustness_tab,
    train_page,
    zoo_tab,
)
from .context import FREE, GROUPS, MAX_THREADS, AppContext

__all__ = ["GROUPS", "AppContext", "build_app", "configure_queue", "launch"]

TITLE = "cifar-demo: CIFAR-10 in the browser"
# Uploads: pictures (pictures.MAX_BYTES, 10 MB, is checked by the Predict tab itself) and zips of
# your own images, whose cap is the data layer's (data.PUBLIC_LIMITS: 100 MB on a shared app).
# Public mode: a whole request is capped too, before Gradio parses it (ui.http_guard).
MAX_FILE_SIZE = {"public": 100 * 2**20, "local": "2gb"}
PUBLIC_API = ("predict", "familiarity")
# Public mode: every CACHE_SWEEP_S Gradio deletes what this app put in its cache (uploads, files
# served) once older than jobs.RETENTION_S, the rule a visitor's own folder follows (Blocks.delete_cache).
CACHE_SWEEP_S = 3600
# Events waiting in Gradio's queue at once, on a ZeroGPU Space. There Gradio caps the queue at one
# waiting event unless it is told a size (Blocks.queue: gradio.utils.is_zero_gpu_space), and a page's
# load alone sends about twenty: all but the first were refused with 503 "Queue is full", so no
# visitor got a token. The GPU's own queue is the job manager's (jobs), not Gradio's.
ZEROGPU_QUEUE_EVENTS = 500
SWITCH_INTERVAL_S = 0.0005   # how long a thread may hold the interpreter lock while another waits (launch)
# CIFAR-sized uploads (32x32) would show as a thumbnail-sized speck: draw them large and crisp.
CSS = "#predict-input img {image-rendering: pixelated; min-width: 45%; object-fit: contain;}"
INTRO = (
    "Classify a picture with every model of the zoo, train a network and watch it learn, "
    "look inside its mistakes, and see what each data augmentation does. "
    "All models see 32x32 colour images of ten classes: airplane, automobile, bird, cat, deer, "
    "dog, frog, horse, ship, truck."
)


def build_app(ctx: AppContext | None = None) -> gr.Blocks:
    """The app's Blocks; `ctx` (default: AppContext.from_env()) is handed to every tab."""
    ctx = AppContext.from_env() if ctx is None else ctx
    gradio_fixes.apply()
    with gr.Blocks(title=TITLE, delete_cache=delete_cache(ctx)) as app:
        gr.Markdown(f"# {TITLE}\n{INTRO} {lesson.HEADER_LINK}")
        gr.HTML(common.mode_html(ctx), elem_id="mode-line")
        # The visitor's token, kept by the browser across reloads (public mode: who owns which run).
        visitor = gr.BrowserState(None, storage_key=common.VISITOR_KEY, secret=common.BROWSER_STATE_KEY)
        with gr.Tabs():
            predict_tab.build(ctx, visitor)
            train_page.build(ctx, visitor)
            compare_tab.build(ctx, visitor)
            evaluate_tab.build(ctx, visitor)
            augment_tab.build(ctx, visitor)
            robustness_tab.build(ctx, visitor)
            inside_tab.build(ctx, visitor)
            adversarial_tab.build(ctx)   # issue 38
            zoo_tab.build(ctx, visitor)
        lesson.plan_section()
        app.load(common.new_token, visitor, visitor, show_progress="hidden", **FREE)
    # The public API is /predict and /familiarity; the other events are the page's own wiring (ticks, refreshes,
    # start/stop): hide them from the API page and the client libraries.
    for fn in app.fns.values():
        if fn.api_name not in PUBLIC_API:
            fn.api_visibility = "private"
        # Every event states its lane where it is wired (ui.context): none is left to the queue's default.
        # (Gradio's own gr.Examples loading does not queue: it needs none.)
        assert fn.concurrency_limit != "default" or not fn.queue, f"{fn.api_name}: wired without a lane"
    return app


def delete_cache(ctx: AppContext) -> tuple[int, int] | None:
    """Blocks.delete_cache: (CACHE_SWEEP_S, jobs.RETENTION_S) in public mode; locally None (kept)."""
    return (CACHE_SWEEP_S, int(jobs.RETENTION_S)) if ctx.public else None


def configure_queue(app: gr.Blocks) -> gr.Blocks:
    """Gradio's queue: one event at a time per lane unless a lane says otherwise (ui.context); on
    ZeroGPU room for ZEROGPU_QUEUE_EVENTS waiting events (elsewhere Gradio's default: no cap)."""
    return app.queue(default_concurrency_limit=1,
                     max_size=ZEROGPU_QUEUE_EVENTS if runtime.current().zerogpu else None)


def launch(app: gr.Blocks, ctx: AppContext, *, host: str = "127.0.0.1", port: int = 7860, share: bool = False,
           **kwargs):
    # Limits per event are stated where each is wired (ui.context's lanes); training runs in a
    # separate low-priority process (jobs), so it never blocks the queue.
    configure_queue(app)
    # The Predict pass runs in a thread that needs the interpreter lock back after each of its
    # operations; a request thread could hold it up to 5 ms (Python's default) each time.
    # 0.5 ms: 30 uploads at once while a run trained, last answers (bench/burst.py --train
    # --repeat 4, 2026-12-07) 2.11 1.60 1.51 1.77 s against 2.41 1.82 1.74 1.67 s.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    if ctx.public:   # request bodies capped, deep links (which write a session's state to a file) off
        guard = Middleware(http_guard.RequestGuard, body_cap=http_guard.BODY_CAP,
                           upload_cap=MAX_FILE_SIZE["public"] + http_guard.UPLOAD_OVERHEAD)
        kwargs["app_kwargs"] = {**kwargs.get("app_kwargs", {}), "middleware": [guard]}
    return app.launch(server_name=host, server_port=port, share=share, max_threads=MAX_THREADS,
                      max_file_size=MAX_FILE_SIZE["public" if ctx.public else "local"],
                      show_error=False, theme=gr.themes.Soft(), css=CSS, **kwargs)
