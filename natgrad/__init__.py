"""natgrad: natural-gradient and second-order optimisation on any array backend.

The core (:mod:`natgrad.linalg`) is structured linear algebra written once
against the Python array API standard, so the same code runs on NumPy, CuPy,
PyTorch and JAX arrays.  Importing natgrad imports none of the optional
libraries.
"""

from . import backend, linalg
from .linalg import SolveError, SolveResult, SolveStatus, cg, lanczos, minres

__version__ = "0.1.0"

__all__ = [
    "backend",
    "linalg",
    "SolveResult",
    "SolveStatus",
    "SolveError",
    "cg",
    "minres",
    "lanczos",
    "__version__",
]
