"""The run directory: written during a run, read back by `runs`, `show`, `report`, `resume` and the cache.
"""
