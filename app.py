"""cifar-demo's Gradio app: `python app.py` (or a Hugging Face Space) opens it.

Builds the Blocks from cifar_demo.ui and launches; it holds no logic of its own.
"""

from __future__ import annotations

import argparse
import os


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="cifar-demo: CIFAR-10 in the browser")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--share", action="store_true", help="create a public gradio.live link (off by default)")
    parser.add_argument("--public", action="store_true",
                        help="public mode, as on a Hugging Face Space (SPACE_ID set): runs per visitor, a bounded "
                             "queue, no writes to weights/ (also CIFAR_DEMO_PUBLIC=1)")
    parser.add_argument("--data", metavar="DIR",
                        help="the dataset folder or .zip to train and evaluate on (same as CIFAR_DEMO_DATA=DIR)")
    args = parser.parse_args(argv)
    if args.data:
        # The data layer reads the variable, in this process and in the training runs it starts.
        os.environ["CIFAR_DEMO_DATA"] = args.data
    if args.public:
        # The tabs get the mode from the context below; the training runs the app starts (child
        # processes) and the data layer's default caps read it from the environment.
        os.environ["CIFAR_DEMO_PUBLIC"] = "1"

    from cifar_demo.data import on_space
    from cifar_demo.ui import AppContext, build_app, launch

    ctx = AppContext.from_env(public=True if args.public else None)
    on_space.start_fetch()   # a Space without CIFAR-10: downloaded once, now, for every visitor
    launch(build_app(ctx), ctx, host=args.host, port=args.port, share=args.share)


if __name__ == "__main__":
    main()
