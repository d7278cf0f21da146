"""Compiled builds of pure-Python hot-path modules: load one when it is built and current.

A hot-path module (``session_core.py``) is the only source of its code. ``setup.py`` compiles it
with Cython, typed by a ``.pxd`` beside it, into a module of its own name plus ``_compiled``
(``session_core_compiled``), so both can be imported: the tests compare them, and a process runs
the Python source when it was installed without a build (``STREAM_PURE_PYTHON=1``, for a machine
without a C compiler) or when the source was edited after the build (a stale build must never
run code that is no longer in the repository). Which one runs is logged once and exported
(``stream_compiled_core``).
"""

from __future__ import annotations

import importlib
import logging
import os
from types import ModuleType

__all__ = ["CORES", "load"]

log = logging.getLogger(__name__)

#: Source module name -> whether its compiled build is the one in use in this process.
CORES: dict[str, bool] = {}


def _mtime(path: str) -> float:
    try:
        return os.path.getmtime(path)
    except OSError:
        return 0.0


def load(source: ModuleType) -> ModuleType:
    """``source``'s compiled build if it is importable and, in a source tree, not older than the
    source and its ``.pxd``; else ``source`` itself."""
    name = source.__name__ + "_compiled"
    module: ModuleType | None
    try:
        module = importlib.import_module(name)
    except ImportError:
        module = None
        log.info("%s: no compiled build, running the Python source", source.__name__)
    # A build goes stale only in a source tree, where the source can be edited after it; the
    # .pxd beside the source marks one (a wheel ships neither .pxd nor a way to edit, and pip
    # sets every file's mtime at install, in no promised order).
    pxd = source.__file__.removesuffix(".py") + "_compiled.pxd" if source.__file__ else ""
    if module is not None and module.__file__ and source.__file__ and os.path.exists(pxd):
        newest = max(_mtime(source.__file__), _mtime(pxd))
        if _mtime(module.__file__) < newest:
            log.warning(
                "%s: its compiled build is older than its source, running the Python source "
                "(rebuild: deploy/local/run.sh setup, or pip install -e .)",
                source.__name__,
            )
            module = None
    if module is not None:
        log.info("%s: running its compiled build %s", source.__name__, module.__file__)
    CORES[source.__name__] = module is not None
    return module if module is not None else source
