r"""Error-bounded hierarchical matrices.

An :class:`HMatrix` partitions a matrix by a block cluster tree into small
dense blocks and low-rank blocks ``U Vᵀ`` whose ranks are chosen per block to
meet a global Frobenius bound

.. math:: \|H - A\|_F \le \varepsilon \|A\|_F .

**Budget.**  Since the blocks partition the matrix,
``‖H − A‖_F² = Σ_b ‖H_b − A_b‖_F²``; any split of ``ε²‖A‖_F²`` into block
budgets works.  natgrad truncates every low-rank block locally within its
own share ``ε_b = ε‖A_b‖_F`` (as in Mango & Katende, arXiv 2409.07028) and
then hands the budget left over -- dense blocks are exact and donate their
share, ACA blocks keep part of theirs unspent -- to the blocks whose
singular values are cheapest to drop: all singular values beyond the local
truncations enter one pool, sorted by ``σ² / (m_b + n_b)`` (error per entry
of storage saved), and are discarded greedily while the total stays within
the budget.  Past the local truncations, which no block exceeds, this
spends the budget where it saves the most storage.  Truncated SVD tails are
exact (Eckart–Young), so for dense input the bound is guaranteed, up to
rounding (2% of the budget is held back for it).

**Kernel blocks.**  Small admissible blocks are evaluated and compressed
exactly: where the array library has a QR with column pivoting (NumPy,
LAPACK ``geqp3``; see :func:`natgrad.backend.pivoted_qr`), blocks of up to
96 points by it -- ``A Π = Q R``, and dropping the rows ``i ≥ k`` of ``R``
costs exactly ``Σ_{i≥k} ‖R_i‖²``; the factorisation is 7-9× cheaper than
the SVD, the whole compression of a block 3-4× (measured at 39 and 78
points), for ranks 5-15 % above the SVD's on average (up to 25 %) -- and
larger ones by a sketch (below) or the same QR;
elsewhere by the SVD.  In float64 at a tolerance well above the rounding
of ``AᵀA`` (``eps`` of about 5e-7 or more), blocks of 64 points or more
take the same pivots through the Gram matrix and stop at the budget
(:func:`natgrad.backend.truncated_pivoted_qr`: 0.25-0.66 of ``geqp3``'s
time at 96-256 points), and are then never sketched.  The pool ranks a QR block by a non-increasing
envelope of its row norms (they may rise again) and spends their exact
tails.  **Near field.**  With ``compress_near`` (the default where there
is a pivoted QR), the off-diagonal leaves of the near field -- the blocks
the admissibility condition leaves dense -- are tested the same way, in
size classes of their own, and stored low-rank where that stores less:
smooth kernels are low-rank well inside the near field (the broad Gaussian
in the plane at n = 20 000 stores half as much), and larger leaves no
longer store more.  A subtree of the block tree whose leaves are all evaluated
whole (these and the dense near-field blocks) and that holds at most 2¹⁶
entries is evaluated in one kernel call, and its leaves are cut from the
answer: a call's fixed cost (the kernel's own Python, the checks of its
answer) is most of the cost of a leaf block.  Measured at n = 20 000
(Matérn 3/2 in the plane, leaves of 64): 1032 block calls instead of
5558, besides ACA's 10 636 rows and columns; exp(−r) on a line: 129
instead of 867.  (With symmetric storage, a diagonal leaf cut so that is
asymmetric beyond rounding -- a larger product can round ``x_i·x_j`` and
``x_j·x_i`` apart -- is evaluated on its own before its symmetry check.)
A small admissible block whose rank at its budget would not save storage is split
into its children, which are cut from its entries (not evaluated again), or
stored dense when its clusters are leaves; in a size class where most blocks
so far failed this test, the next one reads its singular values alone
(3-3.6× cheaper than the SVD with vectors) and computes the vectors only if
it passes -- the same decisions, so the same matrix.  A size class that has
failed 16 tests or more and passed fewer than one in 17 (blocks admissible
by geometry that rarely compress, as in 5-D at n = 20 000, where 99 of 7414
admissible blocks of 128 × 128 passed) stores its next blocks like failed
ones without a test, testing one in max(8, failures / 8) so that the class
resumes if enough of them pass: the bound is untouched (those blocks are
exact), the storage can grow by what the skipped blocks would have saved
(at most 0.12 % on the 5-D cases at n = 20 000).  Where a block of the
size class has compressed before, the block is first projected on one
Gaussian sketch ``A Ω`` of ``⌈1.25 k⌉ + 8`` columns, ``k`` the largest rank
of the class so far (three matrix products instead of an SVD); the sketch's
residual ``‖A − QQᵀA‖_F`` is computed, so the truncation's error is exact,
and a sketch whose residual exceeds a quarter of the block's share gives way
to the SVD -- the ranks are those of the SVD.  Large ones use ACA
with partial pivoting, which needs only some rows and columns of the block,
with a safety factor of 10 on its heuristic stopping rule.  The rows and
columns come from the kernel until they add up to a third of the block;
a block of at most 2²⁰ entries is then formed in one kernel call and ACA
goes on from its entries (a high-rank block costs one call instead of
hundreds).  Once most ACA blocks of a size class have been formed so, the
next ones of the class are formed at once and sketched at the class's rank
(ACA's ranks count towards it), without the crosses.  ACA is followed by
recompression (QR and a small SVD) within half of the block's share; the
rest of the share goes to the pool.  The ACA residuals are not orthogonal to
the truncation tails, so they are charged first and the tails share what is
left: ``‖H − A‖_F ≤ (Σ_b r_b²)^{1/2} + (Σ_b t_b²)^{1/2}`` (Minkowski) for
residuals ``r_b`` and tails ``t_b``.  With ``verify=True`` (the default for
matrices of up to 4·10⁶ entries) every ACA block is then checked against the
formed block, its measured residual replaces ACA's estimate, and a block
that misses its share is replaced by an exact truncated SVD, which makes the
bound a guarantee; without it the bound rests on ACA's error estimate,
reported in :attr:`HMatrix.error_estimate`.

References
----------
W. Hackbusch, *Hierarchical Matrices: Algorithms and Analysis*, Springer 2015.
M. Bebendorf, Approximation of boundary element matrices, Numer. Math. 86 (2000).
S. Mango, J. Katende, arXiv 2409.07028 (error-bounded adaptive H-matrices).
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
import warnings
from dataclasses import dataclass
from typing import Any, Callable

from .. import backend, validation
from ..linalg.operators import LinearOperator
from . import lowrank
from ._matvec import StackedBlocks, array_nbytes, bucket
from ._store import compiled_block_store
from .blocks import Block, BlockTree, split_pairs
from .cluster import Cluster, ClusterTree, _check_points, _host_floats, spectral_coordinates

__all__ = ["HMatrix"]

#: why the H-matrix refuses dask arrays (in its DistributedUnsupportedError)
_NOT_DISTRIBUTED = (
    "an H-matrix clusters the points and compresses its blocks in one memory (the "
    "cluster tree, ACA's pivots and the block store are sequential, host-driven "
    "structures)."
)


#: ACA stops at this fraction of the relative tolerance (its stopping rule
#: only estimates the error)
_ACA_SAFETY = 0.1
#: share of an ACA block's budget that its local recompression may spend; the
#: rest goes to the global pool
_LOCAL_SHARE = 0.5
#: fraction of ε actually handed out; the rest absorbs rounding
_ROUNDING = 0.98
#: ACA blocks are verified against the formed block by default up to this
#: many matrix entries (cheap at that size)
_VERIFY_LIMIT = 4_000_000
#: ACA forms a block of at most this many entries (8 MB in float64) once its
#: crosses have fetched a third of them (see _Crosses)
_FORM_LIMIT = 1 << 20
#: the kernel build forms a block of at most this many entries (512 KB in
#: float64) in one call when every stored leaf below it is formed (dense,
#: or compressed by SVD), at least two of them, and cuts the leaves from it
_PREFETCH_LIMIT = 1 << 16
#: dense-input blocks with min(m, n) above this use the randomized range finder
_RSVD_MIN = 256
#: formed blocks with min(m, n) at most this are compressed by a pivoted QR
#: where the library has one (NumPy), in place of a sketch or the SVD (larger
#: ones by a sketch at their class's rank, else by the QR up to _RSVD_MIN):
#: measured (one thread) on exp(-r) blocks, QR and its truncation took 61,
#: 140 and 311 µs at 39, 78 and 100 square against 151, 228 and 285 for a
#: sketch, and 185 and 551 for the SVD at 39 and 78
_QR_MAX = 96
#: a formed block is first sketched with ``ℓ = ⌈1.25 k⌉ + 8`` random vectors,
#: ``k`` the largest rank a block of its size class has needed so far
#: (see _Builder.formed) ...
_SKETCH_GROWTH, _SKETCH_EXTRA = 1.25, 8
#: ... when ``ℓ`` is at most this share of min(m, n).  Against the SVD (no
#: pivoted QR in the library, or min(m, n) above _RSVD_MIN): a sketch of
#: width 56 of a 96-square block took 0.70 ms against 0.93 for its SVD,
#: width 72 of a 128-square one 1.5 ms against 2.5; width 43 of a 64-square
#: one 0.61 ms against 0.44.  Against a pivoted QR and its truncation
#: (NumPy, one thread, 2026-12-02): the sketch took 0.75-1.22 of the QR's
#: time at 0.12-0.21 of 128 square, and broke even at 0.18-0.25 of 128 x 256,
#: 192 and 256 square; up to the cross-over the sketch is kept, for its
#: SVD-optimal ranks (the QR's are 5-15 % higher)
_SKETCH_OVER_SVD, _SKETCH_OVER_QR = 0.6, 0.2
#: ... and the sketch is kept if its residual is at most this share of the
#: block's budget (truncation then gets √(1 − 0.25²) = 97 % of it, so ranks
#: stay those of the SVD); otherwise the SVD is computed
_SKETCH_SHARE = 0.25
#: a size class whose formed blocks have failed this many rank tests, and
#: passed fewer than one in _FAILS_PER_PASS + 1 of them, stores its next
#: blocks dense without a test (admissible by geometry, not in practice: 5-D
#: at n = 20 000, where the admissible 128 x 128 class passed 99 of 7414
#: tests and the near field's 0 of 2944), testing one block in
#: max(_PROBE_EVERY, failures / _PROBE_EVERY) so that a class whose farther
#: blocks compress resumes, and a class that never does costs ~4 √blocks
#: tests, not one in 8.  The lowest pass rate measured in 2-3 D was 1 in
#: 8.6 (3-D Gaussian, length scale 0.2, near field at n = 8000), still tested
_UNTESTED_AFTER = 16
_FAILS_PER_PASS = 16
_PROBE_EVERY = 8
#: ... and so does a near-field contact class (blocks whose boxes share a
#: face, an edge or a corner, see Cluster.contact; all sizes pooled) whose
#: tested blocks stored more than this share of their entries: a near
#: field that compresses little costs a test per block for a few percent of
#: the storage (the dense near field stored 1.07-1.14x the smallest at
#: 2000 in the cube, the tested one built 1.3-1.6x the fastest).  How much
#: a block compresses follows its contact: in the cube at n = 8000, faces
#: 0.80-1.00 (exp, Matérn 5/2, log r), edges 0.60-0.76, corners 0.47-0.60
#: (the short Gaussian: 0.90-1.00); on the sphere at most 0.66 (faces, over
#: their first 16 tests).  The faces compress better as n grows (exp in
#: the cube: 0.88-0.90 at 2000-4000, 0.74 at 20 000, where the first 16
#: tested store 0.81), so the threshold is set where the classes it skips
#: cost little storage at every size: against testing every block, at most
#: 1.8 % more at 8000 and 20 000 in the cube, 0.3-6 % at 2000-4000, for
#: builds 0.87-0.95x as long (0.7: up to 6.4 % more at 8000 and 6 % at
#: 20 000, builds 5-9 % faster than 0.8; 0.65 left the sphere's faces
#: untested for 12 % more storage).  Until the eighteenth pass the classes
#: were the size classes, which mixed the three contacts
_NEAR_SAVES_LITTLE = 0.8
#: mixed precision: a block is stored in float32 when its rounding error is
#: at most this many float32 unit roundoffs times its norm (rounding to
#: nearest costs about 0.8 of one, measured on kernel blocks)
_LOW_ROUNDOFFS = 3.0
#: ... and the same share of ε is held back from truncation for it, unless
#: the share would exceed this (then float32 cannot pay: everything stays
#: in the working precision)
_LOW_MAX_SHARE = 0.5


@dataclass
class _Record:
    """One leaf block: its place, kind, data (until packed) and error."""

    kind: str  # "lowrank", "dense" or "zero"
    row0: int
    m: int
    col0: int
    n: int
    method: str  # "qr", "svd", "sketch", "rsvd", "aca", "dense"
    U: Any = None
    V: Any = None
    error: float = 0.0
    rank: int = 0
    slot: int = -1
    #: 2 when the block is stored once for itself and its transpose
    #: (symmetric storage), else 1; it weighs the block's norm and error
    weight: int = 1
    #: dtype the block is stored in (float32 under mixed precision)
    stored_dtype: Any = None


@dataclass
class _PoolEntry:
    """A low-rank block whose final rank the global budget decides."""

    rec: int
    F: Any  # (m, k), as stored (maybe float32): U Σ with orthonormal U, or a pivoted QR's factor
    #: k values on the host, non-increasing: the singular values, or for a
    #: pivoted QR an envelope of its row norms (what the greedy truncation
    #: ranks by)
    ranked: list[float]
    #: on the host: the singular values or row norms, whose tails are the
    #: exact error of truncating the factors (orthogonal terms)
    vals: list[float]
    Gt: Any  # (k, n), as stored: orthonormal rows (SVD, ACA), or the other QR factor
    e0: float  # squared error already spent (local truncation / range finder)
    weight: int  # as _Record.weight
    norm: float  # ‖A_b‖_F, what the block's storage rounding is measured against
    #: error of the factors before any truncation (ACA's residual, or the
    #: measured one for verified ACA blocks), not orthogonal to the tails:
    #: it adds to them
    residual: float = 0.0
    #: storage rounding error at rank 0..k (set by _Builder.choose_precision)
    rounding: list[float] | None = None


class _Builder:
    """Collects block records, the budget pool and the block layout."""

    def __init__(self, xp: Any, dtype: Any, eps: float, splitting: bool, symmetric: bool = False,
                 mixed_precision: bool = False, admissibility: str = "standard") -> None:
        self.xp, self.dtype = xp, dtype
        self.has_qr = backend.has_pivoted_qr(xp, dtype)
        self.splitting, self.symmetric = splitting, symmetric
        if not isinstance(mixed_precision, bool):
            raise TypeError(f"mixed_precision must be True or False, got {mixed_precision!r}")
        # Mixed precision: the share θ of ε goes to storage rounding, a block
        # rounded to float32 may spend θ ε ‖A_b‖_F of it, truncation gets the
        # rest; by Minkowski the two errors add to at most ε ‖A‖_F overall.
        self.low, share = None, 0.0
        if mixed_precision and dtype == xp.float64:
            share = _LOW_ROUNDOFFS * backend.eps(xp.float32, xp) / 2.0 / eps
            if share <= _LOW_MAX_SHARE:
                self.low = xp.float32
            else:
                share = 0.0
        self.eps = eps * _ROUNDING * (1.0 - share)
        self.low_allowance = eps * _ROUNDING * share
        self._requested = eps
        #: the blocks are built from the matrix times 2^-scale_exp (see
        #: :func:`_scale_exponent`) and scaled back when the matrix is made
        self.scale_exp = 0
        self.records: list[_Record] = []
        self.pool: list[_PoolEntry] = []
        self.norm2_exact = 0.0  # Σ ‖A_b‖² over dense and SVD blocks
        self.norm2_aca = 0.0  # Σ ‖A_b‖² (exact or estimated) over ACA blocks
        self.exact: Callable[[], Any] | None = None  # the permuted matrix, on demand
        self.admissibility = admissibility  # the block tree's rule, reported in HMatrix.info
        self.counts = {"dense": 0, "qr": 0, "svd": 0, "sketch": 0, "rsvd": 0, "aca": 0, "aca_fallback": 0,
                       "aca_formed": 0, "split": 0, "untested": 0, "near": 0}
        #: (compressed, not compressed) counts of the rank tests per size
        #: class of formed blocks (see _size_class): where most failed, an SVD
        #: test reads the singular values first and computes vectors only if
        #: it passes
        self.tests: dict[tuple[int, int, bool], tuple[int, int]] = {}
        #: (entries stored, entries of the blocks, tests) over the rank tests
        #: of near-field blocks by contact class (see Cluster.contact), a
        #: compressed block counted at its tested rank: what the tests save
        #: (see _skip_test)
        self.near_entries: dict[int, tuple[int, int, int]] = {}
        #: blocks skipped since the last probe, per size class (key) or
        #: near-field contact class (an int; see _skip_test)
        self.since_probe: dict[tuple[int, int, bool] | int, int] = {}
        #: the largest rank a formed or ACA block of each size class compressed
        #: to: the next formed one of the class is sketched at a little more
        self.ranks: dict[tuple[int, int, bool], int] = {}
        self._omega: Any = None  # the Gaussian test matrix, sliced per block
        #: ACA blocks per size class: (formed after a third of their entries,
        #: finished from crosses); where the first lead, the next are formed
        self.forming: dict[tuple[int, int, bool], tuple[int, int]] = {}

    def set_scale(self, exp: int) -> None:
        """Build from the matrix times ``2^-exp`` (called before any block).

        Float32 storage cannot hold a matrix whose entries are scaled far
        enough to need this (beyond ``2^±(maxexp/4)``), so mixed precision is
        switched off and its share of the budget returns to truncation.
        """
        self.scale_exp = exp
        if exp and self.low is not None:
            self.low, self.low_allowance = None, 0.0
            self.eps = self._requested * _ROUNDING

    # -- leaves ---------------------------------------------------------------
    def weight(self, t: Cluster, s: Cluster) -> int:
        """How many blocks of the matrix the stored block ``t × s`` stands for."""
        return 2 if self.symmetric and t is not s else 1

    def _add(self, rec: _Record) -> tuple[str, int]:
        self.records.append(rec)
        return ("leaf", len(self.records) - 1)

    def dense(self, t: Cluster, s: Cluster, D: Any, norm2: float | None = None) -> tuple[str, int]:
        """Store ``D`` as a dense leaf (``norm2``: its ‖·‖_F², when known)."""
        w = self.weight(t, s)
        if norm2 is None:
            norm2 = _finite_norm2(self.xp, D)
        self.norm2_exact += w * norm2
        self.counts["dense"] += 1
        D, rounding = self._lower_dense(D, norm2)
        return self._add(_Record("dense", t.start, t.size, s.start, s.size, "dense", U=D, weight=w,
                                 error=rounding))

    # -- storage precision -----------------------------------------------------
    def choose_precision(self) -> None:
        """Store in float32 the factors of every low-rank block whose
        rounding fits its allowance (dense blocks: see :meth:`_lower_dense`).

        Called once, when every block is formed: the factors of one size
        class are stacked (zero-padded, which changes none of the
        quantities below) and checked together, so the check costs a few
        array operations and one host synchronisation per class (two where
        the exact check below runs), not per block (20 000 points on a
        line, 433 low-rank blocks, exact check: 11 ms against 49-52 ms,
        NumPy, one thread).  Until then the factors wait in the working
        precision: at most twice the memory float32 factors would take, for
        the length of the build.

        A block's factors ``F``, ``G = Gt`` go to float32 when the change
        of the block truncated to any rank ``r ≤ k`` is at most
        ``θ ε ‖A_b‖_F`` (``θ ε``: ``low_allowance``).  With ``F̃ = F + ΔF``
        and ``G̃ = G + ΔG`` the stored factors, that change is
        ``E_r = ΔF_r G_r + F̃_r ΔG_r`` (subscripts: the first ``r``
        columns of ``F``, rows of ``G``), and two checks decide:

        1. A bound from its rank-one terms (``‖x yᵀ‖_F = ‖x‖ ‖y‖``)::

               ‖E_r‖_F ≤ b_r = Σ_{j<r} ‖ΔF_{:,j}‖ ‖G_{j,:}‖ + ‖F̃_{:,j}‖ ‖ΔG_{j,:}‖

           from column and row norms, for any factors.  Where
           ``b_k ≤ θ ε ‖A_b‖_F`` the block is lowered and ``b_r`` is its
           charge.  It is loose only where the singular values decay
           slowly (a flat spectrum of ``k`` values: about ``√k`` times
           the change).  On all 1651 low-rank blocks of six sweep cases
           (2000-20 000 points, 1-3 D, four kernels) it held, using 0.30-0.36
           of the allowance (medians by case; at most 0.75), 1.4-1.6 times
           the change at full rank (medians).  It costs a few memory-bound
           passes over the factors where the exact check below takes six
           ``k × k`` Gram products a block (2000 points on a sphere,
           exp(−r), 176 blocks: 16-19 against 35 ms, NumPy, one thread).
        2. Where the bound misses (slowly decaying spectra), the change
           itself::

               ‖E_r‖_F² = Σ_{i,j<r} M_ij,
               M = (ΔFᵀΔF)∘(G Gᵀ) + 2 C∘D + (F̃ᵀF̃)∘(ΔG ΔGᵀ),
               C = ΔFᵀF̃,  D = G ΔGᵀ

           (``∘`` elementwise; the cross term ``C∘D + (C∘D)ᵀ`` sums to
           ``2 C∘D`` over any leading square), from two ``2k × 2k`` Gram
           matrices, for any factors (the SVD's, ACA's orthonormal ones and
           the pivoted QR's triangular ones alike).  It is recorded as its
           running maximum over ``r``, so that the check at rank ``k``
           holds for every rank the global truncation may give the block.

        Either charge is at least the change at every rank and is counted
        in the block's error (and so in the error estimate): the bound,
        where it is the charge, raised the error estimates of 2000-point
        builds by about 2 % (8.30e-7 to 8.49e-7 at ``eps = 1e-6``); the
        storage is the same, since a block the bound does not settle gets
        the exact check.
        """
        for p in self.pool:
            p.rounding = [0.0] * (len(p.vals) + 1)
        if self.low is None:
            return
        factored = [p for p in self.pool if p.vals]
        for group in _size_groups(factored, lambda p: (p.F.shape[0], p.Gt.shape[1], len(p.vals)),
                                  lambda m, n, k: (m + n) * k):
            self._lower_factors(group)

    def _lower_dense(self, D: Any, norm2: float) -> tuple[Any, float]:
        """``D`` in float32 if ``‖D − fl₃₂(D)‖_F ≤ θ ε ‖D‖_F``, with that error.

        Checked block by block, as the block is stored: stacking the dense
        blocks to check them together was slower on NumPy (20 000 points on
        a line: 14-19 ms for the 449 diagonal blocks against 10 ms), its
        operations streaming through memory what one block's keep in cache.
        """
        xp = self.xp
        if self.low is None:
            return D, 0.0
        D32 = xp.astype(D, self.low)
        err = backend.to_float(xp.linalg.vector_norm(D - xp.astype(D32, D.dtype)))
        if err <= self.low_allowance * math.sqrt(norm2):
            return D32, err
        return D, 0.0

    def _lower_factors(self, pool: list[_PoolEntry]) -> None:
        """Low-rank factors to float32 where their rounding fits (one size
        class), with the rounding error of each block at every rank: the
        rank-one bound where it fits, else the exact change (see
        :meth:`choose_precision`)."""
        xp, low = self.xp, self.low
        m = max(p.F.shape[0] for p in pool)
        n = max(p.Gt.shape[1] for p in pool)
        k = max(len(p.vals) for p in pool)
        F = backend.stack_padded([p.F for p in pool], m, k)
        G = backend.stack_padded([p.Gt for p in pool], k, n)
        Fs, Gs = xp.astype(xp.astype(F, low), F.dtype), xp.astype(xp.astype(G, low), G.dtype)
        dF, dG = F - Fs, G - Gs
        norm = xp.linalg.vector_norm
        terms = norm(dF, axis=1) * norm(G, axis=2) + norm(Fs, axis=1) * norm(dG, axis=2)
        sums = _host_floats(xp.reshape(xp.cumulative_sum(terms, axis=1), (-1,)))

        def lowered(p: _PoolEntry, charges: list[float]) -> bool:
            """Store ``p`` in float32 with these charges if they fit."""
            if charges[-1] > self.low_allowance * p.norm:
                return False
            p.F, p.Gt, p.rounding = xp.astype(p.F, low), xp.astype(p.Gt, low), charges
            return True

        unsettled = [b for b, p in enumerate(pool)
                     if not lowered(p, [0.0, *sums[b * k:b * k + len(p.vals)]])]
        if not unsettled:
            return
        if len(unsettled) < len(pool):
            keep = xp.asarray(unsettled, device=backend.device(F))
            F, Fs, dF, G, dG = (xp.take(a, keep, axis=0) for a in (F, Fs, dF, G, dG))
        T = xp.matrix_transpose
        dF_T = T(dF)
        # three of the four k × k blocks of each Gram matrix (the fourth is
        # the transpose of one): a quarter fewer flops than [ΔF, F̃]ᵀ[ΔF, F̃]
        M = ((dF_T @ dF) * (G @ T(G)) + 2.0 * ((dF_T @ Fs) * (G @ T(dG)))
             + (T(Fs) @ Fs) * (dG @ T(dG)))
        # Σ_{i,j<r} M_ij for r = 1..k: the diagonal of M's 2-D running sum
        squares = xp.linalg.diagonal(xp.cumulative_sum(xp.cumulative_sum(M, axis=1), axis=2))
        rows = _host_floats(xp.reshape(squares, (-1,)))
        for i, b in enumerate(unsettled):
            p = pool[b]
            changes = (math.sqrt(v) if v > 0.0 else 0.0 for v in rows[i * k:i * k + len(p.vals)])
            lowered(p, [0.0, *itertools.accumulate(changes, max)])

    # -- which formed blocks get their singular vectors ---------------------
    @staticmethod
    def _compresses(k: int, m: int, n: int) -> bool:
        """Whether rank ``k`` stores an ``m × n`` block in fewer entries than dense."""
        return k <= (m * n) // (m + n) and k * (m + n) < m * n

    @staticmethod
    def _size_class(m: int, n: int, near: bool = False) -> tuple[int, int, bool]:
        """Blocks whose sides have the same bit lengths, admissible or in
        the near field (whose ranks and test outcomes differ)."""
        return (m.bit_length(), n.bit_length(), near)

    def _expect_failure(self, m: int, n: int, near: bool = False) -> bool:
        """Whether most formed blocks of this size class so far did not compress."""
        ok, failed = self.tests.get(self._size_class(m, n, near), (0, 0))
        return failed > ok

    def _skip_test(self, m: int, n: int, near: bool = False, contact: int = 0) -> bool:
        """Whether this formed block goes dense untested: its size class has
        failed at least _UNTESTED_AFTER rank tests and passed fewer than one
        in _FAILS_PER_PASS + 1, or it is a near-field block whose contact
        class (``contact``, see :meth:`Cluster.contact`; all sizes pooled)
        has _UNTESTED_AFTER or more tested blocks that stored more than
        _NEAR_SAVES_LITTLE of their entries (one block in max(_PROBE_EVERY,
        tests / _PROBE_EVERY) of the class, counting failed tests for the
        first rule, is tested all the same)."""
        key: tuple[int, int, bool] | int = self._size_class(m, n, near)
        ok, failed = self.tests.get(key, (0, 0))
        if failed >= _UNTESTED_AFTER and ok * _FAILS_PER_PASS < failed:
            tests = failed
        else:
            stored, total, tests = self.near_entries.get(contact, (0, 0, 0)) if near else (0, 0, 0)
            if not (tests >= _UNTESTED_AFTER and stored > _NEAR_SAVES_LITTLE * total):
                return False
            key = contact
        met = self.since_probe.get(key, 0) + 1
        if met >= max(_PROBE_EVERY, tests // _PROBE_EVERY):
            met = 0  # this one is the probe
        self.since_probe[key] = met
        return met != 0

    def _record_test(self, m: int, n: int, k: int, compressed: bool, near: bool = False,
                     contact: int = 0) -> None:
        """Count a rank test of an ``m × n`` block that came out at rank ``k``
        (of the near field's contact class ``contact`` when ``near``)."""
        key = self._size_class(m, n, near)
        ok, failed = self.tests.get(key, (0, 0))
        self.tests[key] = (ok + compressed, failed + (not compressed))
        if near:
            stored, total, tests = self.near_entries.get(contact, (0, 0, 0))
            self.near_entries[contact] = (stored + (k * (m + n) if compressed else m * n), total + m * n,
                                          tests + 1)

    def _sketch_width(self, m: int, n: int, near: bool = False) -> int | None:
        """Columns of a sketch of an ``m × n`` formed block: a little more
        than the largest rank of its size class so far; None when no block
        of the class has compressed yet or most failed their rank test."""
        k = self.ranks.get(self._size_class(m, n, near), 0)
        if not k or self._expect_failure(m, n, near):
            return None
        return math.ceil(_SKETCH_GROWTH * k) + _SKETCH_EXTRA

    def _test_matrix(self, n: int, width: int, device: Any) -> Any:
        """An ``n × width`` Gaussian test matrix: a slice of one drawn once
        (seeded: the same build gives the same matrix) and redrawn larger
        when a block needs more."""
        om = self._omega
        if om is None or om.shape[0] < n or om.shape[1] < width:
            shape = (n, width) if om is None else (max(n, om.shape[0]), max(width, om.shape[1]))
            om = self._omega = backend.normal(self.xp, shape, dtype=self.dtype, device=device, seed=0)
        return om[:n, :width]

    def formed(self, t: Cluster, s: Cluster, Ab: Any, split: Callable[[], Any] | None,
               near: bool = False) -> Any:
        """Compress a formed block (a pivoted QR, a sketch, the SVD or the
        randomized range finder): an admissible one, or with ``near`` an
        off-diagonal leaf of the near field, stored dense if it does not
        compress."""
        xp = self.xp
        m, n = t.size, s.size
        w = self.weight(t, s)
        norm2 = _finite_norm2(xp, Ab)
        # near-field blocks compress the worse the more their boxes touch:
        # their tests are pooled by that contact, across sizes (the figures
        # are at _NEAR_SAVES_LITTLE)
        contact = t.contact(s) if near else 0
        if self._skip_test(m, n, near, contact):
            self.counts["untested"] += 1
            return self._uncompressed(t, s, Ab, norm2, w, split)
        budget = self.eps * math.sqrt(norm2)
        pays = (m * n) // (m + n)

        def pivoted() -> backend.PivotedQR | backend.GramPivotedQR | None:
            # the QR pivots over the columns: the taller orientation is the
            # cheaper one (39 x 78: 64 against 104 µs); it stops at the
            # budget where it can (through the Gram matrix, from 64 columns)
            return backend.truncated_pivoted_qr(Ab if m >= n else xp.matrix_transpose(Ab), budget,
                                                max_rank=pays)

        fact = pivoted() if min(m, n) <= _QR_MAX else None
        # what settles the block if no sketch is kept: the Gram route's QR
        # beats a sketch of any width, the full QR one of up to 0.2 min(m, n)
        qr_next = self.has_qr and min(m, n) <= _RSVD_MIN
        gram_next = qr_next and backend.has_truncated_pivoted_qr(xp, self.dtype, min(m, n), self.eps)
        width = None if fact is not None or gram_next else self._sketch_width(m, n, near)
        sketch = None
        if width is not None and width <= (_SKETCH_OVER_QR if qr_next else _SKETCH_OVER_SVD) * min(m, n):
            sketch = lowrank._sketch_svd(xp, Ab, self._test_matrix(n, width, backend.device(Ab)))
            if sketch[3] > _SKETCH_SHARE * budget:
                sketch = None  # the block needs more than its class did: the QR or the SVD settles it
        if fact is None and sketch is None and min(m, n) <= _RSVD_MIN:
            fact = pivoted()  # at any size up to 256 cheaper than the SVD (879 against 2087 µs at 150)
        U = sv = Vh = None
        resid = 0.0
        squares = None
        if fact is not None:
            # dropping rows i >= k of R costs exactly Σ_{i≥k} ‖R_i‖², on top
            # of what the rows left out cost (rest2; 0 for a full QR)
            squares = _host_floats(fact.row_norms2)
            resid = math.sqrt(fact.rest2)
            method = "qr"
        elif sketch is not None:
            U, sv, Vh, resid = sketch
            method = "sketch"
        elif min(m, n) > _RSVD_MIN:
            U, sv, Vh, resid = lowrank.range_svd(Ab, budget / math.sqrt(2.0), max_rank=pays)
            method = "rsvd"
        elif self._expect_failure(m, n, near):
            # the singular values alone settle a test that blocks of this
            # size have mostly failed: the singular vectors only if it passes
            method = "svd"
            vals = _host_floats(backend.svdvals(Ab))
            if self._compresses(lowrank.truncation_rank(vals, budget), m, n):
                U, sv, Vh = backend.svd(Ab)
        else:
            U, sv, Vh = backend.svd(Ab)
            method = "svd"
        if sv is not None:
            vals = _host_floats(sv)
        if squares is None:
            squares = [v * v for v in vals]
        # lowrank.truncation_rank's rule, the tails summed in C: the last d
        # values go while their sum stays within the budget
        tol = math.sqrt(max(budget**2 - resid**2, 0.0))
        tails = list(itertools.accumulate(reversed(squares)))
        dropped = bisect.bisect_right(tails, tol * tol)
        k = len(squares) - dropped
        if fact is not None:
            vals = [math.sqrt(v) for v in squares[:k]]
        # a QR that only estimated its rows (more than `pays` needed) has
        # no factors: it does not compress, even where rounding puts its
        # tail right at the budget
        compresses = self._compresses(k, m, n) and (fact is None or k <= fact.factored_rows)
        if method != "rsvd":
            self._record_test(m, n, k, compresses, near, contact)
        if compresses and resid <= budget:
            key = self._size_class(m, n, near)
            self.ranks[key] = max(k, self.ranks.get(key, 0))
        if resid > budget or not compresses:
            return self._uncompressed(t, s, Ab, norm2, w, split)
        self.norm2_exact += w * norm2
        self.counts[method] += 1
        self.counts["near"] += near
        e0 = resid**2 + (tails[dropped - 1] if dropped else 0.0)
        rec = self._add(_Record("lowrank", t.start, m, s.start, n, method, weight=w))
        if fact is not None:
            F, Gt = fact.truncated(k)
            if m < n:  # Aᵀ ≈ F Gt, so A ≈ Gtᵀ Fᵀ
                F, Gt = xp.matrix_transpose(Gt), xp.matrix_transpose(F)
            # the greedy truncation keeps prefixes of each block, so it
            # ranks by a non-increasing envelope of the row norms (their
            # exact tails, in vals, decide what it spends)
            ranked = _nonincreasing(vals[:k])
        else:
            # new arrays (a product and a copy): slices would keep the full
            # SVD factors alive until the end
            F, Gt, ranked = U[:, :k] * sv[:k], xp.asarray(Vh[:k, :], copy=True), vals[:k]
        self.pool.append(_PoolEntry(rec[1], F, ranked, vals[:k], Gt, e0, w, math.sqrt(norm2)))
        return rec

    def _uncompressed(self, t: Cluster, s: Cluster, Ab: Any, norm2: float, w: int,
                      split: Callable[[], Any] | None) -> Any:
        """A formed block that does not compress: split into its children
        when the build splits, else stored dense."""
        if split is not None and self.splitting:
            self.counts["split"] += 1
            return split()
        return self.dense(t, s, Ab, norm2=norm2)

    def aca(self, t: Cluster, s: Cluster, source: "_KernelSource", verify: bool) -> Any:
        xp = self.xp
        m, n = t.size, s.size
        cross = _Crosses(source, t, s)
        key = self._size_class(m, n)
        formed, finished = self.forming.get(key, (0, 0))
        if formed > finished and m * n <= _FORM_LIMIT and key in self.ranks:
            # most ACA blocks of this size class so far fetched a third of
            # their entries and were formed: this one is formed at once and
            # sketched at the class's rank, without the crosses
            self.counts["aca_formed"] += 1
            return self.formed(t, s, cross.block(), None)
        res = lowrank.aca(cross.row, cross.col, (m, n), tol=_ACA_SAFETY * self.eps)
        self.forming[key] = (formed + (cross.formed is not None), finished + (cross.formed is None))
        rank = res.U.shape[1]
        # a norm whose square overflows goes to the formed block, whose
        # check names the kernel (only a kernel whose scale jumps mid-build
        # gets there: the build works on normalised values)
        if not res.converged or rank * (m + n) >= m * n or not math.isfinite(res.norm * res.norm):
            self.counts["aca_fallback"] += 1
            return self.formed(t, s, cross.block(), None)
        lr = lowrank.recompress(res.U, res.V, _LOCAL_SHARE * self.eps * res.norm)
        w = self.weight(t, s)
        if verify:
            Ab = cross.block()
            norm2 = _finite_norm2(xp, Ab)
            err = backend.to_float(xp.linalg.vector_norm(Ab - lr.U @ xp.matrix_transpose(lr.V)))
            if err > self.eps * math.sqrt(norm2):
                self.counts["aca_fallback"] += 1
                return self.formed(t, s, Ab, None)
            # the measured residual stands in for ACA's and the recompression's
            residual, e0 = err, 0.0
        else:
            norm2, residual, e0 = res.norm * res.norm, res.error, lr.error * lr.error
        self.norm2_aca += w * norm2
        self.counts["aca"] += 1
        self.ranks[key] = max(lr.U.shape[1], self.ranks.get(key, 0))
        # recompress returns U' = Q W Σ and V' with orthonormal columns
        sv = xp.linalg.vector_norm(lr.U, axis=0)
        vals = _host_floats(sv)
        rec = self._add(_Record("lowrank", t.start, m, s.start, n, "aca", weight=w))
        self.pool.append(_PoolEntry(rec[1], lr.U, vals, vals, xp.matrix_transpose(lr.V), e0, w,
                                    math.sqrt(norm2), residual))
        return rec

    # -- global budget --------------------------------------------------------
    def distribute(self) -> None:
        """Choose the blocks' storage precision, then give the pool's blocks
        their final ranks within the global budget."""
        xp = self.xp
        self.choose_precision()
        # ‖H − A‖ ≤ √Σ w r² + √Σ w (e0 + dropped) (Minkowski): the residuals
        # r come first, the truncation tails share what is left
        residuals = math.sqrt(sum(p.weight * p.residual**2 for p in self.pool))
        left = max(self.eps * math.sqrt(self.norm2_exact + self.norm2_aca) - residuals, 0.0)
        budget2 = left**2 - sum(p.weight * p.e0 for p in self.pool)
        ranks = [len(p.vals) for p in self.pool]
        cands = [p for p in self.pool if p.vals]
        if cands and budget2 > 0.0:
            ranks = self._greedy(cands, budget2)
        for p, r in zip(self.pool, ranks):
            rec = self.records[p.rec]
            rec.error = p.residual + math.sqrt(p.e0 + sum(v * v for v in p.vals[r:])) + p.rounding[r]
            rec.rank = r
            if r == 0:
                rec.kind = "zero"
            elif r == len(p.vals):
                rec.U, rec.V = p.F, xp.matrix_transpose(p.Gt)
            else:  # copies, so that the dropped columns are freed now
                rec.U = xp.asarray(p.F[:, :r], copy=True)
                rec.V = xp.matrix_transpose(xp.asarray(p.Gt[:r, :], copy=True))
            p.F = p.Gt = None  # the untruncated factors are not needed any more
        self.pool = []

    def _greedy(self, cands: list[_PoolEntry], budget2: float) -> list[int]:
        xp = self.xp
        dev = backend.device(cands[0].F)
        # the error a dropped singular value adds counts once per block it
        # stands for.  Squared on the host and moved in one transfer (not
        # three operations a block): the same numbers as squaring on the
        # device, since the square of a float32 value is exact in float64
        # and the weight is 1 or 2
        s2 = xp.asarray([p.weight * v * v for p in cands for v in p.ranked], dtype=self.dtype, device=dev)
        cost = xp.asarray([float(self.records[p.rec].m + self.records[p.rec].n) for p in cands for _ in p.vals],
                          dtype=self.dtype, device=dev)
        ratio = s2 / cost
        order = xp.argsort(ratio, stable=True)
        sorted_ratio = xp.take(ratio, order)
        cum = xp.cumulative_sum(xp.take(s2, order))
        for shrink in (1.0, 0.9, 0.5, 0.0):  # re-run with less if rounding overshot
            cut = backend.to_int(xp.sum(xp.astype(cum <= shrink * budget2, xp.int32)))
            if cut == 0:
                return [len(p.vals) for p in self.pool]
            thresh = math.inf if cut == ratio.shape[0] else backend.to_float(sorted_ratio[cut])
            keep = xp.cumulative_sum(xp.astype(ratio >= thresh, xp.int64))
            ends, pos = [], 0
            for p in cands:
                pos += len(p.vals)
                ends.append(pos - 1)
            at_end = [int(v) for v in _host_floats(xp.astype(xp.take(keep, xp.asarray(ends, device=dev)), xp.float64))]
            kept = [at_end[0]] + [b - a for a, b in zip(at_end, at_end[1:])]
            spent = sum(p.weight * sum(v * v for v in p.vals[r:]) for p, r in zip(cands, kept))
            if spent <= budget2:
                it = iter(kept)
                return [next(it) if p.vals else 0 for p in self.pool]
        return [len(p.vals) for p in self.pool]  # pragma: no cover - shrink=0 keeps all


class _KernelSource:
    """Evaluates kernel blocks, rows and columns through a checked wrapper.

    Every call of the user's kernel is checked (an array of the points'
    library and device, shape ``(len(X), len(Y))``, no NaN/Inf) and cast to
    the build dtype; an error names the call, so a kernel that fails only on
    some far-away block is caught there, not in the error bound.

    The kernel gets fresh copies of its point sets (views for JAX, whose
    arrays cannot be written): a kernel that writes into ``X`` or ``Y``
    changes neither the caller's points nor the points of later calls, only
    its own answer.  A PyTorch kernel whose output requires grad is refused
    (:class:`~natgrad.backend.TracedArrayError`, naming the call).  The
    first answer fixes the build's scale: when its
    largest entry is beyond ``2^±(maxexp/4)`` (``1e±77`` in float64,
    ``4e±9`` in float32), every answer is multiplied by the same power of
    two (exact), so that squares and products of the build cannot overflow
    or underflow; the H-matrix scales its blocks back at the end.  A later
    answer more than ``2^(maxexp/2 − 32)`` (``3e144`` in float64, ``4e9``
    in float32) above that scale is refused, naming the call: its squares
    could overflow.
    """

    def __init__(self, kernel: Callable[[Any, Any], Any], X: Any, Y: Any, dtype: Any, xp: Any,
                 build: "_Builder") -> None:
        self.X, self.Y, self.xp, self.build = X, Y, xp, build
        self._copy = not backend.is_jax(xp)
        # finiteness is checked here, with the same reduction that finds
        # the scale (one host synchronisation per call, as before)
        self._call = validation.CheckedCallable(
            kernel, "kernel",
            out_shape=lambda A, B: (A.shape[0], B.shape[0]), dtype=dtype, check_finite=False,
        )
        self._largest = math.ldexp(1.0, math.frexp(float(xp.finfo(dtype).max))[1] // 2 - 32)

    def __call__(self, X: Any, Y: Any) -> Any:
        if self._copy:
            X, Y = self.xp.asarray(X, copy=True), self.xp.asarray(Y, copy=True)
        K = self._call(X, Y)
        xp, call = self.xp, self._call.calls
        amax = backend.to_float(xp.max(xp.abs(K)))
        if not math.isfinite(amax):
            raise validation.NonFiniteOutputError(f"kernel (call {call}) returned NaN or Inf", "kernel", call)
        if call == 1:
            self.build.set_scale(_scale_exponent(amax, K.dtype, xp))
        exp = self.build.scale_exp
        if math.ldexp(amax, -exp) > self._largest:
            # squares of such values would overflow: a kernel's answers must
            # keep the scale of its first one within 2^(maxexp/2 - 32)
            raise ValueError(
                f"kernel (call {call}) returned values up to {amax:.3g}, over "
                f"{self._largest:.1e} times the scale of its first call ({math.ldexp(1.0, exp):.3g}): "
                "the build works at the first call's scale and cannot square them; a kernel "
                "must keep its scale from call to call"
            )
        return _times_pow2(K, -exp) if exp else K

    def block(self, t: Cluster, s: Cluster) -> Any:
        return self(self.X[t.start:t.stop, :], self.Y[s.start:s.stop, :])

    def row(self, t: Cluster, s: Cluster, i: int) -> Any:
        return self(self.X[t.start + i:t.start + i + 1, :], self.Y[s.start:s.stop, :])[0, :]

    def col(self, t: Cluster, s: Cluster, j: int) -> Any:
        return self(self.X[t.start:t.stop, :], self.Y[s.start + j:s.start + j + 1, :])[:, 0]


class _Crosses:
    """Rows and columns of one kernel block for ACA, from the kernel until
    the block is cheaper to form.

    Each row or column is one kernel call, whose fixed cost (the user's
    Python, natgrad's checks of the answer) dwarfs its ``m + n`` entries on
    blocks of a few hundred.  Once the crosses have fetched a third of the
    block's entries -- a high-rank block, as in 3-D at tight tolerances --
    and the block has at most :data:`_FORM_LIMIT` entries, it is formed in
    one call and the rest are its rows and columns: forming costs at most
    three times the entries already fetched, and saves the remaining
    crosses' calls.  The block is kept for a fallback or a check.  Measured
    (n = 8000, eps 1e-6, medians of three interleaved builds): ACA's time
    on the 3-D Gaussian (length scale 0.2) fell from 3.12 to 2.81 s, on the
    2-D exponential it stayed at 0.81-0.82 s; switching at a sixth saved
    29 % in 3-D but cost 33 % in 2-D, where blocks of rank 30-40 were
    formed a few crosses before ACA would have stopped.
    """

    def __init__(self, source: "_KernelSource", t: Cluster, s: Cluster) -> None:
        self.source, self.t, self.s = source, t, s
        self.fetched = 0
        self.formed: Any = None
        m, n = t.size, s.size
        self._switch = m * n // 3 if m * n <= _FORM_LIMIT else math.inf

    def block(self) -> Any:
        if self.formed is None:
            self.formed = self.source.block(self.t, self.s)
        return self.formed

    def _from_block(self, entries: int) -> bool:
        self.fetched += entries
        return self.formed is not None or self.fetched > self._switch

    def row(self, i: int) -> Any:
        if self._from_block(self.s.size):
            return self.block()[i, :]
        return self.source.row(self.t, self.s, i)

    def col(self, j: int) -> Any:
        if self._from_block(self.t.size):
            return self.block()[:, j]
        return self.source.col(self.t, self.s, j)


#: a stack of blocks checked together (see _Builder.choose_precision) holds
#: at most this many entries, padding included (32 MB in float64)
_STACK_LIMIT = 1 << 16
#: ... and blocks whose factors hold at most this many entries are grouped
#: coarsely (see _size_groups)
_COARSE_ENTRIES = 1 << 12


def _size_groups(items: list[Any], dims: Callable[[Any], tuple[int, ...]],
                 entries: Callable[..., int]) -> list[list[Any]]:
    """``items`` in groups of nearly one shape, in their given order.

    An item holds ``entries(*dims(item))`` numbers.  Items of at most
    _COARSE_ENTRIES are grouped by the bit lengths of their dimensions
    (zero-padding to the group's largest at most doubles each: few groups,
    and the padding is cheap at that size); larger ones by the block
    store's buckets (at most about 12 % padding each: padding the rank to
    a power of two cost 1.5x the time on the 3-D blocks of ACA).  A group
    padded to its largest dimensions holds at most _STACK_LIMIT entries.
    """
    classes: dict[tuple[Any, ...], list[tuple[Any, tuple[int, ...]]]] = {}
    for item in items:
        d = dims(item)
        if entries(*d) <= _COARSE_ENTRIES:
            key: tuple[Any, ...] = (True, *(v.bit_length() for v in d))
        else:
            key = (False, *(bucket(v) for v in d))
        classes.setdefault(key, []).append((item, d))
    groups = []
    for members in classes.values():
        largest = tuple(map(max, *(d for _, d in members))) if len(members) > 1 else members[0][1]
        if len(members) * entries(*largest) <= _STACK_LIMIT:
            groups.append([item for item, _ in members])
            continue
        group: list[Any] = []
        for item, d in members:
            grown = tuple(map(max, largest, d)) if group else d
            if group and (len(group) + 1) * entries(*grown) > _STACK_LIMIT:
                groups.append(group)
                group, grown = [], d
            group.append(item)
            largest = grown
        groups.append(group)
    return groups


def _nonincreasing(vals: list[float]) -> list[float]:
    """The smallest non-increasing sequence at or above ``vals``:
    ``max(vals[i:])`` at ``i``.

    A pivoted QR's row norms, unlike singular values, may rise again; the
    global truncation keeps a prefix of every block and would otherwise
    count a large late value among those it drops, overshoot its budget and
    retry with less for every block (see ``_Builder._greedy``).
    """
    out, top = [], 0.0
    for v in reversed(vals):
        top = max(top, v)
        out.append(top)
    return out[::-1]


def _scale_exponent(amax: float, dtype: Any, xp: Any) -> int:
    """``e`` with ``max|A| · 2^-e`` in ``[0.5, 1)`` when ``max|A|`` is beyond
    ``2^±(maxexp/4)`` (``1e±77`` in float64, ``4e±9`` in float32), else 0.

    Within that range the build's squares and products of norms stay far
    from overflow and underflow (a Frobenius norm squared over 10¹² entries
    still fits), and nothing is rescaled: results are bit for bit those of
    the unscaled code.  Outside it, the build works on ``A · 2^-e``; scaling
    by a power of two is exact.  ``amax`` is the largest ``|A_ij|``.
    """
    if amax == 0.0:
        return 0
    _, e = math.frexp(amax)
    limit = math.frexp(float(xp.finfo(dtype).max))[1] // 4
    return e if abs(e) > limit else 0


def _times_pow2(A: Any, e: int) -> Any:
    """``A · 2^e`` in two exact steps (each factor is representable in
    float32 for ``|e| ≤ 2·126``; one factor ``2^e`` alone may not be)."""
    half = e // 2
    return (A * math.ldexp(1.0, half)) * math.ldexp(1.0, e - half)


class _AsymmetricKernel(ValueError):
    """A kernel declared or detected symmetric that is not (see :func:`_symmetric_norm2`)."""


#: a kernel is taken as symmetric when ``‖K(X, Y) − K(Y, X)ᵀ‖_F`` is at most
#: this many unit roundoffs times the block's norm: rounding in the user's
#: distance computation differs between the two argument orders by a few
#: units, a genuinely asymmetric kernel by far more
_SYMMETRY_ROUNDOFFS = 100.0


def _symmetry_gap(xp: Any, A: Any, B: Any) -> tuple[float, float, bool]:
    """``‖A − Bᵀ‖_F``, ``‖A‖_F`` and whether the gap is beyond rounding
    (``B`` the transposed block's evaluation); one host synchronisation."""
    gap, size = _host_floats(xp.stack([xp.linalg.vector_norm(A - xp.matrix_transpose(B)),
                                       xp.linalg.vector_norm(A)]))
    return gap, size, gap > _SYMMETRY_ROUNDOFFS * backend.eps(A.dtype, xp) * max(size, 1e-300)


def _symmetric_norm2(gap: float, size: float, asymmetric: bool) -> float:
    """``‖D‖_F²`` of a diagonal block from its :func:`_symmetry_gap`,
    refused if the block is not symmetric or not finite."""
    if asymmetric:
        raise _AsymmetricKernel(
            "symmetric=True but the kernel is not symmetric: kernel(X, X) differs from its "
            f"transpose by {gap:.2e} (relative {gap / max(size, 1e-300):.2e}) on a diagonal block"
        )
    return _finite(size * size)


#: the symmetry probe: this many pairs of point samples, of this many points each
_PROBE_PAIRS, _PROBE_POINTS = 3, 8


def _looks_symmetric(source: "_KernelSource", n: int) -> bool:
    """Whether ``kernel(x, y) = kernel(y, x)`` on sampled blocks (up to rounding).

    Three pairs of disjoint samples of 8 points, drawn with a fixed seed from
    the first and the second half of the cluster order (points far apart, as
    in the off-diagonal blocks that symmetric storage mirrors) and from
    anywhere: ``K(X_I, X_J)`` is compared with ``K(X_J, X_I)ᵀ``.  Six small
    kernel calls; the near-field diagonal blocks are checked again during
    the build.
    """
    if n < 2:
        return True
    xp, X = source.xp, source.X
    rng = random.Random(0)
    half = n // 2
    m = min(_PROBE_POINTS, half)
    for pair in range(_PROBE_PAIRS):
        if pair == 0:
            I, J = rng.sample(range(half), m), rng.sample(range(half, n), m)
        else:
            both = rng.sample(range(n), 2 * m)
            I, J = both[:m], both[m:]
        XI = xp.take(X, xp.asarray(I, device=backend.device(X)), axis=0)
        XJ = xp.take(X, xp.asarray(J, device=backend.device(X)), axis=0)
        if _symmetry_gap(xp, source(XI, XJ), source(XJ, XI))[2]:
            return False
    return True


def _finite_norm2(xp: Any, A: Any) -> float:
    # the entries are finite and normalised (see _scale_exponent and
    # _KernelSource): their squares cannot overflow.  One dot product of
    # the flattened block: a third of the time of summing A * A (5.6
    # against 15 µs at 128 x 128, NumPy), with no temporary
    v = xp.reshape(A, (-1,))
    return _finite(backend.to_float(xp.vecdot(v, v)))


def _finite(norm2: float) -> float:
    """``norm2``, refused when a block's entries were not finite."""
    if not math.isfinite(norm2):
        raise ValueError("the matrix (or kernel) has NaN or Inf entries")
    return norm2


def _check_eps(eps: Any, dtype: Any, xp: Any) -> float:
    if not isinstance(eps, (int, float)) or isinstance(eps, bool):
        raise TypeError(f"eps must be a real number, got {type(eps).__name__}")
    eps = float(eps)
    if not (0.0 < eps < 1.0):
        raise ValueError(f"eps must be in (0, 1), got {eps}")
    floor = 1e3 * backend.eps(dtype, xp)
    if eps < floor:
        raise ValueError(
            f"eps = {eps:g} is below what {dtype} arithmetic can guarantee; use eps ≥ {floor:.1e}"
        )
    return eps


def _walk(block: Block, leaf: Callable[[Block, Any], Any],
          gather: Callable[[Block], Any] | None = None, parent: Any = None) -> Any:
    """The layout (nested block grid) of a block tree, compressing its leaves.

    ``leaf(block, parent)`` compresses a leaf; ``parent`` is what
    ``gather`` returned for the nearest inner block above it that it
    answered (not None) for -- the kernel build's formed block, from which
    the leaves below are cut -- or None.
    """
    if block.is_leaf:
        return leaf(block, parent)
    if parent is None and gather is not None:
        parent = gather(block)
    nr = len(block.rows.children) or 1
    nc = len(block.cols.children) or 1
    return ("node", nr, nc, [_walk(c, leaf, gather, parent) for c in block.children])


def _sub_block(xp: Any, parent: tuple[Any, Cluster, Cluster], t: Cluster, s: Cluster) -> Any:
    """The entries of block ``t × s`` cut (copied) from a formed block ``(A, t₀, s₀)`` holding it."""
    A, t0, s0 = parent
    i, j = t.start - t0.start, s.start - s0.start
    return xp.asarray(A[i:i + t.size, j:j + s.size], copy=True)


def _split_layout(t: Cluster, s: Cluster, child: Callable[[Cluster, Cluster], Any]) -> Any:
    nr = len(t.children) or 1
    nc = len(s.children) or 1
    return ("node", nr, nc, [child(a, b) for a, b in split_pairs(t, s)])


class HMatrix(LinearOperator):
    """A hierarchical matrix with a Frobenius error bound.

    Build one with :meth:`from_kernel` or :meth:`from_dense`.  It is a natgrad
    :class:`~natgrad.linalg.LinearOperator`: ``H @ x`` and ``H.matvec(x)``
    for ``x`` of shape ``(n,)`` or ``(n, k)``, ``H.rmatvec(y)`` and
    ``H.T @ y`` for the transpose, and it can be passed to :func:`natgrad.cg`.

    The constructor is internal: its arguments below are what
    :meth:`from_kernel` (a kernel on points) and :meth:`from_dense` (a formed
    matrix) compute, and those classmethods are the ways to build an
    H-matrix.

    Parameters
    ----------
    xp : module
        Array-API namespace of the blocks.
    dtype : dtype
        Floating dtype of the blocks.
    rows, cols : ClusterTree
        Row and column cluster trees (their permutations map between the
        original and the block order).
    builder : object
        Internal record of the compressed blocks, their errors and the norm
        of ``A``, filled by the classmethods.
    layout : tuple
        Internal nested block grid, used by :meth:`to_dense`.
    eps : float
        The requested relative bound.
    verify : bool or None
        Whether ACA blocks were verified (``None`` for dense input); stored
        in ``info``.
    stored : dict, optional
        Symmetric storage: the layout nodes of the stored blocks by
        ``(row0, m, col0, n)``, which the layout's mirrored nodes refer to.

    Attributes
    ----------
    shape : (int, int)
    dtype : dtype
    eps : float
        The requested relative bound.
    rows, cols : ClusterTree
    error_estimate : float
        Estimated relative error ``‖H − A‖_F / ‖A‖_F`` (exact truncation tails
        and verified ACA residuals; ACA's own estimate for unverified blocks).
    norm_estimate : float
        ``‖A‖_F`` (exact for dense input and verified blocks).
    info : dict
        Block counts by method (``dense``, ``qr`` (pivoted QR), ``svd``,
        ``sketch``, ``rsvd``, ``aca``, ``aca_fallback``; ``near``: leaves
        of the near field stored low-rank; ``aca_formed``: blocks of the ACA path
        formed at once because most of their size class had been;
        ``split``; ``untested``: formed blocks stored dense, or split,
        without a rank test because their size class had failed 16 tests
        or more and passed fewer than one in 17, or, in the near field,
        because 16 or more tested blocks of their contact class (boxes that
        share a face, an edge or a corner,
        :meth:`~natgrad.hmatrix.Cluster.contact`) stored
        more than 0.8 of their entries; a few are tested all the same: one
        in max(8, failures / 8), or max(8, tests / 8)), whether ACA
        blocks were verified, and
        ``densified``: True when the blocks would have taken more memory than
        the dense matrix, which is then kept exactly as one dense block (zero
        error), so ``compression_ratio`` never exceeds 1 by more than a few
        index arrays of length ``m + n``; ``symmetric``: whether one block
        triangle is stored for both (see :meth:`from_kernel`);
        ``float32_blocks``: how many blocks mixed precision stored in float32;
        ``admissibility``; and from :meth:`from_kernel` the settings it built
        with, defaults resolved: ``eta``, ``compress_near`` and
        ``aca_min_size`` (the leaf size is ``rows.leaf_size``).

    Raises
    ------
    ValueError
        From :meth:`from_kernel` and :meth:`from_dense` for invalid input
        (see there); from ``H @ x``, ``matvec`` and ``rmatvec`` when ``x``
        is not 1-D or 2-D or its length does not match the operator.
    TypeError
        From the classmethods for non-array input or a non-callable kernel;
        from the products when ``x`` is not an array, or is an array of
        another library or on another device than the H-matrix (it is never
        converted or moved silently).
    natgrad.backend.TracedArrayError
        From the classmethods and the products for a JAX tracer or a PyTorch
        tensor that requires grad (naming ``points``, ``A`` or ``x``): the
        build is an eager, host-driven loop, and the products are not
        recorded for autograd.

    Notes
    -----
    Storage and matvec cost ``O(k n log n)`` for kernels that are
    asymptotically smooth, with ``k`` the typical block rank (Hackbusch 2015,
    Lemma 6.13).  The matvec permutes ``x`` once, applies the blocks and
    undoes the permutation with one ``take``.  The blocks are applied by one
    of two stores: on NumPy arrays with numba installed (the ``numba``
    extra), one compiled loop over all blocks kept unpadded in a flat buffer,
    split over numba's threads (:mod:`natgrad.hmatrix._numba_store`); otherwise
    groups of equal-shape blocks are zero-padded into stacks and applied as
    stacked matmuls, and every output row's contributions are gathered with
    one precomputed index (the path for CuPy, PyTorch, JAX, and NumPy without
    numba, or with ``NATGRAD_DISABLE_NUMBA=1``).  See the module docstring
    for the error budget.

    The products do not check ``x`` for NaN or Inf (that would cost a host
    synchronisation per product; :func:`natgrad.cg` checks its residual
    instead): a non-finite entry ``x_j`` makes exactly the rows non-finite
    that a stored block connects to column ``j``, as in a dense product
    except that blocks compressed to rank zero are not stored, so
    ``0 · NaN`` does not reach their rows.  Other columns of a block of
    right-hand sides are unaffected.

    Examples
    --------
    >>> import numpy as np
    >>> from natgrad.hmatrix import HMatrix
    >>> x = np.linspace(0.0, 1.0, 400)[:, None]
    >>> def kernel(X, Y):
    ...     return np.exp(-np.abs(X[:, None, 0] - Y[None, :, 0]))
    >>> H = HMatrix.from_kernel(kernel, x, eps=1e-8, leaf_size=32)
    >>> A = kernel(x, x)
    >>> bool(np.linalg.norm(H.to_dense() - A) <= 1e-8 * np.linalg.norm(A))
    True
    >>> v = np.ones(400)
    >>> bool(np.allclose(H @ v, A @ v, rtol=1e-6)), H.compression_ratio < 0.5
    (True, True)
    """

    def __init__(
        self,
        *,
        xp: Any,
        dtype: Any,
        rows: ClusterTree,
        cols: ClusterTree,
        builder: _Builder,
        layout: Any,
        eps: float,
        verify: bool | None,
        stored: dict[tuple[int, int, int, int], Any] | None = None,
    ) -> None:
        super().__init__((rows.n, cols.n), dtype)
        self.xp, self.rows, self.cols, self.eps = xp, rows, cols, eps
        self._device = None
        self._layout = layout
        self._stored = stored or {}
        self._records = builder.records
        total2 = builder.norm2_exact + builder.norm2_aca
        err2 = sum(r.weight * r.error**2 for r in self._records)
        self._scale_exp = exp = builder.scale_exp
        self.norm_estimate = math.sqrt(total2) * math.ldexp(1.0, exp)
        self.error_estimate = math.sqrt(err2 / total2) if total2 > 0 else 0.0
        if exp:  # the blocks were built from A · 2^-exp
            for r in self._records:
                r.error *= math.ldexp(1.0, exp)
                if r.kind != "zero":
                    r.U = _times_pow2(r.U, exp)
        self.info = dict(builder.counts, verify=verify, densified=False, symmetric=builder.symmetric,
                         admissibility=builder.admissibility)
        self._store = self._pack()
        self._device = self._store.device
        if self.compression_ratio >= 1.0:
            self._densify(builder.exact)

    def _densify(self, exact: Callable[[], Any] | None) -> None:
        # Where nothing compresses (random matrices, small 3-D problems) the
        # padding and index arrays would make H larger than A: keep the exact
        # matrix (in cluster order) as one dense block instead; it takes no
        # more memory than the blocks did.
        Dp = exact() if exact is not None else self._assemble(self._layout)
        if exact is not None:
            self.error_estimate = 0.0
            if self._scale_exp:  # the exact matrix as the build saw it
                Dp = _times_pow2(Dp, self._scale_exp)
        self._records = [_Record("dense", 0, self.shape[0], 0, self.shape[1], "dense", U=Dp)]
        self._layout, self._stored = ("leaf", 0), {}
        self._store = self._pack()
        self.info["densified"] = True

    # -- construction -------------------------------------------------------
    @classmethod
    def from_kernel(
        cls,
        kernel: Callable[[Any, Any], Any],
        points: Any,
        *,
        eps: float = 1e-6,
        eta: float | None = None,
        leaf_size: int | None = None,
        col_points: Any = None,
        split: str = "auto",
        admissibility: str | None = None,
        aca_min_size: int | None = None,
        verify: bool | None = None,
        symmetric: bool | None = None,
        mixed_precision: bool | None = None,
        compress_near: bool | None = None,
    ) -> "HMatrix":
        """H-matrix of the kernel matrix ``A_ij = kernel(x_i, y_j)``.

        Parameters
        ----------
        kernel : callable
            ``kernel(X, Y)`` returns the ``(len(X), len(Y))`` block of kernel
            values for point sets ``X`` (m, d) and ``Y`` (n, d), arrays of the
            points' namespace.
        points : array, shape (n, d)
            Row points (and column points unless ``col_points`` is given).
        eps : float, default 1e-6
            Relative Frobenius bound, ``0 < eps < 1``.
        eta : float, optional
            Admissibility parameter (> 0) of ``admissibility="standard"``: a
            block of clusters ``t × s`` is low-rank when
            ``min(diam t, diam s) ≤ eta · dist(t, s)``.  ``None`` (default):
            4 in up to 3 dimensions; 2 above, where few admissible blocks
            compress at n ≤ 20 000 and the looser condition admits more
            that fail their rank test (5-D, twelfth pass of the sweep:
            within 1.25× of the best storage and build on 18 of 21 cases
            at n = 2000-20 000, against 5 for 4 with the near field
            compressed).  Giving it asks for standard admissibility where
            ``admissibility`` is left to its default.
        leaf_size : int, optional
            Largest cluster leaf (≥ 1).  ``None`` (default): 80 for points on
            a line (64 until the sixteenth pass of the sweep: 80 builds
            0.89× as long for 1.2× the storage, medians of 28 cases, and
            meets the 1.25× goal on 19 and 17 of them against 11 and 11);
            192 in 2 and 3 dimensions with ``compress_near`` (its default
            on NumPy), 96 there without it, and 128 above 3-D.  With the
            near field compressed, larger leaves store little more (at
            n = 20 000 in 2-3 D leaves of 128 stored 0.94-1.05× what leaves
            of 64 did) and build faster (leaves of 64: 1.08-1.34× slower);
            since the seventeenth pass (large blocks factored through the
            Gram matrix, the float32 check by a rank-one bound) leaves of
            192 meet the 1.25× goal on 13, 20 and 21 of the 21 cases at
            n = 2000, 4000 and 8000, leaves of 128 on 3, 11 and 17 (192
            against 128: storage 1.02×, build 0.88× on geometric average;
            at 20 000, 7 cases: 1.05× and 1.01×, both within on 6); with it
            dense, 96 against 64
            (eighth pass, n = 2000-20 000) stored 1.10-1.17× more on
            geometric average and built 1.13-1.27× faster.  Above 3-D, few
            blocks compress at the sizes of the sweep and per-block costs
            dominate the build: 128 built 3.3-4.3× faster than 64 at
            n = 8000 with at most 9 % more storage (see Notes).
        col_points : array, shape (n2, d), optional
            Column points for a rectangular kernel matrix.
        split : {"auto", "pca", "bisect"}, default "auto"
            Cluster splitting rule (see :class:`ClusterTree`); ``"auto"``:
            ``"bisect"`` (cube-like boxes) for points in up to 3 dimensions,
            ``"pca"`` above (where bisection builds 4× slower for 5 % less
            storage; see the table in Notes) and on JAX (eager JAX compiles
            each operation once per array shape; PCA's median splits give
            clusters of a few sizes, bisection's of many: a first 3-D build
            of 250 points took 41 s against 386 s).
        admissibility : {"standard", "weak"}, optional
            Which cluster pairs are low-rank blocks.  ``"standard"``: pairs
            that meet the ``eta`` condition; the rest are subdivided down to
            the leaves, whose near field is stored dense.  ``"weak"``
            (HODLR-like): every pair of distinct clusters of the same level,
            so each level stores one low-rank block per pair of siblings and
            only the diagonal leaves are dense; ``eta`` is then unused.
            ``None`` (default): ``"weak"`` for points on a line (one
            coordinate) without ``col_points`` and without ``eta``,
            ``"standard"`` otherwise.  On a line weak blocks stored 1.3-2.0×
            less and built 1.1-2.8× faster than standard ones on all 7 kernels
            of the sweep at n = 2000, 8000 and 20 000, and met the bound
            (checked against the dense matrix at 5000, 8000 and 20 000).  Off
            the line weak blocks touch along curves or surfaces, and ACA's
            error estimate, which the bound rests on without ``verify``, can
            miss there: log r in the plane at n = 8000 came out at 4.9 ``eps``
            (exp at 1.1).  Choose ``"weak"`` there only with ``verify=True``
            (which met the bound on both, at 6.5-6.9× the build time of
            standard) or a check of your own; without it a ``UserWarning``
            says so.  The choice is in ``H.info["admissibility"]``.
        aca_min_size : int, optional
            Admissible blocks with ``min(m, n) ≤ aca_min_size`` are evaluated
            and compressed by a pivoted QR, a sketch or an SVD (exact);
            larger ones by ACA.  ``None`` (default): 256: blocks up to 256
            are formed and compressed at the rank of their size class
            (``O(mnk)`` in matrix products) more cheaply than ACA takes them
            cross by cross.  At the same storage, in 2-D 256 built
            1.09-1.42× faster than 128 on all 7 kernels of the sweep
            (n = 8000); on a line 0.86-0.99× the time of 128 at n = 20 000,
            0.90-1.00× at 2000 and 0.89-1.09× at 8000 (tenth-pass runs; 128
            was the line's default until the twelfth pass, see Notes).
        verify : bool, optional
            Check every ACA block against the formed block (default: when the
            matrix has at most 4·10⁶ entries).
        symmetric : bool, optional
            Store only the blocks on and above the block diagonal: each
            off-diagonal block ``t × s`` also serves as ``(s × t)ᵀ``, which
            halves storage, build and matvec time.  ``None`` (default):
            detect it when ``col_points`` is None, from ``kernel(X_I, X_J)``
            against ``kernel(X_J, X_I)ᵀ`` on three pairs of 8-point samples
            (equal up to 100 unit roundoffs of the block's norm; true of
            every radial kernel), and build the full matrix instead if a
            diagonal block of the near field turns out not to be symmetric.
            ``True`` declares it (a diagonal block that is not symmetric then
            raises); ``False`` turns it off (use it for a kernel that is
            asymmetric only in places neither check sees).  The result is in
            ``H.info["symmetric"]``.
        mixed_precision : bool, optional
            Store in float32 every block of a float64 matrix whose rounding
            fits its share of the error budget (see Notes): about half the
            memory and a faster matvec at the same bound.  Products are
            still computed in float64.  ``None`` (default) and ``True``: on
            wherever the budget allows, which is for float64 matrices with
            ``eps ≥ 6 u₃₂ ≈ 3.6e-7``; below that, and for float32 matrices,
            every block stays in the working precision.  ``False``: off.
            ``H.info["float32_blocks"]`` counts the float32 blocks.
        compress_near : bool, optional
            Test every off-diagonal leaf block of the near field (the blocks
            the admissibility condition leaves dense) for low rank, as
            admissible blocks are, and store it low-rank where that stores
            less; its truncation shares the global budget.  Smooth kernels
            are low-rank well inside the near field: at n = 20 000 in 2-3 D
            (leaves of 128) it divided storage by 1.29 on geometric average
            (by 0.99 on the short Gaussian in the cube, by 1.99 on the broad
            one in the plane) for 1.05-1.22× the build time, and leaves of
            128 then store as
            little as leaves of 64, within 6 % (see Notes).
            ``None`` (default): on in up to 3 dimensions where the library
            has a pivoted QR (NumPy, see :func:`natgrad.backend.pivoted_qr`),
            whose rank test costs a fraction of an SVD; off above 3-D, where
            it built 1.5× slower at n = 2000 and 8000 for at most 1 % less
            storage on 6 of 7 kernels (the short Gaussian: 1.43× less, at
            4× the build), and elsewhere.  ``True``: on (an SVD per block
            where there is no pivoted QR).  ``False``: off.
            ``H.info["near"]`` counts the near-field blocks stored low-rank.
            Near-field blocks are pooled by how their boxes touch (a face,
            an edge or a corner: :meth:`~natgrad.hmatrix.Cluster.contact`),
            and a contact class whose 16 or more tested blocks stored more
            than 0.8 of their entries stops being tested (one block in
            max(8, tests / 8) still is, so a class whose later blocks
            compress resumes; the skipped ones count in
            ``H.info["untested"]``): in a 3-D volume the blocks that share a
            face store 0.8-1.0 of their entries, edges 0.6-0.97 and corners
            0.47-0.9 (n = 8000), so the classes that save little go mostly
            untested (the faces; at 4000 points the edges too for the
            rougher kernels, and all three for the short Gaussian), while
            in the plane and on a sphere (at most 0.66) and for the broad
            Gaussian in the cube every block is tested.  Against the size
            classes used before (eighteenth pass), in the cube this stores
            8-12 % less on five of seven kernels at n = 8000 (the
            Gaussians: unchanged), up to 7 % less at 2000-4000 and 11 %
            less for 1/r at 20 000 (for about 1.2× the build there),
            within 2 % of testing every block at 8000 and 20 000 and 6 % at
            2000-4000, which builds 1.05-1.15× as long.

        Returns
        -------
        HMatrix

        Raises
        ------
        ValueError
            For points that are not a non-empty 2-D finite array, eps outside
            (0, 1) or below what the dtype can guarantee, eta ≤ 0,
            leaf_size < 1, ``symmetric=True`` with ``col_points`` or with a
            kernel whose diagonal blocks are not symmetric, or a kernel whose
            values grow by more than 3e144 (float32: 4e9) over its first
            call's scale (their squares could overflow; see Notes).
        natgrad.validation.CallableOutputError
            A ``ValueError``: the kernel returned the wrong shape, at any
            call (the message names the call).
        natgrad.validation.NonFiniteOutputError
            A ``ValueError``: the kernel returned NaN or Inf, at any call
            (checked at every call; the message names the call).
        TypeError
            For non-array points, a non-callable kernel, mixed namespaces, or
            a kernel returning a non-array or an array of another library.
        natgrad.backend.DistributedUnsupportedError
            For points that are a dask array: H-matrices do not run
            distributed (the message says to pass ``points.compute()``).
        natgrad.backend.TracedArrayError
            For points that are a JAX tracer or a PyTorch tensor requiring
            grad, and for a PyTorch kernel whose output requires grad (naming
            the call).
        Exception
            An exception raised by the kernel passes through unchanged, with
            a note naming the call.

        Warns
        -----
        UserWarning
            For ``admissibility="weak"`` with points in more than one
            dimension and ``verify`` off: the bound then rests on ACA's
            estimate, which can miss on touching blocks (see
            ``admissibility``).

        Notes
        -----
        Bound: ``‖H − A‖_F ≤ eps ‖A‖_F`` (see the module docstring for the
        budget; guaranteed with ``verify``, else resting on ACA's estimate
        with a safety factor 10).  With ``symmetric=True`` a stored
        off-diagonal block counts twice in both ``‖A‖_F²`` and the error, so
        the same bound holds for the whole matrix (Hackbusch 2015, §6.7 on
        symmetric H-matrices).  ACA: Bebendorf (2000); admissibility and
        complexity: Hackbusch (2015); per-block error budgets: Mango &
        Katende, arXiv 2409.07028.

        Mixed precision holds back the share ``θ = 3u/ε`` of the budget
        (``u = 2⁻²⁴``, float32's unit roundoff; θ = 0.18 at ε = 10⁻⁶):
        truncation and ACA work to ``(1 − θ)ε``, and a block is rounded to
        float32 only if the change that makes to it, computed from the
        rounding of its entries or (exactly, at every rank the global
        truncation may leave, from two small Gram matrices) of its factors,
        is at most ``θ ε ‖A_b‖_F``.  By
        Minkowski's inequality the total stays within ``ε‖A‖_F``, and the
        rounding is included in :attr:`error_estimate` and in each block's
        ``error``.  Low-rank blocks in a precision chosen per block:
        E. Carson, X. Chen, X. Liu, *Mixed precision HODLR matrices*,
        arXiv 2407.21637 (2024); R. Khan, E. Carson, arXiv 2604.09147
        (2026).  On the array-API store (CuPy, PyTorch, JAX, NumPy without
        numba) float32 blocks are widened for each product: the memory
        halves, the product gets slower.

        The build limits the CPU BLAS pools to one thread while it runs
        (:func:`natgrad.backend.blas_threads`; with ``threadpoolctl``
        installed, as by the ``numba`` extra) and restores them after: its
        LAPACK and BLAS calls are on blocks of a few hundred rows, where a
        pool's threads cost more than they compute (two OpenBLAS threads
        made builds at n = 8000-20 000 take 1.4-2.1× as long).  The pools
        are per process, so BLAS work on other Python threads during the
        build runs on one thread too.

        **Choosing the settings.**  The defaults come from a sweep
        (``benchmarks/results/hmatrix_defaults.md``) over seven kernels (exp,
        Matérn 3/2 and 5/2, two Gaussians, 1/r and log r) on uniform points
        in 1, 2, 3 and 5 dimensions and on a sphere, at n = 2000 to 20 000
        and eps = 1e-6, measured against the goal of storage and build time
        within 1.25× of the best setting found for each case.  Until the
        tenth pass (2026-12-01) no setting met it on every case: the fastest
        builds compressed least, because larger leaves store a larger dense
        near field.  With the near field compressed (``compress_near``, on
        by default on NumPy) leaves of 128 store as little as leaves of 64
        (within 6 % at n = 20 000), and with them the defaults come within
        1.25× of both on all 21 cases in 2 and 3 dimensions at
        n = 20 000: storage at most 1.05× the smallest (1.00× on geometric
        average), build at most 1.23× the fastest (1.15×); the previous
        defaults (leaves of 96, near field dense) did on 13 of the 21,
        storing up to 2.03× the smallest.  At n = 2000, 4000 and 8000 (two
        runs, twelfth and thirteenth passes) they are within on 7, 13 and
        13, and 6, 11 and 15, of the 21 (no setting is on 13, 6 and 3, and
        12, 7 and 3), with near-field classes that save
        little left untested (see ``compress_near``; 0, 5 and 10 when every
        block is tested): at 2000 the near field's tests still cost more
        time than they save in the plane and on the sphere.  With leaves of
        192 (seventeenth pass) they are within on 13, 20 and 21 (leaves of
        128: 3, 11 and 17 in the same runs), and some swept setting is
        within on all but one case (the short Gaussian on the sphere at
        2000).  On a line, weak
        admissibility (the default there) has no near field to compress;
        leaves of 64 store the least and build slower than larger ones
        (n = 20 000: 1.17-1.57× slower than the fastest in three runs,
        whose leaves store 1.25-1.9× more); with ``aca_min_size=256`` the
        defaults are within on 11, 13 and 10 of the 21 line cases at
        n = 2000-20 000 in three runs (6 and 7 before), and on 13 and 13
        in two runs since the float32 rounding check runs once per size
        class: the extra time of small leaves is per-block bookkeeping,
        not arithmetic.  Since the sixteenth pass, whose QR through the Gram
        matrix factors blocks of 64 columns and more in about half of
        ``geqp3``'s time, leaves of 80 are the default on a line: within on
        19 and 17 of the 28 line cases at n = 2000-20 000 in two runs,
        leaves of 64 on 11 and 11.  Above
        3-D (5-D in the sweep) ``eta=2`` with the near field dense is within
        on 18 of 21 (twelfth pass; 5 for the defaults before, ``eta=4``
        with it compressed); the misses are the two Gaussians, whose storage
        (up to 1.64× the smallest) only settings that build 3.1-5.5× slower
        reach.  When to change a knob (ratios from the sweep, against the
        defaults):

        ===========================  ==============================================
        change                       when
        ===========================  ==============================================
        ``admissibility``            ``"weak"`` with ``verify=True`` in 2-D when
                                     memory matters most and the kernel is
                                     smooth over the whole domain: unverified at
                                     n = 20 000, the Gaussians and Matérn 5/2
                                     stored 2.2-3.6× less than standard (in 3-D
                                     the Gaussian of length scale 1, 5.4×), but
                                     only ``verify`` makes the bound hold there
                                     (see ``admissibility``), at 6.5-6.9× the build.
                                     ``"standard"`` on a line only to repeat a
                                     build from before 2026-12-01: weak stored
                                     less and built faster on every case there.
        ``split``                    Rarely: ``"auto"`` is what the sweep found
                                     best.  PCA clusters in up to 3 dimensions
                                     stored 1.27× more and built 1.12× faster on
                                     average (0.79-1.64×); bisection in 5-D stored
                                     6 % less and built 3.8× slower at n = 8000;
                                     at 20 000 (``eta=8``, leaves of 128) 1-32 %
                                     less (the Gaussians, exp and 1/r most) and
                                     2.0-5.5× slower.
        ``compress_near=False``      Build time matters more than memory, or a
                                     library without a pivoted QR (where the
                                     rank tests are SVDs): at n = 20 000 in 2-3 D
                                     the build was 1.05-1.22× faster (1.12× on
                                     geometric average) and stored 0.99-1.99×
                                     more (1.29×; the broad Gaussian in the
                                     plane twice as much).  Then pass
                                     ``leaf_size=96`` too (its default without
                                     the compressed near field): leaves of 128
                                     store more there.
        ``leaf_size=128`` (2-3 D)    Memory matters a little more than build
                                     time: at n = 2000-8000 (63 cases) 128
                                     stored 0.98× what 192 does on geometric
                                     average (0.90-1.08×) and built 1.13×
                                     slower (0.79-1.45×); at 20 000 (7 cases)
                                     0.95× and 0.99×.
        ``leaf_size=64`` (2-3 D)     Rarely, since ``compress_near``: at
                                     n = 20 000 (14 cases in the plane and on
                                     the sphere) it stored 0.96-1.07× what
                                     128 did and built 1.08-1.34× slower.
        ``leaf_size=64``             Points in more than 3 dimensions, a
                                     short-range kernel, memory matters more than
                                     build time: stored 8 % less on the short
                                     Gaussian at n = 8000 (22 % at 24 000),
                                     built 2.3× slower.
        ``eta``                      Rarely: in 2-3 D from 4 to 8 storage changed
                                     by at most 7 % (1 % on average), build time
                                     by 0.75-1.45×; 2 with leaves of 128 stored
                                     1.54× more and built 1.31× faster on
                                     average.  Above 3-D (default 2) 4 stored
                                     the same at n = 2000 and 8000 and built
                                     0.90-1.19× the time; at 20 000 it stored
                                     0-1 % less (21 % on the short Gaussian)
                                     and built 0.99-1.29× the time (2.23× on
                                     the short Gaussian).
        ``compress_near=True``       Above 3-D, a short-range kernel and memory
        (above 3-D)                  first: the Gaussian of length scale 0.2
                                     stored 1.43× less at n = 8000 (1.64× at
                                     20 000, with ``eta=4``) and built 3.7-4.3×
                                     slower; on the other six kernels it saved
                                     at most 1 %.
        ``aca_min_size``             Rarely: the same storage either way; 256 (the
                                     default) built 1.09-1.42× faster than 128
                                     in 2-D (7 of 7 kernels), and on a line
                                     0.86-1.09× the time of 128.
        ``eps``                      The product feeds a preconditioner or a
                                     network layer (1e-3 to 1e-4 store far less);
                                     below 3.6e-7 float32 storage turns off.
        ``symmetric=False``          The kernel is asymmetric only where neither
                                     the sampled blocks nor the diagonal blocks
                                     look.
        ``mixed_precision=False``    On the array-API store (CuPy, PyTorch, JAX)
                                     when matvec time matters more than memory:
                                     float32 blocks are widened for each product.
        ``verify=True``              The bound must be checked, not estimated, on a
                                     matrix of more than 4·10⁶ entries (each ACA
                                     block is formed once more).
        ===========================  ==============================================

        **Scale.**  A kernel of any scale gets the same H-matrix: when the
        first block's largest entry is beyond ``2^±(maxexp/4)`` (``1e±77``
        in float64, ``4e±9`` in float32), every kernel value is multiplied
        by one power of two (exact) that brings it to ``[0.5, 1)``, the
        blocks are built from those and scaled back at the end, so squares
        of norms never overflow or underflow and a kernel times ``1e±150``
        meets the bound with the ranks of the unscaled kernel.  (Mixed
        precision is then off: float32 cannot hold such entries.)

        **A kernel that changes mid-build.**  The kernel is called on blocks,
        rows and columns, at most twice per entry (ACA's rows and columns of a
        block, then the block itself when ACA forms it, falls back to an SVD
        or verifies it).
        It always gets fresh copies of its point arrays, so a kernel that
        writes into ``X`` or ``Y`` changes neither ``points`` nor what later
        calls see.  A kernel whose answers change between calls (a scale
        that jumps, a kernel that damages its own copy) cannot be told from
        a healthy one; the H-matrix is then that of the matrix the kernel
        answered, each entry from the last call that covered it (with
        symmetric storage: of the stored block triangle, mirrored), and
        (with ``verify``) it meets ``eps`` and its :attr:`error_estimate` for
        that matrix.  A jump to values more than ``2^(maxexp/2 − 32)``
        (``3e144`` in float64, ``4e9`` in float32) above the first call's
        scale, whose squares could overflow, raises a ``ValueError`` naming
        the call.

        Examples
        --------
        >>> import numpy as np
        >>> pts = np.random.default_rng(0).random((300, 2))
        >>> def k(X, Y):
        ...     d = X[:, None, :] - Y[None, :, :]
        ...     return 1.0 / (1.0 + np.sum(d * d, axis=-1))
        >>> H = HMatrix.from_kernel(k, pts, eps=1e-6, leaf_size=16)
        >>> A = k(pts, pts)
        >>> bool(np.linalg.norm(H.to_dense() - A) <= 1e-6 * np.linalg.norm(A))
        True
        """
        validation.callable_arg(kernel, "kernel")
        for name, value in (("points", points), ("col_points", col_points)):
            backend.require_eager(value, name, "HMatrix.from_kernel", _NOT_DISTRIBUTED)
        xp = backend.namespace(points=points, col_points=col_points)
        _check_points(points, "points")
        if col_points is not None:
            _check_points(col_points, "col_points")
            if col_points.shape[1] != points.shape[1]:
                raise ValueError(
                    f"col_points must have {points.shape[1]} columns like points, "
                    f"got shape {tuple(col_points.shape)}"
                )
        dtype = backend.float_dtype(xp, points, col_points)
        eps = _check_eps(eps, dtype, xp)
        eta_given = eta is not None
        # above 3-D fewer blocks are admissible at any eta and few of them
        # compress at these sizes: eta = 2 admits fewer that fail their rank
        # test (eleventh and twelfth passes of the sweep)
        many_dims = points.shape[1] > 3
        eta = validation.positive((2.0 if many_dims else 4.0) if eta is None else eta, "eta")
        if compress_near is None:
            # above 3-D the near field's rank tests cost 1.5x the build for
            # at most 1 % less storage (twelfth pass, n = 2000 and 8000)
            compress_near = backend.has_pivoted_qr(xp, dtype) and not many_dims
        elif not isinstance(compress_near, bool):
            raise TypeError(f"compress_near must be None (automatic), True or False, got {compress_near!r}")
        if leaf_size is None:
            # with the near field compressed, larger leaves store little more
            # and build faster: 192 in 2-3 D since the Gram-route QR and the
            # rank-one float32 check made large blocks cheap (seventeenth
            # pass: within 1.25x of both on 13, 20 and 21 of 21 cases at
            # 2000, 4000 and 8000, against 3, 11 and 17 for 128); without it
            # 96 in 2-3 D, which stores less than 128 there (eighth pass);
            # 128 above 3-D; on a line 80 (sixteenth pass)
            low_d = 192 if compress_near else 96
            leaf_size = 80 if points.shape[1] == 1 else 128 if many_dims else low_d
        leaf_size = validation.positive_int(leaf_size, "leaf_size")
        aca_min_size = validation.positive_int(256 if aca_min_size is None else aca_min_size, "aca_min_size")
        if admissibility is None:
            # measured (the sweep's 7 kernels, n = 2000-20 000): on a line weak
            # blocks store less and build faster on every case and meet the
            # bound.  In the plane they touch along a line, and ACA's estimate
            # missed there (log r at 8000: 4.9 eps).  Rectangular matrices
            # keep standard: weak pairs clusters by tree position, not
            # distance; so does a build given eta, which only standard reads
            weak = col_points is None and points.shape[1] == 1 and not eta_given
            admissibility = "weak" if weak else "standard"
        if symmetric is not None and not isinstance(symmetric, bool):
            raise TypeError(f"symmetric must be None (detect), True or False, got {symmetric!r}")
        if symmetric and col_points is not None:
            raise ValueError("symmetric=True needs col_points=None (rows and columns on the same points)")
        if mixed_precision is None:
            mixed_precision = True  # the builder keeps float64 where the budget does not allow float32
        elif not isinstance(mixed_precision, bool):
            raise TypeError(f"mixed_precision must be None (automatic), True or False, got {mixed_precision!r}")
        if split == "auto":
            # bisection: cube-like boxes, less storage and faster builds up to
            # 3-D; PCA above, and on JAX, whose eager operations compile once
            # per array shape: PCA's median splits give clusters of a few
            # sizes, bisection's of many (a 250-point 3-D build: 41 s vs 386 s)
            split = "bisect" if points.shape[1] <= 3 and not backend.is_jax(xp) else "pca"
        rows = ClusterTree.from_points(points, leaf_size=leaf_size, split=split)
        cols = rows if col_points is None else ClusterTree.from_points(
            col_points, leaf_size=leaf_size, split=split)
        btree = BlockTree(rows, cols, eta=eta, admissibility=admissibility)
        if verify is None:
            verify = rows.n * cols.n <= _VERIFY_LIMIT
        if admissibility == "weak" and points.shape[1] > 1 and not verify:
            warnings.warn(
                f"admissibility='weak' with points in {points.shape[1]} dimensions and verify=False: weak "
                "blocks touch off a line, and ACA's error estimate, on which eps then rests, can miss "
                "there (log r in the plane at n = 8000 came out at 4.9 eps); pass verify=True to check "
                "every ACA block against the formed block", UserWarning, stacklevel=2)
        X = xp.astype(rows.points, dtype) if rows.points.dtype != dtype else rows.points
        Y = xp.astype(cols.points, dtype) if cols.points.dtype != dtype else cols.points

        def build_with(symmetric: bool | None) -> "HMatrix":
            build = _Builder(xp, dtype, eps, splitting=True, symmetric=False,
                             mixed_precision=mixed_precision, admissibility=admissibility)
            source = _KernelSource(kernel, X, Y, dtype, xp, build)
            if symmetric is None:
                symmetric = col_points is None and _looks_symmetric(source, rows.n)
            build.symmetric = symmetric
            build.exact = lambda: source.block(rows.root, cols.root)

            def admissible_block(t: Cluster, s: Cluster, parent: tuple | None = None) -> Any:
                if min(t.size, s.size) > aca_min_size:
                    return build.aca(t, s, source, bool(verify))
                # a block split after a failed rank test is cut from its
                # parent's entries, not evaluated again
                Ab = source.block(t, s) if parent is None else _sub_block(xp, parent, t, s)
                splitter = None if (t.is_leaf and s.is_leaf) else (
                    lambda: _split_layout(t, s, lambda a, b: admissible_block(a, b, (Ab, t, s))))
                return build.formed(t, s, Ab, splitter)

            def compress(block: Block, parent: tuple | None) -> Any:
                if block.admissible:
                    return admissible_block(block.rows, block.cols, parent)
                t, s = block.rows, block.cols
                D = source.block(t, s) if parent is None else _sub_block(xp, parent, t, s)
                norm2 = None
                if symmetric and t is s:
                    checked = _symmetry_gap(xp, D, D)
                    if checked[2] and parent is not None:
                        # cut from a larger product, a diagonal block can be
                        # asymmetric by rounding alone (BLAS rounds x_i·x_j
                        # and x_j·x_i apart at a tile's edges: log r in the
                        # plane, n = 20 000): the kernel's own answer decides
                        D = source.block(t, s)
                        checked = _symmetry_gap(xp, D, D)
                    norm2 = _symmetric_norm2(*checked)
                if compress_near and t is not s:
                    return build.formed(t, s, D, None, near=True)
                return build.dense(t, s, D, norm2)

            stored: dict[tuple[int, int, int, int], Any] = {}

            def mirrored(block: Block) -> bool:
                # the block tree is symmetric, so s × t is a leaf stored too
                t, s = block.rows, block.cols
                return symmetric and t is not s and (t.start, t.size) > (s.start, s.size)

            def leaf(block: Block, parent: tuple | None) -> Any:
                t, s = block.rows, block.cols
                if mirrored(block):
                    return ("mirror", (s.start, s.size, t.start, t.size))
                node = compress(block, parent)
                if symmetric:
                    stored[(t.start, t.size, s.start, s.size)] = node
                return node

            counted: dict[int, int | None] = {}

            def cut_leaves(block: Block) -> int | None:
                """How many stored leaves under ``block`` would be cut from
                its entries; None if one is compressed by ACA (from rows
                and columns, not the formed block)."""
                key = id(block)
                if key not in counted:
                    t, s = block.rows, block.cols
                    if not block.is_leaf:
                        below = [cut_leaves(c) for c in block.children]
                        counted[key] = None if None in below else sum(below)
                    elif block.admissible and min(t.size, s.size) > aca_min_size:
                        counted[key] = None
                    else:
                        counted[key] = 0 if mirrored(block) else 1
                return counted[key]

            def gather(block: Block) -> tuple | None:
                if block.rows.size * block.cols.size > _PREFETCH_LIMIT or (cut_leaves(block) or 0) < 2:
                    return None
                # one kernel call for all the leaves below, cut from its
                # answer: a call's fixed cost (the user's Python, the
                # checks) dwarfs the entries of a leaf block
                return (source.block(block.rows, block.cols), block.rows, block.cols)

            layout = _walk(btree.root, leaf, gather)
            build.distribute()
            H = cls(xp=xp, dtype=dtype, rows=rows, cols=cols, builder=build, layout=layout,
                    eps=eps, verify=bool(verify), stored=stored)
            H.info.update(eta=eta, compress_near=compress_near, aca_min_size=aca_min_size)
            return H

        # the build's LAPACK and BLAS calls are on blocks of a few hundred
        # rows or on thin factors, where a BLAS pool's threads cost more than
        # they compute: with OpenBLAS's two threads, builds at n = 8000-20 000
        # took 1.4-2.1x as long as with one (see backend.blas_threads)
        with backend.blas_threads(1):
            if symmetric is not None:
                return build_with(symmetric)
            try:
                return build_with(None)
            except _AsymmetricKernel:
                # the probe saw symmetric samples, a diagonal block did not: the
                # kernel is asymmetric only in places; build the full matrix
                return build_with(False)

    @classmethod
    def from_dense(
        cls,
        A: Any,
        *,
        eps: float = 1e-6,
        eta: float = 1.0,
        leaf_size: int = 64,
        tree: str = "embedding",
        admissibility: str = "weak",
        adaptive: bool = True,
        seed: int = 0,
        mixed_precision: bool = False,
    ) -> "HMatrix":
        """H-matrix of a dense ``(m, n)`` matrix, square or not, with or
        without geometry (kernel matrices, neural-network weight matrices).

        Parameters
        ----------
        A : array, shape (m, n)
            Finite; integer input is promoted to the default float dtype.
        eps : float
            Relative Frobenius bound, ``0 < eps < 1``.
        eta : float
            Admissibility parameter (> 0) for ``admissibility="standard"``.
        leaf_size : int
        tree : {"embedding", "index"}
            ``"embedding"``: data-driven row and column clusters from a
            randomized SVD embedding of ``A`` (see
            :meth:`ClusterTree.from_matrix`); ``"index"``: keep the given order
            and halve index ranges (for matrices whose order is meaningful).
        admissibility : {"weak", "standard"}
            ``"weak"`` (default): every off-diagonal block is a low-rank
            candidate.  ``"standard"`` uses the trees' boxes.
        adaptive : bool
            Split a candidate block whose low-rank form does not pay into its
            children instead of storing it dense.
        seed : int
            Seed of the randomized embedding and range finder.
        mixed_precision : bool, default False
            Store blocks in float32 where their rounding fits the budget, as
            in :meth:`from_kernel`.

        Returns
        -------
        HMatrix

        Raises
        ------
        ValueError
            If ``A`` is not 2-D or has NaN/Inf, eps is outside (0, 1) or
            below what the dtype can guarantee, eta ≤ 0, leaf_size < 1, or
            tree/admissibility is unknown.
        TypeError
            If ``A`` is not an array.
        natgrad.backend.TracedArrayError
            If ``A`` is a JAX tracer or a PyTorch tensor that requires grad.
        natgrad.backend.DistributedUnsupportedError
            If ``A`` is a dask array: H-matrices do not run distributed.

        Notes
        -----
        Every block's error is an exact truncated-SVD tail (or the exactly
        computed residual of the randomized range finder plus a tail), so
        ``‖H − A‖_F ≤ eps ‖A‖_F`` holds on every input, up to rounding.  A block
        whose compressed form would need ``k(m + n) ≥ mn`` entries is stored
        dense (random matrices end up (nearly) dense, with zero error).

        Entries of any scale (``1e±150`` in float64, ``1e±20`` in float32,
        whose squares overflow or underflow there) give the same blocks:
        a matrix whose largest entry is beyond ``2^±(maxexp/4)`` is built
        from a copy scaled by a power of two (exact) and scaled back, as in
        :meth:`from_kernel`.

        Examples
        --------
        >>> import numpy as np
        >>> i = np.arange(200.0)
        >>> A = 1.0 / (1.0 + np.abs(i[:, None] - i[None, :150]))
        >>> H = HMatrix.from_dense(A, eps=1e-4, leaf_size=16, tree="index")
        >>> bool(np.linalg.norm(H.to_dense() - A) <= 1e-4 * np.linalg.norm(A))
        True
        >>> H.shape, H.compression_ratio < 1.0
        ((200, 150), True)
        """
        backend.require_eager(A, "A", "HMatrix.from_dense", _NOT_DISTRIBUTED)
        xp = backend.namespace(A=A)
        if A.ndim != 2 or A.shape[0] < 1 or A.shape[1] < 1:
            raise ValueError(f"A must be a non-empty 2-D array, got shape {tuple(A.shape)}")
        if not backend.all_finite(A):
            raise ValueError("A contains NaN or Inf")
        dtype = backend.float_dtype(xp, A)
        A = xp.astype(A, dtype) if A.dtype != dtype else A
        eps = _check_eps(eps, dtype, xp)
        eta = validation.positive(eta, "eta")
        leaf_size = validation.positive_int(leaf_size, "leaf_size")
        m, n = A.shape
        # entries far from 1 (1e±150) are normalised by a power of two, so
        # that the embedding's products and the norms' squares cannot
        # overflow or underflow; the blocks are scaled back at the end
        exp = _scale_exponent(backend.to_float(xp.max(xp.abs(A))), A.dtype, xp)
        if exp:
            A = _times_pow2(A, -exp)
        if tree == "embedding":
            rc, cc = spectral_coordinates(A, dim=3, seed=seed)
            rows = ClusterTree.from_points(rc, leaf_size=leaf_size)
            cols = ClusterTree.from_points(cc, leaf_size=leaf_size)
            Ap = xp.take(xp.take(A, rows.perm, axis=0), cols.perm, axis=1)
        elif tree == "index":
            rows = ClusterTree.from_indices(m, leaf_size=leaf_size)
            cols = ClusterTree.from_indices(n, leaf_size=leaf_size)
            Ap = A
        else:
            raise ValueError(f"tree must be 'embedding' or 'index', got {tree!r}")
        btree = BlockTree(rows, cols, eta=eta, admissibility=admissibility)
        build = _Builder(xp, dtype, eps, splitting=bool(adaptive), mixed_precision=mixed_precision,
                         admissibility=admissibility)
        build.set_scale(exp)
        build.exact = lambda: Ap

        def sub(t: Cluster, s: Cluster) -> Any:
            return Ap[t.start:t.stop, s.start:s.stop]

        def admissible_block(t: Cluster, s: Cluster) -> Any:
            splitter = None if (t.is_leaf and s.is_leaf) else (
                lambda: _split_layout(t, s, admissible_block))
            return build.formed(t, s, sub(t, s), splitter)

        def leaf(block: Block, _parent: None) -> Any:  # dense input: nothing is gathered
            if block.admissible:
                return admissible_block(block.rows, block.cols)
            return build.dense(block.rows, block.cols, sub(block.rows, block.cols))

        layout = _walk(btree.root, leaf)
        build.distribute()
        return cls(xp=xp, dtype=dtype, rows=rows, cols=cols, builder=build, layout=layout,
                   eps=eps, verify=None)

    # -- storage ----------------------------------------------------------------
    def _pack(self) -> Any:
        """Hand the blocks to a block store: numba's flat buffer for NumPy
        arrays when numba is installed, else stacks of equal-shape blocks."""
        kept = [r for r in self._records if r.kind != "zero"]
        for slot, r in enumerate(kept):
            r.slot = slot
            r.stored_dtype = r.U.dtype
            if r.kind == "lowrank":
                r.rank = r.U.shape[1]
        self.info["float32_blocks"] = sum(1 for r in kept if r.stored_dtype != self.dtype)
        compiled = compiled_block_store(self.xp)
        if compiled is not None:
            store = compiled([(r.kind, r.row0, r.m, r.col0, r.n, r.rank, r.weight == 2) for r in kept],
                             self.shape, self.dtype)
            for r in kept:
                store.put(r.slot, r.U, r.V)
                r.U = r.V = None  # the store's arrays are the only ones kept
            return store
        blocks = [(r.kind, r.row0, r.m, r.col0, r.n, r.U, r.V, r.weight == 2) for r in kept]
        for r in kept:
            r.U = r.V = None  # the store's copy is the only one kept
        return StackedBlocks(self.xp, blocks, self.shape, self.dtype)

    @property
    def nbytes(self) -> int:
        """Bytes held: block data as stored (with padding), the matvec's
        index arrays and the permutations."""
        xp = self.xp
        total = self._store.nbytes
        for tree in {id(self.rows): self.rows, id(self.cols): self.cols}.values():
            if tree.perm is not None:
                total += 2 * array_nbytes(xp, tree.perm)
        return total

    @property
    def compression_ratio(self) -> float:
        """``nbytes`` relative to the dense matrix (``< 1`` means smaller)."""
        itemsize = xp_itemsize(self.xp, self.dtype)
        return self.nbytes / (self.shape[0] * self.shape[1] * itemsize)

    def ranks(self) -> list[int]:
        """Ranks of the low-rank blocks (0 for blocks dropped entirely), in
        block-tree order."""
        return [r.rank for r in self._records if r.kind != "dense"]

    def blocks(self) -> list[dict[str, Any]]:
        """The stored leaf blocks in permuted coordinates: ``row0, m, col0,
        n``, ``kind`` ("lowrank", "dense", "zero"), ``rank``, ``method``
        ("qr", "svd", "sketch", "rsvd", "aca", "dense"),
        ``error`` (truncation and storage rounding), ``mirrored`` (True when
        the block also stands for its transpose at ``(col0, row0)``, in
        symmetric storage) and ``stored_dtype`` (float32 for blocks that
        mixed precision rounded; ``None`` for zero blocks)."""
        return [dict(row0=r.row0, m=r.m, col0=r.col0, n=r.n, kind=r.kind,
                     rank=r.rank if r.kind != "dense" else None, method=r.method,
                     error=r.error, mirrored=r.weight == 2,
                     stored_dtype=r.stored_dtype if r.kind != "zero" else None)
                for r in self._records]

    # -- application --------------------------------------------------------------
    def _prepare(self, x: Any) -> tuple[Any, bool]:
        xp = self.xp
        if backend.namespace(x=x) is not xp:
            raise TypeError(
                f"x must be an array of the H-matrix's namespace ({backend.library_name(xp)}), "
                f"got {type(x).__name__}"
            )
        if self._device is not None and backend.device(x) != self._device:
            raise TypeError(f"x is on device {backend.device(x)} but the H-matrix on {self._device}")
        dtype = backend.float_dtype(xp, x, self.dtype)
        if x.dtype != dtype:
            x = xp.astype(x, dtype)
        return (x[:, None], True) if x.ndim == 1 else (x, False)

    def _apply(self, x: Any, transpose: bool, perm_in: Any, iperm_out: Any) -> Any:
        xp = self.xp
        x2, vector = self._prepare(x)
        if perm_in is not None:
            x2 = xp.take(x2, perm_in, axis=0)
        y = self._store.apply(x2, transpose)
        if iperm_out is not None:
            y = xp.take(y, iperm_out, axis=0)
        return y[:, 0] if vector else y

    def _matvec(self, x: Any) -> Any:
        return self._apply(x, False, self.cols.perm, self.rows.iperm)

    def _rmatvec(self, x: Any) -> Any:
        return self._apply(x, True, self.rows.perm, self.cols.iperm)

    def to_dense(self, xp: Any = None) -> Any:
        """The H-matrix as a dense ``(m, n)`` array in the original order."""
        xp = self.xp
        Dp = self._assemble(self._layout)
        if self.rows.iperm is not None:
            Dp = xp.take(Dp, self.rows.iperm, axis=0)
        if self.cols.iperm is not None:
            Dp = xp.take(Dp, self.cols.iperm, axis=1)
        return Dp

    def _assemble(self, node: Any) -> Any:
        xp = self.xp
        if node[0] == "leaf":
            r = self._records[node[1]]
            if r.kind == "zero":
                dev = self._device
                return xp.zeros((r.m, r.n), dtype=self.dtype, device=dev) if dev is not None \
                    else xp.zeros((r.m, r.n), dtype=self.dtype)
            return self._store.block(r.slot)
        if node[0] == "mirror":
            return xp.matrix_transpose(self._assemble(self._stored[node[1]]))
        _, nr, nc, children = node
        parts = [self._assemble(c) for c in children]
        rows = [xp.concat(parts[i * nc:(i + 1) * nc], axis=1) for i in range(nr)]
        return xp.concat(rows, axis=0)

    def __repr__(self) -> str:
        return (f"<{self.shape[0]}x{self.shape[1]} HMatrix eps={self.eps:g} "
                f"blocks={len(self._records)} storage={self.compression_ratio:.1%} of dense>")


def xp_itemsize(xp: Any, dtype: Any) -> int:
    """Bytes per entry of a floating dtype."""
    return xp.finfo(dtype).bits // 8
