"""Backend fixtures: every numerical test runs on NumPy, array_api_strict,
PyTorch (CPU) and JAX (CPU, x64), and on CuPy when a GPU is present."""

from __future__ import annotations

import importlib
import os
import sys

#: Under pytest-xdist (the README runs ``pytest -n auto``) each worker has one
#: core: its BLAS and OpenMP pools get one thread, or the workers' pools
#: oversubscribe the cores (an H-matrix build on two busy cores took 25 s
#: with OpenBLAS's default pool against 2.5 s with one thread).  Libraries
#: loaded from here on read the variables; the pools of those already loaded
#: are limited in pytest_configure.
_XDIST_WORKER = bool(os.environ.get("PYTEST_XDIST_WORKER"))
if _XDIST_WORKER:
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import pytest  # noqa: E402

try:  # enable float64 in JAX before any JAX array is created
    import jax

    jax.config.update("jax_enable_x64", True)
except ImportError:  # pragma: no cover - jax is in the test extra
    jax = None

try:
    import torch

    torch.set_default_dtype(torch.float64)
    if _XDIST_WORKER:
        torch.set_num_threads(1)
except ImportError:  # pragma: no cover - torch is in the test extra
    torch = None


def pytest_configure(config):
    if _XDIST_WORKER and "numpy" in sys.modules:
        import threadpoolctl

        # BLAS libraries loaded before this file (by plugins) read the
        # variables above too late; keeping the returned object is not needed:
        # the limit stays until the worker ends
        threadpoolctl.threadpool_limits(1)


def _cupy_available() -> bool:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


BACKENDS = {
    "numpy": "array_api_compat.numpy",
    "array_api_strict": "array_api_strict",
    "torch": "array_api_compat.torch",
    "jax": "jax.numpy",
    "cupy": "array_api_compat.cupy",
}


@pytest.fixture(params=list(BACKENDS))
def xp(request):
    """The array namespace of one backend."""
    name = request.param
    if name == "cupy" and not _cupy_available():
        pytest.skip("CuPy needs a GPU")
    try:
        return importlib.import_module(BACKENDS[name])
    except ImportError as err:  # pragma: no cover - test extra installs all CPU backends
        pytest.skip(f"{name} not installed: {err}")


@pytest.fixture
def backend_name(xp):
    """Short name of the backend under test."""
    for name, module in BACKENDS.items():
        if xp.__name__ == module:
            return name
    return xp.__name__
