"""Every public name has a complete numpydoc docstring.

"Public" is what the API reference documents: each module's ``__all__``
(the same list ``docs/conf.py`` feeds to autosummary).  A function needs
Parameters (when it takes any), Returns, Raises, Notes and Examples; a class
the same less Returns.  The names listed in ``NOTHING_TO_RAISE`` are records
and exception/warning classes that raise nothing of their own, so they need
no Raises section.  The Examples themselves run as doctests
(``--doctest-modules``).
"""

from __future__ import annotations

import importlib
import inspect

import pytest

docscrape = pytest.importorskip("numpydoc.docscrape", reason="numpydoc is in the docs extra")

MODULES = [
    "natgrad.backend",
    "natgrad.backend.io",
    "natgrad.hmatrix._numba_store",
    "natgrad.validation",
    "natgrad.linalg",
    "natgrad.hmatrix",
    "natgrad.adapters",
    "natgrad.adapters.callables",
    "natgrad.adapters.torch",
    "natgrad.adapters.jax",
    "natgrad.adapters.compression",
    "natgrad.optim",
    "natgrad.frameworks.torch",
    "natgrad.frameworks.jax",
    "natgrad.examples.poisson",
]

#: plain records and exception/warning classes: no Raises section expected
NOTHING_TO_RAISE = {
    "natgrad.adapters.compression.LayerReport",
    "natgrad.adapters.compression.CompressionReport",
    "natgrad.frameworks.jax.FunctionalOptimizer",
    "natgrad.backend.dense.CholeskyError",
    "natgrad.backend.lazy.DistributedUnsupportedError",
    "natgrad.backend._namespaces.TracedArrayError",
    "natgrad.validation.CallableOutputError",
    "natgrad.backend.io.CheckpointError",
    "natgrad.validation.NonFiniteOutputError",
    "natgrad.backend._namespaces.is_array",
    "natgrad.backend.dense.has_pivoted_qr",
    "natgrad.backend.dense.has_truncated_pivoted_qr",
    "natgrad.backend.lazy.is_lazy",
    "natgrad.backend._namespaces.is_scipy_operator",
    "natgrad.linalg.woodbury.FactorizationWarning",
    "natgrad.hmatrix.cluster.Cluster",
    "natgrad.hmatrix.blocks.Block",
    "natgrad.hmatrix.lowrank.ACAResult",
    "natgrad.hmatrix.lowrank.LowRank",
}


def _public_objects():
    seen = {}
    for modname in MODULES:
        try:
            module = importlib.import_module(modname)
        except ImportError:  # an optional framework is missing
            continue
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if inspect.ismodule(obj) or not callable(obj):
                continue
            key = f"{getattr(obj, '__module__', modname)}.{getattr(obj, '__qualname__', name)}"
            seen.setdefault(key, obj)
    return sorted(seen.items())


PUBLIC = _public_objects()


def test_there_are_public_names_to_check():
    assert len(PUBLIC) > 50


@pytest.mark.parametrize("qualname, obj", PUBLIC, ids=[q for q, _ in PUBLIC])
def test_docstring_is_complete(qualname, obj):
    is_class = inspect.isclass(obj)
    doc = docscrape.ClassDoc(obj) if is_class else docscrape.FunctionDoc(obj)
    missing = []
    try:
        params = [p for p in inspect.signature(obj).parameters if p not in ("self", "cls")]
    except (TypeError, ValueError):
        params = []
    if params and not doc["Parameters"]:
        missing.append("Parameters")
    if not is_class and not (doc["Returns"] or doc["Yields"]):
        missing.append("Returns")
    if not doc["Raises"] and qualname not in NOTHING_TO_RAISE:
        missing.append("Raises")
    for section in ("Notes", "Examples"):
        if not doc[section]:
            missing.append(section)
    assert not missing, f"{qualname}: docstring lacks {', '.join(missing)}"
