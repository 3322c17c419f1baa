"""From YAML to a checked `Workflow`: reading, expanding, templating, validating, planning. Runs nothing.
"""
