"""What runs in a worker process: one attempt of a task, its output capture, its context and its limits.

Kept empty: the coordinator's side imports a few of these modules (the context store, the guard)
without loading the rest.
"""
