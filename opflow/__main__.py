"""`python -m opflow FILE` runs FILE, as `opflow run FILE` does; subcommands work too."""
import sys

from .cli import entry, main

if __name__ == "__main__":
    args = sys.argv[1:]
    # `python -m opflow [OPTIONS] FILE` is `opflow run`: unless a subcommand (or
    # the group's own --help/--version) is what was asked for.
    if args and not any(a in main.commands for a in args) and not {"-h", "--help", "--version"} & set(args):
        sys.argv.insert(1, "run")
    entry(prog_name="python -m opflow")
