"""The `opflow` console script: signal handlers first, then everything else.

Importing the CLI (click, then the run machinery) takes a while; a Ctrl-C or a
SIGTERM in that time must already exit 130 / 143, quietly. So this module
imports nothing heavy before installing the handlers.
"""
from opflow.dispatch import interrupts
from opflow.cli import startup_gc


def main() -> None:
    interrupts.install()
    startup_gc.hold()  # until the run has started: see startup_gc.py
    from opflow.cli.commands import entry

    entry()
