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
    """``source``'s compiled build if it is importable and not older than the source (and its
    ``.pxd``); else ``source`` itself."""
    name = source.__name__ + "_compiled"
    module: ModuleType | None
    try:
        module = importlib.import_module(name)
    except ImportError:
        module = None
        log.info("%s: no compiled build, running the Python source", source.__name__)
    if module is not None and source.__file__ and module.__file__:
        stem = source.__file__.removesuffix(".py")
        newest = max(_mtime(source.__file__), _mtime(stem + "_compiled.pxd"))
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
