"""Layer 1: operators and solvers on raw arrays of any array-API backend.

The public names of this package are the contract in ``DESIGN.md``:
:class:`LinearOperator`, :func:`aslinearoperator`, :func:`from_matvec`,
:class:`SolveResult` (with :class:`SolveStatus` and :class:`SolveError`), :func:`cg`, :func:`minres`, :func:`lanczos`,
:class:`Woodbury`, :func:`woodbury_solve`, :func:`nystrom`, :class:`LowRankPSD`,
:class:`NystromPreconditioner`, :func:`nystrom_pcg`, :func:`neumann_solve`,
:func:`saddle_free_solve`.
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
from .nystrom import LowRankPSD, NystromPreconditioner, nystrom, nystrom_pcg, nystrom_solve
from .result import SolveError, SolveResult, SolveStatus
from .series import WynnResult, neumann_solve, saddle_free_solve, wynn_epsilon
from .woodbury import FactorizationWarning, Woodbury, woodbury_solve

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
    "SolveStatus",
    "SolveError",
    "cg",
    "minres",
    "lanczos",
    "LanczosResult",
    "Woodbury",
    "woodbury_solve",
    "FactorizationWarning",
    "LowRankPSD",
    "nystrom",
    "NystromPreconditioner",
    "nystrom_pcg",
    "nystrom_solve",
    "neumann_solve",
    "saddle_free_solve",
    "wynn_epsilon",
    "WynnResult",
]
