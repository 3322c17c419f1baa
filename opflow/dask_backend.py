"""Placeholder for the Dask backend (issue 5); see executors.Backend for the interface."""
from __future__ import annotations

from .errors import UsageError


def check_available() -> None:
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise UsageError("--executor dask needs the 'distributed' package: pip install 'opflow[dask]'") from None
    raise UsageError("--executor dask is not implemented yet")
