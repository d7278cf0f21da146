"""Asking a worker process whether it is ready, for the tools that start one (demo, bench)."""

from __future__ import annotations

import urllib.request

__all__ = ["worker_ready"]


def worker_ready(base_url: str, timeout: float = 2.0) -> bool:
    """Whether ``/readyz`` answers 200: partitions assigned, Redis reachable, nothing rebuilding.

    The probe route is public, so no token is needed."""
    try:
        with urllib.request.urlopen(f"{base_url}/readyz", timeout=timeout) as response:
            return bool(response.status == 200)
    except OSError:
        return False
