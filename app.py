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
    args = parser.parse_args(argv)
    if args.public:
        os.environ["CIFAR_DEMO_PUBLIC"] = "1"   # read by cifar_demo.jobs.public_mode()

    from cifar_demo.ui import build_app, launch

    launch(build_app(), host=args.host, port=args.port, share=args.share)


if __name__ == "__main__":
    main()
