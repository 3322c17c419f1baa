"""Functions for examples/csv_fanout.yaml (the `python` plugin finds this file beside it)."""
import csv
import pathlib

HERE = pathlib.Path(__file__).resolve().parent


def list_csv(folder):
    """The CSV files of a folder beside this file, as paths relative to it (a list: foreach fans out over it)."""
    return sorted(str(p.relative_to(HERE)) for p in (HERE / folder).glob("*.csv"))


def count_rows(path):
    with open(HERE / path, newline="") as f:
        return {"file": path, "rows": sum(1 for _ in csv.DictReader(f))}


def summarize(context):
    counts = context["count_rows"]  # a list: one result per instance, in order
    return {"files": len(counts), "rows": sum(c["rows"] for c in counts),
            "largest": max(counts, key=lambda c: c["rows"])["file"] if counts else None}
