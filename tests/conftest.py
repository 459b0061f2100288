"""Backend fixtures: every numerical test runs on NumPy, array_api_strict,
PyTorch (CPU) and JAX (CPU, x64), and on CuPy when a GPU is present."""

from __future__ import annotations

import importlib

import pytest

try:  # enable float64 in JAX before any JAX array is created
    import jax

    jax.config.update("jax_enable_x64", True)
except ImportError:  # pragma: no cover - jax is in the test extra
    jax = None

try:
    import torch

    torch.set_default_dtype(torch.float64)
except ImportError:  # pragma: no cover - torch is in the test extra
    torch = None


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
