"""python -m cifar_demo: the command line (cifar_demo/cli/)."""

import sys

from .cli import CliError, build_parser, main

__all__ = ["CliError", "build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
