r"""Compiled CPU kernels: H-matrix blocks applied by numba.

Part of :mod:`natgrad.hmatrix`, and one of the few modules outside
:mod:`natgrad.backend` that may name NumPy, numba and threadpoolctl.  It is
imported only through :func:`natgrad.hmatrix._store.compiled_block_store`,
which returns ``None`` when
numba or threadpoolctl (the ``numba`` extra installs both) is missing, the
arrays are not NumPy arrays, or the environment variable
``NATGRAD_DISABLE_NUMBA`` is set to a non-empty value other than ``0``;
:mod:`natgrad.hmatrix` then uses its pure array-API path (stacked, padded
matmuls).

Why a compiled path: an H-matrix matvec reads every stored number once and
does two flops with it, so every wasted byte and every instruction per
number counts (on a 20k kernel matrix the loops run at the same speed from
cache and from memory: they are bound by instructions).  The array-API
path pads blocks of nearly equal shape into stacks (extra bytes) and pays a
few Python-level operations per stack (more than a thousand stacks at
n = 10⁴ in 3-D).  Here every block is kept unpadded, in the arrays the
build made (no second copy of the matrix), and one compiled loop applies
them all, split into as many chunks of equal work as numba has threads;
each chunk accumulates into its own output, and the outputs are summed at
the end, so no two threads write to the same place and
the result does not depend on scheduling.

Examples
--------
>>> import numpy as np
>>> from natgrad.hmatrix._numba_store import FlatBlocks
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
from numba import types
from numba.extending import intrinsic, overload
from threadpoolctl import ThreadpoolController

__all__ = ["FlatBlocks"]

#: BLAS thread pools, to run them single-threaded inside the parallel loop
#: (created on first use; natgrad.backend has loaded SciPy's BLAS by then)
_blas_pools: list[ThreadpoolController] = []

#: the loops may be reassociated (vectorised sums); NaN/Inf keep their IEEE
#: meaning, so a NaN in x still propagates to the result
_FASTMATH = {"reassoc", "contract", "nsz"}

#: columns of the per-block table
_KIND, _ROW0, _M, _COL0, _N, _K, _SLOT, _MIRROR, _LOW, _ADDR, _ADDR2 = range(11)
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
# Rows are taken four at a time, so that each load of xs and each load and
# store of ys serves four rows and a dot product's final reduction is paid
# once per four rows.  The loops are bound by instructions, not by memory
# bandwidth (a 20k kernel matrix: 7.7 GB/s from cache, 7.3 GB/s from
# memory); four rows at a time made the three primitives 1.1-2.3x faster
# on 64 x 64 float32 blocks and on 16 x 1024 factors (measured).


@numba.njit(inline="always")
def _four(R, l, q):  # pragma: no cover - compiled
    return R[l * q:(l + 1) * q], R[(l + 1) * q:(l + 2) * q], R[(l + 2) * q:(l + 3) * q], R[(l + 3) * q:(l + 4) * q]


@numba.njit(inline="always")
def _add4(out, l, a0, a1, a2, a3):  # pragma: no cover - compiled
    out[l] += a0
    out[l + 1] += a1
    out[l + 2] += a2
    out[l + 3] += a3


def _rows_dot_vec(R, p, q, xs, out):  # pragma: no cover - compiled
    l = 0
    while l + 4 <= p:
        r0, r1, r2, r3 = _four(R, l, q)
        a0 = a1 = a2 = a3 = 0.0
        for j in range(q):
            v = xs[j]
            a0 += r0[j] * v
            a1 += r1[j] * v
            a2 += r2[j] * v
            a3 += r3[j] * v
        _add4(out, l, a0, a1, a2, a3)
        l += 4
    for i in range(l, p):
        row, acc = R[i * q:(i + 1) * q], 0.0
        for j in range(q):
            acc += row[j] * xs[j]
        out[i] += acc


def _rows_axpy_vec(R, p, q, coef, ys):  # pragma: no cover - compiled
    l = 0
    while l + 4 <= p:
        r0, r1, r2, r3 = _four(R, l, q)
        c0, c1, c2, c3 = coef[l], coef[l + 1], coef[l + 2], coef[l + 3]
        for j in range(q):
            ys[j] += r0[j] * c0 + r1[j] * c1 + r2[j] * c2 + r3[j] * c3
        l += 4
    for i in range(l, p):
        row, c = R[i * q:(i + 1) * q], coef[i]
        for j in range(q):
            ys[j] += row[j] * c


def _rows_dot_axpy_vec(R, p, q, xs, out, coef, ys):  # pragma: no cover - compiled
    l = 0
    while l + 4 <= p:
        r0, r1, r2, r3 = _four(R, l, q)
        c0, c1, c2, c3 = coef[l], coef[l + 1], coef[l + 2], coef[l + 3]
        a0 = a1 = a2 = a3 = 0.0
        for j in range(q):
            v, d0, d1, d2, d3 = xs[j], r0[j], r1[j], r2[j], r3[j]
            a0 += d0 * v
            a1 += d1 * v
            a2 += d2 * v
            a3 += d3 * v
            ys[j] += d0 * c0 + d1 * c1 + d2 * c2 + d3 * c3
        _add4(out, l, a0, a1, a2, a3)
        l += 4
    for i in range(l, p):
        row, acc, c = R[i * q:(i + 1) * q], 0.0, coef[i]
        for j in range(q):
            d = row[j]
            acc += d * xs[j]
            ys[j] += d * c
        out[i] += acc


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


@numba.njit(inline="always")
def _block(kind, m, n, k, mirror, A, B, xr, yr, xc, yc, t, transpose):  # pragma: no cover - compiled
    # one block: A is the dense block (row-major) or Uᵀ, B is Vᵀ (low-rank)
    if kind == _DENSE:
        if mirror != 0:  # symmetric storage: both ways, whatever was asked
            _rows_dot_axpy(A, m, n, xc, yr, xr, yc)
        elif transpose:
            _rows_axpy(A, m, n, xr, yc)
        else:
            _rows_dot(A, m, n, xc, yr)
        return
    t0, t1 = t[0, :k], t[1, :k]
    t0[...] = 0.0
    if mirror != 0:
        # U Vᵀ xc into yr and V Uᵀ xr into yc in three sweeps: t0 = Vᵀ xc,
        # one sweep over Uᵀ for yr += U t0 and t1 = Uᵀ xr, then yc += V t1
        t1[...] = 0.0
        _rows_dot(B, k, n, xc, t0)
        _rows_dot_axpy(A, k, m, xr, t1, t0, yr)
        _rows_axpy(B, k, n, t1, yc)
    elif transpose:
        _rows_dot(A, k, m, xr, t0)
        _rows_axpy(B, k, n, t0, yc)
    else:
        _rows_dot(B, k, n, xc, t0)
        _rows_axpy(A, k, m, t0, yr)


@intrinsic
def _as_pointer(typingctx, address):  # pragma: no cover - compile time
    """An integer address as a void pointer, for ``numba.carray``."""

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(types.voidptr))

    return types.voidptr(types.int64), codegen


@numba.njit(parallel=True, cache=True, fastmath=_FASTMATH)
def _apply(table, bounds, kmax, x, transpose, out, wide, narrow):  # pragma: no cover - compiled
    # x: (n_in,) or (n_in, r); out: (chunks, n_out[, r]); chunk c applies
    # blocks bounds[c]:bounds[c + 1] into out[c].  A block's numbers are read
    # in place from the addresses in its table row (the store keeps the
    # arrays alive), as ``wide`` (the matrix dtype) or ``narrow`` (float32)
    # numbers; the two arguments are zero-length arrays that carry the dtypes.
    # (Addresses rather than a numba typed list of the arrays: no list to
    # build on first use, no reference counting per block.)
    shape = _buffer_shape(kmax, x)
    for c in numba.prange(bounds.shape[0] - 1):
        y = out[c]
        t = np.empty(shape, dtype=out.dtype)
        for b in range(bounds[c], bounds[c + 1]):
            kind, r0, m, c0, n = table[b, 0], table[b, 1], table[b, 2], table[b, 3], table[b, 4]
            k, mirror = table[b, 5], table[b, 7]
            xr, yr, xc, yc = x[r0:r0 + m], y[r0:r0 + m], x[c0:c0 + n], y[c0:c0 + n]
            size_a, size_b = (m * n, 0) if kind == _DENSE else (k * m, k * n)
            a, b2 = _as_pointer(table[b, 9]), _as_pointer(table[b, 10])
            if table[b, 8] != 0:
                A, B = numba.carray(a, size_a, narrow.dtype), numba.carray(b2, size_b, narrow.dtype)
                _block(kind, m, n, k, mirror, A, B, xr, yr, xc, yc, t, transpose)
            else:
                A, B = numba.carray(a, size_a, wide.dtype), numba.carray(b2, size_b, wide.dtype)
                _block(kind, m, n, k, mirror, A, B, xr, yr, xc, yc, t, transpose)


class FlatBlocks:
    """Blocks of an H-matrix kept unpadded, applied by compiled loops.

    The store is laid out first and filled block by block with :meth:`put`,
    which keeps the block's arrays as they are (a copy only when they are not
    laid out as the loops read them: row-major, low-rank factors
    transposed).  A caller that drops its own reference after handing a
    block over never holds two copies of the matrix, and no big buffer is
    allocated while the blocks still occupy memory; :meth:`from_blocks` does
    both steps at once.

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
        Floating dtype of the matrix (float32 or float64).  With float64,
        a block handed over in float32 is kept in float32 (mixed-precision
        storage); products are accumulated in ``dtype``.

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
    A float32 block is read as float32 and multiplied in ``dtype``, so the
    product adds no rounding beyond the block's own.

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
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype}")
        table = np.zeros((len(layout), 11), dtype=np.int64)
        for b, (kind, r0, m, c0, n, k, mirror) in enumerate(layout):
            if r0 < 0 or c0 < 0 or r0 + m > self.shape[0] or c0 + n > self.shape[1]:
                raise ValueError(f"block {b} at ({r0}, {c0}) of shape ({m}, {n}) lies outside {self.shape}")
            if mirror and (c0 + n > self.shape[0] or r0 + m > self.shape[1]):
                raise ValueError(f"mirrored block {b} at ({r0}, {c0}) has no room at ({c0}, {r0})")
            dense = kind == "dense"
            table[b] = (_DENSE if dense else _LOWRANK, r0, m, c0, n, 0 if dense else int(k), -1,
                        bool(mirror), 0, 0, 0)
        # blocks in row order keep each chunk's writes in a narrow band of y
        order = np.lexsort((table[:, _COL0], table[:, _ROW0])) if len(layout) else np.zeros(0, np.int64)
        self._where = np.empty(len(layout), dtype=np.int64)
        self._where[order] = np.arange(len(layout))
        self.table = np.ascontiguousarray(table[order])
        self._kmax = int(self.table[:, _K].max()) if len(layout) else 0
        self._bounds: dict[int, np.ndarray] = {}
        self._missing = np.ones(len(layout), dtype=bool)
        # the blocks' 1-D arrays, in the matrix dtype and in float32; the
        # table holds their addresses, these lists keep them alive
        self._arrays: dict[bool, list[np.ndarray]] = {False: [], True: []}
        self._data_bytes = 0

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

    def _keep(self, M: np.ndarray) -> tuple[bool, np.ndarray]:
        """``M`` as a row-major 1-D array in a stored dtype (float32 kept as
        float32 in a float64 store), and whether that is the narrow dtype."""
        low = M.dtype == np.float32 and self.dtype == np.float64
        flat = np.ascontiguousarray(M, dtype=np.float32 if low else self.dtype).reshape(-1)
        owner = flat
        while isinstance(owner.base, np.ndarray):
            owner = owner.base
        if owner.nbytes > flat.nbytes:  # a view into something larger: keep only the block
            flat = flat.copy()
        return low, flat

    def put(self, index: int, F: np.ndarray, G: np.ndarray | None = None) -> None:
        """Hand block ``index`` over: the dense ``F``, or the factors of ``F @ G.T``.

        A float32 block in a float64 store stays float32 (both factors of a
        low-rank block must then be float32); any other dtype is converted
        to the store's.  The arrays are kept without a copy when they are
        row-major (the transposed factors ``F.T`` and ``G.T`` for a low-rank
        block), so they must not be written to afterwards.
        """
        row = self._where[index]
        kind, _, m, _, n, k = (int(v) for v in self.table[row, :_SLOT])
        if self.table[row, _SLOT] >= 0:
            raise ValueError(f"block {index} has already been put into the store")
        if kind == _DENSE:
            if tuple(F.shape) != (m, n):
                raise ValueError(f"dense block {index} must have shape ({m}, {n}), got {tuple(F.shape)}")
            low, flat = self._keep(F)
            parts = [flat]
        else:
            if G is None or tuple(F.shape) != (m, k) or tuple(G.shape) != (n, k):
                got = (tuple(F.shape), None if G is None else tuple(G.shape))
                raise ValueError(f"low-rank block {index} needs factors of shapes ({m}, {k}) and ({n}, {k}), "
                                 f"got {got}")
            if (F.dtype == np.float32) != (G.dtype == np.float32):
                F, G = F.astype(self.dtype), G.astype(self.dtype)  # one dtype per block
            # kept as Uᵀ, Vᵀ: contiguous rows of length m and n
            (low, Ut), (_, Vt) = self._keep(F.T), self._keep(G.T)
            parts = [Ut, Vt]
        arrays = self._arrays[low]
        self.table[row, _SLOT], self.table[row, _LOW] = len(arrays), low
        self.table[row, _ADDR] = parts[0].ctypes.data
        self.table[row, _ADDR2] = parts[-1].ctypes.data
        arrays.extend(parts)
        self._data_bytes += sum(p.nbytes for p in parts)
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
        dtypes = (np.empty(0, self.dtype), np.empty(0, np.float32))
        n_out = self.shape[1] if transpose else self.shape[0]
        dtype = np.result_type(self.dtype, x.dtype)
        chunks = bounds.shape[0] - 1
        if x.shape[1] == 1:
            out = np.zeros((chunks, n_out), dtype=dtype)
            _apply(self.table, bounds, self._kmax, np.ascontiguousarray(x[:, 0]), bool(transpose), out,
                   *dtypes)
            return np.sum(out, axis=0)[:, None]
        out = np.zeros((chunks, n_out, x.shape[1]), dtype=dtype)
        # Each of numba's threads calls BLAS on its blocks; a multi-threaded
        # BLAS inside them oversubscribes the cores (a 256 x 256 block times 64
        # columns took 8 ms instead of 0.17 ms, measured), so BLAS runs
        # single-threaded for the duration (about 15 µs to switch).
        if not _blas_pools:
            _blas_pools.append(ThreadpoolController())
        with _blas_pools[0].limit(limits=1, user_api="blas"):
            _apply(self.table, bounds, self._kmax, np.ascontiguousarray(x, dtype=dtype), bool(transpose), out,
                   *dtypes)
        return np.sum(out, axis=0)

    def block(self, index: int) -> np.ndarray:
        """Block ``index`` (in the order given) as a dense ``(m, n)`` array of the store's dtype."""
        kind, _, m, _, n, k, slot, _, low = (int(v) for v in self.table[self._where[index], :_ADDR])
        if slot < 0:
            raise RuntimeError(f"block {index} has not been put into the store")
        arrays = self._arrays[bool(low)]
        if kind == _DENSE:
            return arrays[slot].reshape(m, n).astype(self.dtype)
        Ut = arrays[slot].reshape(k, m).astype(self.dtype)
        Vt = arrays[slot + 1].reshape(k, n).astype(self.dtype)
        return Ut.T @ Vt

    def stored_dtype(self, index: int) -> np.dtype:
        """The dtype block ``index`` is kept in (float32 or the store's dtype).

        Examples
        --------
        >>> import numpy as np
        >>> D = np.ones((2, 2), dtype=np.float32)
        >>> store = FlatBlocks.from_blocks([("dense", 0, 2, 0, 2, D, None, False)], (2, 2), np.float64)
        >>> store.stored_dtype(0), store.block(0).dtype
        (dtype('float32'), dtype('float64'))
        """
        return np.dtype(np.float32) if self.table[self._where[index], _LOW] else self.dtype

    @property
    def nbytes(self) -> int:
        """Bytes of the stored numbers and the block table."""
        return int(self._data_bytes + self.table.nbytes + self._where.nbytes + self._missing.nbytes)
