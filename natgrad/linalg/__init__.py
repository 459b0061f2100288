"""Layer 1: operators and solvers on raw arrays of any array-API backend.

The public names of this package are the contract in ``DESIGN.md``:
:class:`LinearOperator`, :func:`aslinearoperator`, :func:`from_matvec`,
:class:`SolveResult`, :func:`cg`, :func:`minres`, :func:`lanczos`.
"""

from .krylov import LanczosResult, cg, lanczos, minres
from .operators import (
    DenseOperator,
    IdentityOperator,
    LinearOperator,
    MatvecOperator,
    aslinearoperator,
    from_matvec,
    identity,
    shifted,
)
from .result import SolveResult

__all__ = [
    "LinearOperator",
    "DenseOperator",
    "MatvecOperator",
    "IdentityOperator",
    "aslinearoperator",
    "from_matvec",
    "identity",
    "shifted",
    "SolveResult",
    "cg",
    "minres",
    "lanczos",
    "LanczosResult",
]
