"""Build of the compiled hot-path cores (everything else is in pyproject.toml).

Each listed module is pure Python and the only source of its code; Cython compiles it, typed by
the ``<module>_compiled.pxd`` beside it, into ``<module>_compiled`` (see
:mod:`stream.engine.compiled`). Without a C compiler the build fails loudly unless
``STREAM_PURE_PYTHON=1`` asks for the Python source only.
"""

import os

from setuptools import Extension, setup

COMPILED = [
    "stream/engine/dedupe_core.py",
    "stream/engine/fold_core.py",
    "stream/metrics/session_core.py",
    "stream/metrics/score/summary_core.py",
]


def extensions() -> list[Extension]:
    if os.environ.get("STREAM_PURE_PYTHON") == "1":
        return []
    from Cython.Build import cythonize

    modules = [
        Extension(path.removesuffix(".py").replace("/", ".") + "_compiled", [path])
        for path in COMPILED
    ]
    return cythonize(
        modules,
        compiler_directives={"language_level": 3, "annotation_typing": False},
        quiet=True,
        build_dir="build/cython",  # the generated C stays out of the package (and the wheel)
    )


setup(ext_modules=extensions())
