r"""Layer 0, compiled CPU kernels: H-matrix blocks applied by numba.

Part of the backend layer (like :mod:`natgrad.backend`, it may name NumPy,
numba and threadpoolctl).  It is imported only through
:func:`natgrad.backend.compiled_block_store`, which returns ``None`` when
numba or threadpoolctl (the ``numba`` extra installs both) is missing, the
arrays are not NumPy arrays, or the environment variable
``NATGRAD_DISABLE_NUMBA`` is set to a non-empty value other than ``0``;
:mod:`natgrad.hmatrix` then uses its pure array-API path (stacked, padded
matmuls).

Why a compiled path: an H-matrix matvec reads every stored number once and
does two flops with it, so it is bound by memory bandwidth.  The array-API
path pads blocks of nearly equal shape into stacks (extra bytes) and pays a
few Python-level operations per stack (more than a thousand stacks at
n = 10⁴ in 3-D).  Here every block is stored unpadded in one flat buffer and
one compiled loop applies them all, split into as many chunks of equal work
as numba has threads; each chunk accumulates into its own output, and the
outputs are summed at the end, so no two threads write to the same place and
the result does not depend on scheduling.

Examples
--------
>>> import numpy as np
>>> from natgrad.backend_numba import FlatBlocks
>>> rng = np.random.default_rng(0)
>>> U, V, D = rng.standard_normal((3, 2)), rng.standard_normal((4, 2)), rng.standard_normal((3, 3))
>>> store = FlatBlocks.from_blocks([("lowrank", 0, 3, 3, 4, U, V, False),
...                                 ("dense", 0, 3, 0, 3, D, None, False)], (3, 7), np.float64)
>>> A = np.concatenate([D, U @ V.T], axis=1)
>>> x = rng.standard_normal((7, 1))
>>> bool(np.allclose(store.apply(x, transpose=False), A @ x))
True
"""

from __future__ import annotations

from typing import Any, Sequence

import numba
import numpy as np
from numba.extending import overload
from threadpoolctl import ThreadpoolController

__all__ = ["FlatBlocks"]

#: BLAS thread pools, to run them single-threaded inside the parallel loop
#: (created on first use; natgrad.backend has loaded SciPy's BLAS by then)
_blas_pools: list[ThreadpoolController] = []

#: the loops may be reassociated (vectorised sums); NaN/Inf keep their IEEE
#: meaning, so a NaN in x still propagates to the result
_FASTMATH = {"reassoc", "contract", "nsz"}

#: columns of the per-block table
_KIND, _ROW0, _M, _COL0, _N, _K, _OFF, _MIRROR = range(8)
_DENSE, _LOWRANK = 0, 1

# Inner loops run over slices (views) rather than offset arithmetic on the
# flat buffer: numba then knows the indices are in range and non-negative and
# vectorises the loops (about 2x the throughput, measured).  A dense block D
# is stored row-major; a low-rank block U Vᵀ as Uᵀ (k, m) then Vᵀ (k, n),
# row-major, so every inner loop runs along a contiguous row.
#
# Every block product is built from three primitives on a row-major matrix
# R (p rows of length q), which accumulate into their outputs:
#   rows_dot        out[l] += R[l] · xs                  (R xs)
#   rows_axpy       ys += Σ_l coef[l] R[l]               (Rᵀ coef)
#   rows_dot_axpy   both in one sweep over R             (a mirrored block)
# (Taking four rows at a time, so that each load of xs or ys serves four
# rows, measured no faster: the loops are bound by memory bandwidth.)


def _rows_dot_vec(R, p, q, xs, out):  # pragma: no cover - compiled
    for l in range(p):
        row, acc = R[l * q:(l + 1) * q], 0.0
        for j in range(q):
            acc += row[j] * xs[j]
        out[l] += acc


def _rows_axpy_vec(R, p, q, coef, ys):  # pragma: no cover - compiled
    for l in range(p):
        row, c = R[l * q:(l + 1) * q], coef[l]
        for j in range(q):
            ys[j] += row[j] * c


def _rows_dot_axpy_vec(R, p, q, xs, out, coef, ys):  # pragma: no cover - compiled
    for l in range(p):
        row, acc, c = R[l * q:(l + 1) * q], 0.0, coef[l]
        for j in range(q):
            d = row[j]
            acc += d * xs[j]
            ys[j] += d * c
        out[l] += acc


