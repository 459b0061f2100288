r"""Block cluster trees: the partition of a matrix into admissible (low-rank)
and inadmissible (small dense) blocks.

A block ``t × s`` pairs a row cluster ``t`` with a column cluster ``s``.
Starting from ``root × root`` a block is

* an *admissible leaf* when the admissibility condition holds -- it will be
  stored in low-rank form;
* an *inadmissible (dense) leaf* when it fails and both clusters are leaves;
* otherwise split into the products of the children (only the non-leaf side
  is split when one side is already a leaf).

Two conditions:

* ``"standard"`` (Hackbusch 2015, §5.2):
  ``min(diam t, diam s) ≤ η · dist(t, s)`` with ``dist > 0``, measured on the
  clusters' bounding boxes.
* ``"weak"`` (HODLR-like, for matrices without geometry): every block off
  the block diagonal is admissible; a block is on the diagonal when the
  shorter of the two clusters' root paths is a prefix of the longer.

References
----------
W. Hackbusch, *Hierarchical Matrices: Algorithms and Analysis*, Springer 2015.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

from .. import validation
from .cluster import Cluster, ClusterTree

__all__ = ["Block", "BlockTree", "admissible"]


@dataclass(eq=False)
class Block:
    """One node ``rows × cols`` of a :class:`BlockTree`.

    Blocks are made by :class:`BlockTree`; users read them (``bt.leaves``,
    ``bt.admissible_leaves``, ``bt.dense_leaves``) rather than build them.

    Parameters
    ----------
    rows : Cluster
        The row cluster ``t``.
    cols : Cluster
        The column cluster ``s``.
    admissible : bool, default False
        True for an admissible leaf (stored in low-rank form).
    children : tuple of Block, default ()
        The sub-blocks, row-major over the children of ``rows`` and ``cols``
        (only the non-leaf side is split), or ``()`` for a leaf.

    Notes
    -----
    A leaf is admissible (low rank) or inadmissible (dense, both clusters
    leaves); an inner block has children.  Its entries are the permuted rows
    ``rows.start:rows.stop`` and columns ``cols.start:cols.stop`` of the
    matrix.  The fields are not validated.

    Examples
    --------
    >>> from natgrad.hmatrix import BlockTree, ClusterTree
    >>> t = ClusterTree.from_indices(16, leaf_size=4)
    >>> bt = BlockTree(t, t, admissibility="weak")
    >>> b = bt.root.children[1]
    >>> b
    Block(0:8 x 8:16, lowrank)
    >>> b.shape, b.is_leaf, b.admissible, bt.root.splittable
    ((8, 8), True, True, True)
    """

    rows: Cluster
    cols: Cluster
    admissible: bool = False
    children: tuple["Block", ...] = field(default_factory=tuple)

    @property
    def is_leaf(self) -> bool:
        """True for a leaf of the block tree."""
        return not self.children

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows.size, cols.size)``."""
        return (self.rows.size, self.cols.size)

    @property
    def splittable(self) -> bool:
        """True when at least one of the two clusters has children."""
        return not (self.rows.is_leaf and self.cols.is_leaf)

    def __repr__(self) -> str:
        kind = "lowrank" if self.admissible else ("dense" if self.is_leaf else "split")
        return (f"Block({self.rows.start}:{self.rows.stop} x "
                f"{self.cols.start}:{self.cols.stop}, {kind})")


def admissible(t: Cluster, s: Cluster, eta: float, kind: str = "standard") -> bool:
    """The admissibility condition for the block ``t × s``.

    Parameters
    ----------
    t, s : Cluster
    eta : float
        Admissibility parameter η > 0 (ignored by ``kind="weak"``).
    kind : {"standard", "weak"}

    Returns
    -------
    bool

    Raises
    ------
    AttributeError
        If ``t`` or ``s`` is not a :class:`Cluster`.  Nothing else is
        checked here (:class:`BlockTree` validates its arguments): any
        ``kind`` other than ``"weak"`` means ``"standard"``, and an
        ``eta`` ≤ 0 admits no block.

    Notes
    -----
    Standard: ``min(diam t, diam s) ≤ η dist(t, s)`` and ``dist(t, s) > 0``
    (Hackbusch 2015, (5.9)).  Weak: the clusters' root paths diverge (the
    block lies off the block diagonal).

    Examples
    --------
    >>> from natgrad.hmatrix import ClusterTree
    >>> t = ClusterTree.from_indices(16, leaf_size=4)
    >>> a, b = t.root.children
    >>> admissible(a, b, 1.0), admissible(a, b, 1.0, "weak")
    (False, True)
    """
    if kind == "weak":
        k = min(len(t.path), len(s.path))
        return t.path[:k] != s.path[:k]
    dist = t.distance(s)
    return dist > 0.0 and min(t.diameter, s.diameter) <= eta * dist


