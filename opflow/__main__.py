"""`python -m opflow FILE` runs FILE, as `opflow run FILE` does; subcommands work too."""
import sys

from .cli import entry, main

if __name__ == "__main__":
    args = sys.argv[1:]
    if args and not args[0].startswith("-") and args[0] not in main.commands:
        sys.argv.insert(1, "run")
    sys.argv[0] = "python -m opflow"
    entry()
