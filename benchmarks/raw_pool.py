"""The raw pool as a whole process: the baseline of overhead.py's whole-process measure.

    python benchmarks/raw_pool.py SHAPE N [--workers 2]

SHAPE is `independent` (N no-op tasks), `chain` (N no-op tasks, each submitted when the
one before it ends) or `shell` (N tasks, each `subprocess.run("true", shell=True)` in a
worker). A ProcessPoolExecutor with opflow's start method, driven by the ready queue of
BENCHMARKS.md (a done-callback feeds a queue; the loop submits what became ready).
Nothing else is imported, so that its start-up is the floor of "a pool runs N tasks".
"""
from __future__ import annotations

import sys


def noop(*_upstream):
    return None


def sh_true(*_upstream):
    import subprocess

    return subprocess.run("true", shell=True).returncode


def main(argv: list[str]) -> int:
    import multiprocessing
    import queue
    from concurrent.futures import ProcessPoolExecutor

    shape, count = argv[0], int(argv[1])
    workers = int(argv[argv.index("--workers") + 1]) if "--workers" in argv else 2
    method = argv[argv.index("--start-method") + 1] if "--start-method" in argv else "forkserver"
    fn = sh_true if shape == "shell" else noop
    done: queue.SimpleQueue = queue.SimpleQueue()
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method)) as pool:
        def submit(index: int, upstream=()) -> None:
            pool.submit(fn, *upstream).add_done_callback(lambda f, i=index: done.put((i, f)))

        if shape == "chain":
            submit(0)
            for _ in range(count):
                index, future = done.get()
                if index + 1 < count:
                    submit(index + 1, (future.result(),))
        else:
            for index in range(count):
                submit(index)
            for _ in range(count):
                done.get()[1].result()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