class BlockTree:
    """The block cluster tree of ``rows × cols``.

    Parameters
    ----------
    rows, cols : ClusterTree
        Row and column cluster trees (the same tree for a kernel matrix on
        one point set).
    eta : float
        Admissibility parameter η > 0; larger η admits more (and larger)
        low-rank blocks.
    admissibility : {"standard", "weak"}

    Attributes
    ----------
    root : Block
    leaves : list of Block
        All leaves in depth-first order; ``admissible_leaves`` and
        ``dense_leaves`` split them by kind.

    Raises
    ------
    ValueError
        If ``eta`` ≤ 0 or ``admissibility`` is unknown.
    TypeError
        If ``rows``/``cols`` are not cluster trees.

    Notes
    -----
    For quasi-uniform points the number of blocks per cluster is bounded by a
    constant (the sparsity constant ``C_sp``), which gives the ``O(n log n)``
    storage of H-matrices (Hackbusch 2015, Lemma 6.13).

    Examples
    --------
    >>> import numpy as np
    >>> from natgrad.hmatrix import ClusterTree, BlockTree
    >>> t = ClusterTree.from_points(np.linspace(0, 1, 64)[:, None], leaf_size=8)
    >>> bt = BlockTree(t, t, eta=1.0)
    >>> sum(b.rows.size * b.cols.size for b in bt.leaves) == 64 * 64
    True
    >>> len(bt.admissible_leaves) > 0
    True
    """

    def __init__(
        self,
        rows: ClusterTree,
        cols: ClusterTree,
        *,
        eta: float = 1.0,
        admissibility: str = "standard",
    ) -> None:
        for name, tree in (("rows", rows), ("cols", cols)):
            if not isinstance(tree, ClusterTree):
                raise TypeError(f"{name} must be a ClusterTree, got {type(tree).__name__}")
        self.eta = validation.positive(eta, "eta")
        if admissibility not in ("standard", "weak"):
            raise ValueError(
                f"admissibility must be 'standard' or 'weak', got {admissibility!r}"
            )
        if admissibility == "standard" and len(rows.root.lo) != len(cols.root.lo):
            raise ValueError(
                "rows and cols have points of different dimensions "
                f"({len(rows.root.lo)} and {len(cols.root.lo)}); use admissibility='weak'"
            )
        self.rows, self.cols, self.admissibility = rows, cols, admissibility
        self.root = self._build(rows.root, cols.root)
        self.leaves = [b for b in self if b.is_leaf]
        self.admissible_leaves = [b for b in self.leaves if b.admissible]
        self.dense_leaves = [b for b in self.leaves if not b.admissible]

    def _build(self, t: Cluster, s: Cluster) -> Block:
        block = Block(t, s)
        if admissible(t, s, self.eta, self.admissibility):
            block.admissible = True
        elif block.splittable:
            block.children = tuple(self._build(a, b) for a, b in split_pairs(t, s))
        return block

    def __iter__(self) -> Iterator[Block]:
        stack = [self.root]
        while stack:
            b = stack.pop()
            yield b
            stack.extend(reversed(b.children))

    def __repr__(self) -> str:
        return (f"<BlockTree {self.rows.n}x{self.cols.n} eta={self.eta} "
                f"{self.admissibility}: {len(self.admissible_leaves)} low-rank, "
                f"{len(self.dense_leaves)} dense>")


def split_pairs(t: Cluster, s: Cluster) -> list[tuple[Cluster, Cluster]]:
    """The child blocks of ``t × s`` (only the non-leaf side is split), row-major."""
    tc = t.children or (t,)
    sc = s.children or (s,)
    return [(a, b) for a in tc for b in sc]