# Several right-hand sides: the same products as matrix products, ``np.dot``
# on the block (BLAS, through numba).  A hand-written loop nest was 10x
# slower than BLAS at 64 right-hand sides.  ``apply`` hands x over in the
# result dtype; a block stored in a narrower dtype is widened for the product.
def _rows_dot_gemm(R, p, q, xs, out):  # pragma: no cover - compiled
    out += np.dot(_like(R.reshape((p, q)), out), xs)


def _rows_axpy_gemm(R, p, q, coef, ys):  # pragma: no cover - compiled
    ys += np.dot(_like(R.reshape((p, q)), ys).T, coef)


def _rows_dot_axpy_gemm(R, p, q, xs, out, coef, ys):  # pragma: no cover - compiled
    M = _like(R.reshape((p, q)), ys)
    out += np.dot(M, xs)
    ys += np.dot(M.T, coef)


# The driver is written once; these stubs pick the one-vector or the
# several-vector loops from the number of dimensions of x when numba
# compiles it.
def _rows_dot(R, p, q, xs, out):  # pragma: no cover - typing stub
    raise NotImplementedError


def _rows_axpy(R, p, q, coef, ys):  # pragma: no cover - typing stub
    raise NotImplementedError


def _rows_dot_axpy(R, p, q, xs, out, coef, ys):  # pragma: no cover - typing stub
    raise NotImplementedError


def _buffer_shape(kmax, x):  # pragma: no cover - typing stub
    raise NotImplementedError


def _like(M, ref):  # pragma: no cover - typing stub
    raise NotImplementedError


@overload(_like)
def _like_for(M, ref):  # pragma: no cover - compile time
    if M.dtype == ref.dtype:
        return lambda M, ref: M
    return lambda M, ref: M.astype(ref.dtype)


@overload(_rows_dot)
def _rows_dot_for(R, p, q, xs, out):  # pragma: no cover - compile time
    return _rows_dot_vec if xs.ndim == 1 else _rows_dot_gemm


@overload(_rows_axpy)
def _rows_axpy_for(R, p, q, coef, ys):  # pragma: no cover - compile time
    return _rows_axpy_vec if ys.ndim == 1 else _rows_axpy_gemm


@overload(_rows_dot_axpy)
def _rows_dot_axpy_for(R, p, q, xs, out, coef, ys):  # pragma: no cover - compile time
    return _rows_dot_axpy_vec if xs.ndim == 1 else _rows_dot_axpy_gemm


@overload(_buffer_shape)
def _buffer_shape_for(kmax, x):  # pragma: no cover - compile time
    if x.ndim == 1:
        return lambda kmax, x: (2, kmax)
    return lambda kmax, x: (2, kmax, x.shape[-1])


@numba.njit(parallel=True, cache=True, fastmath=_FASTMATH)
def _apply(data, table, bounds, kmax, x, transpose, out):  # pragma: no cover - compiled
    # x: (n_in,) or (n_in, r); out: (chunks, n_out[, r]); chunk c applies
    # blocks bounds[c]:bounds[c + 1] into out[c]
    shape = _buffer_shape(kmax, x)
    for c in numba.prange(bounds.shape[0] - 1):
        y = out[c]
        t = np.empty(shape, dtype=out.dtype)
        for b in range(bounds[c], bounds[c + 1]):
            kind, r0, m, c0, n = table[b, 0], table[b, 1], table[b, 2], table[b, 3], table[b, 4]
            k, off, mirror = table[b, 5], table[b, 6], table[b, 7]
            xr, yr, xc, yc = x[r0:r0 + m], y[r0:r0 + m], x[c0:c0 + n], y[c0:c0 + n]
            if kind == _DENSE:
                D = data[off:off + m * n]
                if mirror != 0:  # symmetric storage: both ways, whatever was asked
                    _rows_dot_axpy(D, m, n, xc, yr, xr, yc)
                elif transpose:
                    _rows_axpy(D, m, n, xr, yc)
                else:
                    _rows_dot(D, m, n, xc, yr)
                continue
            Ut, Vt = data[off:off + m * k], data[off + m * k:off + (m + n) * k]
            t0, t1 = t[0, :k], t[1, :k]
            t0[...] = 0.0
            if mirror != 0:
                # U Vᵀ xc into yr and V Uᵀ xr into yc in three sweeps: t0 = Vᵀ xc,
                # one sweep over Uᵀ for yr += U t0 and t1 = Uᵀ xr, then yc += V t1
                t1[...] = 0.0
                _rows_dot(Vt, k, n, xc, t0)
                _rows_dot_axpy(Ut, k, m, xr, t1, t0, yr)
                _rows_axpy(Vt, k, n, t1, yc)
            elif transpose:
                _rows_dot(Ut, k, m, xr, t0)
                _rows_axpy(Vt, k, n, t0, yc)
            else:
                _rows_dot(Vt, k, n, xc, t0)
                _rows_axpy(Ut, k, m, t0, yr)


