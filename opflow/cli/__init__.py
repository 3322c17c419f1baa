"""The terminal: the `opflow` commands, the console script, the live view.

Kept empty: `launch.py` installs the signal handlers before anything heavy is imported.
"""
