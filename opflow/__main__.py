"""`python -m opflow FILE` runs FILE, as `opflow run FILE` does; subcommands work too."""
import sys

if __name__ == "__main__":
    from opflow.dispatch import interrupts
    from opflow.cli import startup_gc

    interrupts.install()  # first: a signal during the imports below exits 130/143, quietly
    startup_gc.hold()  # until the run has started: see startup_gc.py

from opflow.cli.commands import entry, main  # noqa: E402

if __name__ == "__main__":
    args = sys.argv[1:]
    # `python -m opflow [OPTIONS] FILE` is `opflow run`: unless a subcommand (or
    # the group's own --help/--version) is what was asked for.
    if args and not any(a in main.commands for a in args) and not {"-h", "--help", "--version"} & set(args):
        sys.argv.insert(1, "run")
    entry(prog_name="python -m opflow")
