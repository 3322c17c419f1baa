"""The `opflow` console script: signal handlers first, then everything else.

Importing the CLI (click, then the run machinery) takes a while; a Ctrl-C or a
SIGTERM in that time must already exit 130 / 143, quietly. So this module
imports nothing heavy before installing the handlers.
"""
from . import interrupts


def main() -> None:
    interrupts.install()
    from .cli import entry

    entry()
