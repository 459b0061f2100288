"""Batched, scatter-free application of a set of blocks to a vector or block.

Blocks of (nearly) equal shape are zero-padded to a common bucket shape and
stacked, so one stacked matmul applies a whole group (GPU-friendly, and few
Python-level operations on the CPU).  Each block's output rows land in one
flat contribution array ``Z``; a precomputed ``(n_out, c_max)`` index matrix
gathers, for every output row, the rows of ``Z`` that contribute to it (padded
with a zero row), and a sum over the second axis finishes the product.  No
item assignment or scatter-add is needed, so the same code runs on JAX.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import backend

__all__ = ["Group", "Plan", "StackedBlocks", "bucket", "array_nbytes"]

#: products with many right-hand sides run in column chunks whose
#: intermediates (gathered inputs, contributions, the assembly) stay below
#: about this many bytes: their size is (rows gathered) × (columns)
_WORK_BYTES = 1 << 30


def bucket(v: int) -> int:
    """Round ``v`` up to a bucket size (at most ~12% padding, few buckets)."""
    if v <= 8:
        return v
    step = 1 << (v.bit_length() - 4)
    return -(-v // step) * step


@dataclass
class Group:
    """Stacked blocks of one kind and one bucket shape.

    ``lowrank``: ``A`` is ``(B, mb, rb)`` and ``B_`` is ``(B, nb, rb)`` with the
    block ``A[b] @ B_[b].T``; ``dense``: ``A`` is ``(B, mb, nb)``.
    ``row0``, ``col0``, ``m``, ``n``: per-block start and true size (host ints).
    ``mirror``: every block also stands for its transpose at ``(col0, row0)``
    (symmetric H-matrices store one triangle).
    """

    kind: str
    A: Any
    B_: Any
    row0: list[int]
    col0: list[int]
    m: list[int]
    n: list[int]
    mirror: bool = False

    @property
    def count(self) -> int:
        return len(self.row0)

    def nbytes(self, xp: Any) -> int:
        return sum(array_nbytes(xp, a) for a in (self.A, self.B_) if a is not None)


class Plan:
    """Precomputed gather indices applying groups, each as is or transposed.

    ``parts`` lists ``(group, transposed)`` pairs; a group may appear twice
    (once each way) for mirrored blocks.
    """

    def __init__(self, xp: Any, device: Any, parts: list[tuple[Group, bool]], n_out: int) -> None:
        self.xp, self.parts, self.n_out = xp, parts, n_out
        self.in_idx: list[Any] = []
        outs = []
        for g, transpose in parts:
            A = g.A
            mb = A.shape[1]
            nb = g.B_.shape[1] if g.kind == "lowrank" else A.shape[2]
            in0, in_len, out0, out_len, in_pad, out_pad = (
                (g.row0, g.m, g.col0, g.n, mb, nb) if transpose else (g.col0, g.n, g.row0, g.m, nb, mb)
            )
            self.in_idx.append(_ranges(xp, device, in0, in_len, in_pad, fill=0))
            outs.append(_ranges(xp, device, out0, out_len, out_pad, fill=n_out))
        out = xp.concat(outs) if len(outs) > 1 else outs[0]
        total = out.shape[0]
        order = xp.argsort(out, stable=True)
        sorted_out = xp.take(out, order)
        rows = xp.arange(n_out, device=device)
        first = xp.searchsorted(sorted_out, rows, side="left")
        count = xp.searchsorted(sorted_out, rows, side="right") - first
        c_max = max(backend.to_int(xp.max(count)), 1)
        j = xp.arange(c_max, device=device)
        pos = xp.clip(first[:, None] + j[None, :], max=total - 1)
        gathered = xp.reshape(xp.take(order, xp.reshape(pos, (-1,))), (n_out, c_max))
        # index `total` is the zero row appended to the contributions
        self.assemble = xp.reshape(xp.where(j[None, :] < count[:, None], gathered, total), (-1,))
        self.c_max = c_max
        #: rows of intermediates per right-hand side
        self.work_rows = sum(int(i.shape[0]) for i in self.in_idx) + total + 1 + n_out * c_max

    def apply(self, x: Any) -> Any:
        """``y = Σ_blocks block @ x[cols]`` placed at the block rows; x is (n_in, k)."""
        xp = self.xp
        k = x.shape[1]
        chunk = max(1, _WORK_BYTES // (self.work_rows * array_nbytes(xp, x[:1, :1])))
        if k > chunk:
            return xp.concat([self._apply(x[:, j:min(j + chunk, k)]) for j in range(0, k, chunk)], axis=1)
        return self._apply(x)

    def _apply(self, x: Any) -> Any:
        xp = self.xp
        k = x.shape[1]
        parts = []
        for (g, transpose), idx in zip(self.parts, self.in_idx):
            nb_in = idx.shape[0] // g.count
            xs = xp.reshape(xp.take(x, idx, axis=0), (g.count, nb_in, k))
            # a group stored in a narrower dtype is widened for its product
            # (not every library multiplies mixed dtypes)
            A, B = (g.A, g.B_) if g.A.dtype == x.dtype else (
                xp.astype(g.A, x.dtype), None if g.B_ is None else xp.astype(g.B_, x.dtype))
            if g.kind == "lowrank":
                left, right = (B, A) if transpose else (A, B)
                z = left @ (xp.matrix_transpose(right) @ xs)
            else:
                z = (xp.matrix_transpose(A) if transpose else A) @ xs
            parts.append(xp.reshape(z, (-1, k)))
        parts.append(xp.zeros((1, k), dtype=x.dtype, device=backend.device(x)))
        Z = xp.concat(parts, axis=0)
        Y = xp.reshape(xp.take(Z, self.assemble, axis=0), (self.n_out, self.c_max, k))
        return xp.sum(Y, axis=1)

    def nbytes(self) -> int:
        return sum(array_nbytes(self.xp, a) for a in [*self.in_idx, self.assemble])


class StackedBlocks:
    """The array-API block store: blocks padded into stacks, applied by :class:`Plan`.

    ``blocks`` holds ``(kind, row0, m, col0, n, F, G, mirror)`` per block, as
    for :class:`natgrad.hmatrix._numba_store.FlatBlocks` (the compiled store with
    the same interface): a dense ``(m, n)`` block ``F``, or the low-rank
    block ``F @ G.T``; with ``mirror`` the block also stands for its
    transpose at ``(col0, row0)``.  The stacked copies are the only ones kept.
    ``dtype`` is the matrix's: blocks may be stored narrower (mixed
    precision) and are widened to it for products.  A product with many
    columns runs in column chunks, so that its intermediates, which grow
    with the number of rows gathered times the number of columns, stay
    below about 1 GiB (at n = 20k with 2000 columns they would take over
    20 GB at once).
    """

    def __init__(self, xp: Any, blocks: list[tuple], shape: tuple[int, int], dtype: Any) -> None:
        self.xp, self.shape, self.dtype = xp, shape, dtype
        buckets: dict[tuple[str, bool, int, int, int, str], list[int]] = {}
        for i, (kind, _, m, _, n, F, _, mirror) in enumerate(blocks):
            rb = bucket(F.shape[1]) if kind == "lowrank" else 0
            # blocks of different storage dtypes (mixed precision) stack apart
            key = (kind, bool(mirror), bucket(m), bucket(n), rb, str(F.dtype))
            buckets.setdefault(key, []).append(i)
        self.groups: list[Group] = []
        self._where: list[tuple[int, int]] = [(0, 0)] * len(blocks)
        for key in sorted(buckets):
            kind, mirror = key[0], key[1]
            members = [blocks[i] for i in buckets[key]]
            # pad to the largest block actually in the bucket, not the bucket size
            mb, nb = max(b[2] for b in members), max(b[4] for b in members)
            if kind == "lowrank":
                rb = max(b[5].shape[1] for b in members)
                A = backend.stack_padded([b[5] for b in members], mb, rb)
                B = backend.stack_padded([b[6] for b in members], nb, rb)
            else:
                A, B = backend.stack_padded([b[5] for b in members], mb, nb), None
            for slot, i in enumerate(buckets[key]):
                self._where[i] = (len(self.groups), slot)
            self.groups.append(Group(kind, A, B, [b[1] for b in members], [b[3] for b in members],
                                     [b[2] for b in members], [b[4] for b in members], mirror))
        self.device = backend.device(self.groups[0].A) if self.groups else None
        # the forward plan is built now (its indices are part of the storage);
        # the transposed one on first use
        self._plans: dict[bool, Plan] = {}
        if self.groups:
            self._plans[False] = self._plan(False)

    def _plan(self, transpose: bool) -> Plan:
        parts = [(g, transpose) for g in self.groups]
        parts += [(g, not transpose) for g in self.groups if g.mirror]
        return Plan(self.xp, self.device, parts, self.shape[1] if transpose else self.shape[0])

    def apply(self, x: Any, transpose: bool) -> Any:
        """``A @ x`` (or ``Aᵀ @ x``) for ``x`` of shape ``(n_in, k)``."""
        if not self.groups:
            n_out = self.shape[1] if transpose else self.shape[0]
            return self.xp.zeros((n_out, x.shape[1]), dtype=x.dtype, device=backend.device(x))
        if transpose not in self._plans:
            self._plans[transpose] = self._plan(transpose)
        return self._plans[transpose].apply(x)

    def block(self, index: int) -> Any:
        """Block ``index`` (in the order given) as a dense ``(m, n)`` array of the matrix dtype."""
        xp = self.xp
        gi, slot = self._where[index]
        g = self.groups[gi]
        m, n = g.m[slot], g.n[slot]
        if g.kind == "dense":
            return xp.astype(g.A[slot, :m, :n], self.dtype, copy=False)
        F = xp.astype(g.A[slot, :m, :], self.dtype, copy=False)
        return F @ xp.matrix_transpose(xp.astype(g.B_[slot, :n, :], self.dtype, copy=False))

    @property
    def nbytes(self) -> int:
        """Bytes of the stacks (with padding) and of the forward plan's indices."""
        total = sum(g.nbytes(self.xp) for g in self.groups)
        if self.groups:
            total += self._plans[False].nbytes()
        return total


def array_nbytes(xp: Any, a: Any) -> int:
    """Bytes held by the data of an array (from its dtype's bit width)."""
    if xp.isdtype(a.dtype, ("real floating", "complex floating")):
        bits = xp.finfo(a.dtype).bits * (2 if xp.isdtype(a.dtype, "complex floating") else 1)
    else:
        bits = xp.iinfo(a.dtype).bits
    size = 1
    for s in a.shape:
        size *= int(s)
    return size * bits // 8



def _ranges(xp: Any, device: Any, start: list[int], length: list[int], pad: int, fill: int) -> Any:
    """Flattened ``(B, pad)`` indices ``start[b] + j`` for ``j < length[b]``, else ``fill``."""
    s = xp.asarray(start, device=device)[:, None]
    ln = xp.asarray(length, device=device)[:, None]
    j = xp.arange(pad, device=device)[None, :]
    return xp.reshape(xp.where(j < ln, s + j, fill), (-1,))
