"""What `opflow init` writes: a small runnable workflow and its sample CSV."""
from __future__ import annotations

__all__ = ["FILES", "write_example"]

import os
from pathlib import Path

from opflow.rundir.files import open_nofollow

WORKFLOW = """\
name: Example Workflow
description: Ingest a CSV file, compute summary statistics, report.
tasks:
  - id: ingest_csv
    plugin: csv_ingest
    config:
      path: sample_data.csv   # relative paths resolve beside this file
    depends_on: []
  - id: compute_metrics
    plugin: metrics
    config:
      numeric_columns: [age, score]
    depends_on: [ingest_csv]
  - id: notify
    plugin: shell
    config:
      command: "echo Metrics computed"
    depends_on: [compute_metrics]
"""

SAMPLE_CSV = """\
name,age,score,city
Alice,34,88.5,Lisbon
Bob,28,92.0,Porto
Carla,45,75.25,Braga
Dinis,39,,Lisbon
Eva,23,81.0,Faro
Filipe,51,69.5,Porto
Gil,31,94.75,Lisbon
Helena,27,87.0,Coimbra
"""

FILES = {"workflow.yaml": WORKFLOW, "sample_data.csv": SAMPLE_CSV}


def write_example(directory: Path, force: bool = False) -> list[Path]:
    """Write the example files; refuses to overwrite unless `force`. Returns the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    targets = [directory / name for name in FILES]
    existing = [p for p in targets if p.exists()]
    if existing and not force:
        raise FileExistsError(existing)
    for path in targets:
        # Never through a symlink at the name (--force would truncate its target).
        with open(open_nofollow(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), "w", encoding="utf-8") as out:
            out.write(FILES[path.name])
    return targets
