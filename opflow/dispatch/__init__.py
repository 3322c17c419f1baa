"""One run, in the coordinator's process: the loop, what is ready, what a task's record holds, stopping.

Kept empty: importing the coordinator must not load the worker's side.
"""