class FlatBlocks:
    """Blocks of an H-matrix in one flat buffer, applied by compiled loops.

    The store is laid out first and filled block by block with :meth:`put`
    (the buffer is allocated once and its pages are touched only as blocks
    arrive, so a caller that drops each block after handing it over never
    holds two copies of the matrix); :meth:`from_blocks` does both at once.

    Parameters
    ----------
    layout : sequence of tuples
        ``(kind, row0, m, col0, n, k, mirror)`` per block: ``kind`` is
        ``"dense"`` (an ``(m, n)`` block; ``k`` ignored) or ``"lowrank"``
        (``F @ G.T`` with ``F`` of shape ``(m, k)`` and ``G`` of shape
        ``(n, k)``).  ``row0``/``col0`` place the block in the matrix; with
        ``mirror`` true it also stands for its transpose at ``(col0, row0)``
        (symmetric storage).
    shape : (int, int)
        Shape of the whole matrix.
    dtype : numpy dtype
        Floating dtype of the stored numbers.

    Raises
    ------
    ValueError
        If a block lies outside ``shape`` (or its mirror does), or, in
        :meth:`put`, its arrays do not have the shape its entry states.
    RuntimeError
        From :meth:`apply` while blocks are still missing.

    Notes
    -----
    ``apply`` costs one pass over the stored numbers: ``mn`` multiply-adds
    per dense block and ``k(m + n)`` per low-rank block, ``U (Vᵀ x)`` with the
    small intermediate ``Vᵀ x`` kept in a per-thread buffer; the factors are
    stored transposed so that every inner loop runs along a contiguous row.
    Blocks are split into ``numba.get_num_threads()`` chunks of equal work.

    Examples
    --------
    >>> import numpy as np
    >>> D = np.arange(6.0).reshape(2, 3)
    >>> store = FlatBlocks([("dense", 0, 2, 0, 3, 0, False)], (2, 3), np.float64)
    >>> store.put(0, D)
    >>> store.apply(np.ones((3, 1)), transpose=True).ravel().tolist()
    [3.0, 5.0, 7.0]
    """

    device = "cpu"

    def __init__(self, layout: Sequence[tuple], shape: tuple[int, int], dtype: Any) -> None:
        self.shape = (int(shape[0]), int(shape[1]))
        self.dtype = np.dtype(dtype)
        table = np.zeros((len(layout), 8), dtype=np.int64)
        off = 0
        for b, (kind, r0, m, c0, n, k, mirror) in enumerate(layout):
            if r0 < 0 or c0 < 0 or r0 + m > self.shape[0] or c0 + n > self.shape[1]:
                raise ValueError(f"block {b} at ({r0}, {c0}) of shape ({m}, {n}) lies outside {self.shape}")
            if mirror and (c0 + n > self.shape[0] or r0 + m > self.shape[1]):
                raise ValueError(f"mirrored block {b} at ({r0}, {c0}) has no room at ({c0}, {r0})")
            dense = kind == "dense"
            k = 0 if dense else int(k)
            table[b] = (_DENSE if dense else _LOWRANK, r0, m, c0, n, k, off, bool(mirror))
            off += m * n if dense else k * (m + n)
        self.data = np.empty(off, dtype=self.dtype)
        # blocks in row order keep each chunk's writes in a narrow band of y
        order = np.lexsort((table[:, _COL0], table[:, _ROW0])) if len(layout) else np.zeros(0, np.int64)
        self._where = np.empty(len(layout), dtype=np.int64)
        self._where[order] = np.arange(len(layout))
        self.table = np.ascontiguousarray(table[order])
        self._kmax = int(self.table[:, _K].max()) if len(layout) else 0
        self._bounds: dict[int, np.ndarray] = {}
        self._missing = np.ones(len(layout), dtype=bool)

    @classmethod
    def from_blocks(cls, blocks: Sequence[tuple], shape: tuple[int, int], dtype: Any) -> "FlatBlocks":
        """A filled store from ``(kind, row0, m, col0, n, F, G, mirror)`` per block.

        Examples
        --------
        >>> import numpy as np
        >>> U, V = np.ones((2, 1)), np.arange(3.0)[:, None]
        >>> store = FlatBlocks.from_blocks([("lowrank", 0, 2, 0, 3, U, V, False)], (2, 3), np.float64)
        >>> store.block(0).tolist()
        [[0.0, 1.0, 2.0], [0.0, 1.0, 2.0]]
        """
        layout = [(kind, r0, m, c0, n, 0 if kind == "dense" else F.shape[1], mirror)
                  for kind, r0, m, c0, n, F, G, mirror in blocks]
        store = cls(layout, shape, dtype)
        for b, blk in enumerate(blocks):
            store.put(b, blk[5], blk[6])
        return store

    def put(self, index: int, F: np.ndarray, G: np.ndarray | None = None) -> None:
        """Copy block ``index`` in: the dense ``F``, or the factors of ``F @ G.T``."""
        kind, _, m, _, n, k, off, _ = (int(v) for v in self.table[self._where[index]])
        if kind == _DENSE:
            if tuple(F.shape) != (m, n):
                raise ValueError(f"dense block {index} must have shape ({m}, {n}), got {tuple(F.shape)}")
            self.data[off:off + m * n].reshape(m, n)[...] = F
        else:
            if G is None or tuple(F.shape) != (m, k) or tuple(G.shape) != (n, k):
                got = (tuple(F.shape), None if G is None else tuple(G.shape))
                raise ValueError(f"low-rank block {index} needs factors of shapes ({m}, {k}) and ({n}, {k}), "
                                 f"got {got}")
            # stored as Uᵀ, Vᵀ: contiguous rows of length m and n
            self.data[off:off + m * k].reshape(k, m)[...] = F.T
            self.data[off + m * k:off + (m + n) * k].reshape(k, n)[...] = G.T
        self._missing[index] = False

    def _chunks(self) -> np.ndarray:
        threads = max(1, int(numba.get_num_threads()))
        if threads not in self._bounds:
            size = np.where(self.table[:, _KIND] == _DENSE, self.table[:, _M] * self.table[:, _N],
                            self.table[:, _K] * (self.table[:, _M] + self.table[:, _N]))
            size = size * (1 + self.table[:, _MIRROR])  # a mirrored block does twice the flops
            cum = np.cumsum(size + 16)  # + a per-block constant for the loop overhead
            total = cum[-1] if cum.size else 0
            cuts = np.searchsorted(cum, total * np.arange(1, threads) / threads, side="right")
            self._bounds[threads] = np.concatenate([[0], cuts, [len(cum)]]).astype(np.int64)
        return self._bounds[threads]

    def apply(self, x: np.ndarray, transpose: bool) -> np.ndarray:
        """``A @ x`` (or ``Aᵀ @ x``) for ``x`` of shape ``(n_in, r)``."""
        if self._missing.any():
            raise RuntimeError(f"{int(self._missing.sum())} blocks have not been put into the store")
        bounds = self._chunks()
        n_out = self.shape[1] if transpose else self.shape[0]
        dtype = np.result_type(self.dtype, x.dtype)
        chunks = bounds.shape[0] - 1
        if x.shape[1] == 1:
            out = np.zeros((chunks, n_out), dtype=dtype)
            _apply(self.data, self.table, bounds, self._kmax, np.ascontiguousarray(x[:, 0]),
                   bool(transpose), out)
            return np.sum(out, axis=0)[:, None]
        out = np.zeros((chunks, n_out, x.shape[1]), dtype=dtype)
        # Each of numba's threads calls BLAS on its blocks; a multi-threaded
        # BLAS inside them oversubscribes the cores (a 256 x 256 block times 64
        # columns took 8 ms instead of 0.17 ms, measured), so BLAS runs
        # single-threaded for the duration (about 15 µs to switch).
        if not _blas_pools:
            _blas_pools.append(ThreadpoolController())
        with _blas_pools[0].limit(limits=1, user_api="blas"):
            _apply(self.data, self.table, bounds, self._kmax, np.ascontiguousarray(x, dtype=dtype),
                   bool(transpose), out)
        return np.sum(out, axis=0)

    def block(self, index: int) -> np.ndarray:
        """Block ``index`` (in the order given) as a dense ``(m, n)`` array."""
        kind, _, m, _, n, k, off, _ = (int(v) for v in self.table[self._where[index]])
        if kind == _DENSE:
            return self.data[off:off + m * n].reshape(m, n)
        Ut = self.data[off:off + m * k].reshape(k, m)
        Vt = self.data[off + m * k:off + (m + n) * k].reshape(k, n)
        return Ut.T @ Vt

    @property
    def nbytes(self) -> int:
        """Bytes of the stored numbers and the block table."""
        return int(self.data.nbytes + self.table.nbytes + self._where.nbytes + self._missing.nbytes)
