r"""Cluster trees: a hierarchy of index sets with bounding boxes.

A cluster tree splits the indices ``0..n-1`` recursively into two halves until
each leaf holds at most ``leaf_size`` indices.  The indices of every cluster
are contiguous in one permuted order, kept by the tree (``perm``), so a cluster
is just a range ``start:stop`` of permuted positions.  Users never see the
permutation: :class:`~natgrad.hmatrix.HMatrix` applies and undoes it.

Three ways to build one:

* :meth:`ClusterTree.from_points` -- geometry: split along the principal axis
  at the median (``split="pca"``, balanced) or bisect the bounding box along
  its longest side (``split="bisect"``, the classical geometric split).
* :meth:`ClusterTree.from_indices` -- no geometry: halve index ranges; the
  "coordinate" of an index is the index itself.
* :meth:`ClusterTree.from_matrix` -- data-driven, for matrices without
  geometry (weight matrices): rows (or columns) get coordinates from a cheap
  randomized low-rank embedding of the matrix, ``A ≈ U diag(s) Vᵀ``, row ``i``
  at ``U[i, :dim] * s[:dim]`` and column ``j`` at ``V[j, :dim] * s[:dim]``.
  Rows whose projections on the dominant singular directions agree land in
  one cluster, so a block of related rows and columns is close to a product
  of a few dominant directions plus a small remainder, which is what low-rank
  blocks compress.

The tree structure (ranges, boxes) is host-side Python; the permutation and
the permuted points are arrays of the input's namespace and device.

References
----------
W. Hackbusch, *Hierarchical Matrices: Algorithms and Analysis*, Springer
2015, ch. 5 (cluster trees, bounding boxes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterator

from .. import backend, validation

__all__ = ["Cluster", "ClusterTree", "spectral_coordinates"]


@dataclass(eq=False)
class Cluster:
    """One node of a :class:`ClusterTree`: the permuted index range
    ``start:stop`` and its axis-aligned bounding box ``[lo, hi]``.

    ``path`` is the sequence of child numbers from the root (0 = first half),
    used by weak admissibility to tell diagonal from off-diagonal blocks.
    Clusters are made by the :class:`ClusterTree` constructors; building one
    by hand is only needed for tests or custom trees.

    Parameters
    ----------
    start, stop : int
        The cluster holds the permuted positions ``start, ..., stop - 1``.
    lo, hi : tuple of float
        Lower and upper corners of the bounding box, one entry per
        coordinate (``d`` entries for points, one for an index range).
    level : int, default 0
        Depth in the tree (the root has level 0).
    path : tuple of int, default ()
        Child numbers from the root to this cluster (``len(path) == level``).
    children : tuple of Cluster, default ()
        The two sub-clusters, or ``()`` for a leaf.

    Notes
    -----
    The geometric queries work on the bounding boxes, not on the points:
    ``diameter = ‖hi − lo‖₂`` and ``distance(t, s) = ‖g‖₂`` with
    ``g_k = max(s.lo[k] − t.hi[k], t.lo[k] − s.hi[k], 0)``, the Euclidean
    distance of the two boxes (0 when they overlap or touch).  A box's
    diameter is at least, and the distance of two boxes at most, that of
    the point sets inside, so admissibility tested on boxes implies it for
    the points (Hackbusch 2015, §5.2).  Everything here is host-side Python
    floats: no device synchronisation.  The fields are not validated.

    Examples
    --------
    >>> from natgrad.hmatrix import Cluster
    >>> a = Cluster(0, 4, (0.0, 0.0), (3.0, 4.0))
    >>> b = Cluster(4, 6, (6.0, 0.0), (7.0, 1.0))
    >>> a.size, a.is_leaf, a.diameter, a.distance(b)
    (4, True, 5.0, 3.0)
    """

    start: int
    stop: int
    lo: tuple[float, ...]
    hi: tuple[float, ...]
    level: int = 0
    path: tuple[int, ...] = ()
    children: tuple["Cluster", ...] = field(default_factory=tuple)

    @property
    def size(self) -> int:
        """Number of indices in the cluster."""
        return self.stop - self.start

    @property
    def is_leaf(self) -> bool:
        """True when the cluster has no children."""
        return not self.children

    @property
    def diameter(self) -> float:
        """Euclidean diameter of the bounding box."""
        return math.sqrt(sum((h - l) ** 2 for l, h in zip(self.lo, self.hi)))

    def distance(self, other: "Cluster") -> float:
        """Euclidean distance between the bounding boxes of two clusters."""
        d2 = 0.0
        for l1, h1, l2, h2 in zip(self.lo, self.hi, other.lo, other.hi):
            gap = max(l2 - h1, l1 - h2, 0.0)
            d2 += gap * gap
        return math.sqrt(d2)

    def contact(self, other: "Cluster", share: float = 0.1) -> int:
        """Coordinates along which the two bounding boxes overlap by more
        than ``share`` of the narrower box's extent there.

        Of two neighbouring boxes in a 3-D volume, 2 for boxes that share a
        face, 1 for an edge and 0 for a corner (or boxes apart): the
        H-matrix build pools its near-field rank tests by this count, since
        the interaction of two boxes compresses the worse the larger their
        contact (see :class:`~natgrad.hmatrix.HMatrix`).  A coordinate in
        which either box is flat does not count.

        Parameters
        ----------
        other : Cluster
            The other cluster, with as many coordinates.
        share : float, default 0.1
            The overlap along a coordinate must exceed this share of the
            narrower box's extent along it.

        Returns
        -------
        int
            The number of such coordinates, from 0 to the dimension.

        Examples
        --------
        >>> a = Cluster(0, 4, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
        >>> face = Cluster(4, 8, (1.0, 0.0, 0.0), (2.0, 1.0, 1.0))
        >>> edge = Cluster(8, 9, (1.0, 1.0, 0.0), (2.0, 2.0, 1.0))
        >>> a.contact(face), a.contact(edge), a.contact(Cluster(9, 10, (1.0, 1.0, 1.0), (2.0, 2.0, 2.0)))
        (2, 1, 0)
        """
        count = 0
        for l1, h1, l2, h2 in zip(self.lo, self.hi, other.lo, other.hi):
            if min(h1, h2) - max(l1, l2) > share * min(h1 - l1, h2 - l2):
                count += 1
        return count

    def __repr__(self) -> str:
        return f"Cluster({self.start}:{self.stop}, level={self.level})"


def _host_floats(x: Any) -> list[float]:
    """A small 1-D array as Python floats (tree bookkeeping lives on the host)."""
    return [float(v) for v in backend.to_list(x)]


class ClusterTree:
    """A binary cluster tree over ``n`` indices.

    Build it with :meth:`from_points`, :meth:`from_indices` or
    :meth:`from_matrix`; the constructor is internal and stores what those
    classmethods computed, without checking it.

    Parameters
    ----------
    root : Cluster
        The root cluster (``root.start == 0``, ``root.stop == n``).
    n : int
        Number of indices.
    leaf_size : int
        Largest number of indices in a leaf.
    perm : array of int, shape (n,), or None
        ``perm[i]`` is the original index at permuted position ``i``;
        ``None`` for the identity.
    points : array, shape (n, d), or None
        The points in permuted order; ``None`` without geometry.
    xp : module or None
        Array-API namespace of ``perm`` and ``points`` (``None`` without
        geometry); used to form ``iperm = xp.argsort(perm)``.

    Attributes
    ----------
    root : Cluster
    n : int
        Number of indices.
    leaf_size : int
    perm : array of int or None
        ``perm[i]`` is the original index at permuted position ``i``
        (``None`` for the identity, as from :meth:`from_indices`).
    iperm : array of int or None
        The inverse permutation.
    points : array or None
        The points in permuted order (``None`` without geometry).

    Raises
    ------
    ValueError
        From the classmethods: ``points`` (or ``A``) that is not a non-empty
        2-D array or holds NaN/Inf, ``leaf_size``, ``n`` or ``dim`` < 1, an
        unknown ``split``, or ``axis`` not in (0, 1).
    TypeError
        From the classmethods: ``points`` (or ``A``) that is not an array of
        a supported library, or ``leaf_size``, ``n`` or ``dim`` that is not
        an int.  The constructor itself checks nothing.

    Notes
    -----
    Splitting stops when a cluster has at most ``leaf_size`` indices.  With
    median splits the tree is balanced, its depth is ``⌈log₂(n/leaf_size)⌉``
    and building it costs ``O(n d log n)``.  (Hackbusch 2015, §5.4.)

    Examples
    --------
    >>> import numpy as np
    >>> from natgrad.hmatrix import ClusterTree
    >>> x = np.linspace(0.0, 1.0, 8)[::-1, None]
    >>> tree = ClusterTree.from_points(x, leaf_size=2)
    >>> tree.depth, len(tree.leaves())
    (2, 4)
    >>> sorted(x[tree.perm, 0].tolist()) == x[tree.perm, 0].tolist()
    True
    """

    def __init__(
        self, root: Cluster, n: int, leaf_size: int, perm: Any, points: Any, xp: Any
    ) -> None:
        self.root = root
        self.n = n
        self.leaf_size = leaf_size
        self.perm = perm
        self.points = points
        self.xp = xp
        self.iperm = None if perm is None else xp.argsort(perm)

    # -- constructors -------------------------------------------------------
    @classmethod
    def from_points(
        cls, points: Any, *, leaf_size: int = 64, split: str = "pca"
    ) -> "ClusterTree":
        """Cluster tree over points by recursive geometric splitting.

        Parameters
        ----------
        points : array, shape (n, d)
            Finite coordinates, any array-API namespace.
        leaf_size : int
            Largest number of points in a leaf (≥ 1).
        split : {"pca", "bisect"}
            ``"pca"``: split at the median of the projections on the principal
            axis of the cluster (balanced tree).  ``"bisect"``: split the
            bounding box in two halves across its longest side (empty halves
            fall back to the median).

        Returns
        -------
        ClusterTree

        Raises
        ------
        ValueError
            If ``points`` is not a non-empty 2-D array, has NaN/Inf, or
            ``leaf_size`` < 1 or ``split`` is unknown.
        TypeError
            If ``points`` is not an array or ``leaf_size`` is not an int.

        Notes
        -----
        Principal-axis splitting (Hackbusch 2015, §5.4.2) adapts to point
        sets on curved low-dimensional surfaces, where box bisection wastes
        levels on empty space.

        Examples
        --------
        >>> import numpy as np
        >>> pts = np.random.default_rng(0).random((100, 2))
        >>> t = ClusterTree.from_points(pts, leaf_size=16)
        >>> all(c.size <= 16 for c in t.leaves()), t.root.size
        (True, 100)
        """
        xp = backend.namespace(points=points)
        _check_points(points, "points")
        leaf_size = validation.positive_int(leaf_size, "leaf_size")
        if split not in ("pca", "bisect"):
            raise ValueError(f"split must be 'pca' or 'bisect', got {split!r}")
        dtype = backend.float_dtype(xp, points)
        pts = xp.astype(points, dtype) if points.dtype != dtype else points
        n = pts.shape[0]
        if split == "bisect":
            root, perm, permuted = _bisect_tree(xp, pts, leaf_size)
            return cls(root, n, leaf_size, perm, permuted, xp)
        idx = xp.arange(n, device=backend.device(pts))
        leaves_idx: list[Any] = []
        root = _build(xp, pts, idx, 0, 0, (), leaf_size, leaves_idx)
        perm = xp.concat(leaves_idx) if len(leaves_idx) > 1 else leaves_idx[0]
        return cls(root, n, leaf_size, perm, xp.take(pts, perm, axis=0), xp)

    @classmethod
    def from_indices(cls, n: int, *, leaf_size: int = 64) -> "ClusterTree":
        """Cluster tree over ``0..n-1`` without geometry (halving ranges).

        Parameters
        ----------
        n : int
            Number of indices (≥ 1).
        leaf_size : int
            Largest leaf (≥ 1).

        Returns
        -------
        ClusterTree
            With identity permutation; the box of a cluster is the index
            interval ``[start, stop - 1]``, so standard admissibility acts on
            index distance.

        Raises
        ------
        ValueError, TypeError
            If ``n`` or ``leaf_size`` is not a positive int.

        Notes
        -----
        Pair with weak admissibility (``BlockTree(..., admissibility="weak")``)
        for a HODLR-like partition of a geometry-free matrix.

        Examples
        --------
        >>> t = ClusterTree.from_indices(10, leaf_size=3)
        >>> [(c.start, c.stop) for c in t.leaves()]
        [(0, 2), (2, 5), (5, 7), (7, 10)]
        """
        n = validation.positive_int(n, "n")
        leaf_size = validation.positive_int(leaf_size, "leaf_size")

        def build(start: int, stop: int, level: int, path: tuple[int, ...]) -> Cluster:
            c = Cluster(start, stop, (float(start),), (float(stop - 1),), level, path)
            if stop - start > leaf_size:
                mid = (start + stop) // 2
                c.children = (
                    build(start, mid, level + 1, path + (0,)),
                    build(mid, stop, level + 1, path + (1,)),
                )
            return c

        return cls(build(0, n, 0, ()), n, leaf_size, None, None, None)

    @classmethod
    def from_matrix(
        cls,
        A: Any,
        *,
        axis: int = 0,
        dim: int = 3,
        leaf_size: int = 64,
        seed: int = 0,
    ) -> "ClusterTree":
        """Data-driven cluster tree over the rows (``axis=0``) or columns
        (``axis=1``) of a matrix without geometry.

        Parameters
        ----------
        A : array, shape (m, n)
        axis : {0, 1}
            Cluster rows (0) or columns (1).
        dim : int
            Embedding dimension (number of singular directions).
        leaf_size : int
        seed : int
            Seed of the randomized range finder.

        Returns
        -------
        ClusterTree

        Raises
        ------
        ValueError, TypeError
            For a non-2-D or non-finite ``A`` or bad ``axis``/``dim``/``leaf_size``.

        Notes
        -----
        Coordinates are :func:`spectral_coordinates` (randomized SVD with a
        few oversampling columns, Halko, Martinsson & Tropp 2011).  Cost
        ``O(mn(dim + 8))``.

        Examples
        --------
        >>> import numpy as np
        >>> A = np.random.default_rng(0).standard_normal((20, 12))
        >>> ClusterTree.from_matrix(A, axis=1, leaf_size=4).n
        12
        """
        if axis not in (0, 1):
            raise ValueError(f"axis must be 0 or 1, got {axis!r}")
        rows, cols = spectral_coordinates(A, dim=dim, seed=seed)
        return cls.from_points(rows if axis == 0 else cols, leaf_size=leaf_size)

    # -- queries ------------------------------------------------------------
    def __iter__(self) -> Iterator[Cluster]:
        stack = [self.root]
        while stack:
            c = stack.pop()
            yield c
            stack.extend(reversed(c.children))

    def leaves(self) -> list[Cluster]:
        """The leaf clusters in permuted (left-to-right) order."""
        return [c for c in self if c.is_leaf]

    @property
    def depth(self) -> int:
        """Largest level of a leaf (the root has level 0)."""
        return max(c.level for c in self.leaves())

    def __repr__(self) -> str:
        return f"<ClusterTree n={self.n} leaf_size={self.leaf_size} depth={self.depth}>"


def _check_points(points: Any, name: str) -> None:
    if points.ndim != 2 or points.shape[0] < 1 or points.shape[1] < 1:
        raise ValueError(f"{name} must be a non-empty 2-D array (n, d), got shape {tuple(points.shape)}")
    if not backend.all_finite(points):
        raise ValueError(f"{name} contains NaN or Inf")


def _build(
    xp: Any,
    P: Any,
    idx: Any,
    start: int,
    level: int,
    path: tuple[int, ...],
    leaf_size: int,
    leaves_idx: list[Any],
) -> Cluster:
    """The cluster of the points ``P`` (original indices ``idx``) and, below
    ``leaf_size``, its subtree by principal-axis splits.  Each call gets its
    own points, not the whole set and an index to gather them by: one array
    operation less per cluster."""
    vals = _host_floats(xp.concat([xp.min(P, axis=0), xp.max(P, axis=0)]))
    d = P.shape[1]
    lo, hi = tuple(vals[:d]), tuple(vals[d:])
    m = P.shape[0]
    c = Cluster(start, start + m, lo, hi, level, path)
    if m <= leaf_size:
        leaves_idx.append(idx)
        return c
    centred = P - xp.mean(P, axis=0)
    _, V = backend.eigh(xp.matrix_transpose(centred) @ centred)
    order = xp.argsort(centred @ V[:, -1], stable=True)
    lower, upper = order[: m // 2], order[m // 2:]
    half = m // 2
    c.children = (
        _build(xp, xp.take(P, lower, axis=0), xp.take(idx, lower), start, level + 1, path + (0,), leaf_size,
               leaves_idx),
        _build(xp, xp.take(P, upper, axis=0), xp.take(idx, upper), start + half, level + 1, path + (1,),
               leaf_size, leaves_idx),
    )
    return c


def _bisect_tree(xp: Any, P: Any, leaf_size: int) -> tuple[Cluster, Any, Any]:
    """The bisection tree of the points ``P``, its permutation and the
    points in that order, built a level at a time.

    A cluster of more than ``leaf_size`` points halves its bounding box
    across its longest side (the first of equal sides): the points at or
    below the midpoint go left, the others right, each side in the order
    it had.  When one side would be empty (the points coincide along that
    side, or the midpoint rounds onto the largest coordinate) the points
    are sorted along it, stably, and halved at ``m // 2``.

    Every cluster of a level splits at once: the boxes come from one
    segmented reduction (:func:`natgrad.backend.segment_bounds`) and the
    new order from one stable sort by (cluster, side), so a level costs
    about twenty array operations whatever its number of clusters.  A
    recursion costs about ten per cluster, and on a line at n = 20 000 with
    leaves of 64 (about 1000 clusters) took 36-55 ms against 14-19 (NumPy,
    medians of four runs).
    """
    n, d = P.shape
    dev = backend.device(P)
    positions = xp.arange(n, device=dev)
    perm = positions
    root = Cluster(0, n, (), (), 0, ())
    parts = [root]  # the clusters of the finest partition so far, in order
    fresh = [root]  # those of them whose boxes are not known yet
    while fresh:
        lo, hi = backend.segment_bounds(P, [c.start for c in fresh], [c.stop for c in fresh])
        vals = _host_floats(xp.reshape(xp.concat([lo, hi], axis=1), (-1,)))
        for i, c in enumerate(fresh):
            c.lo, c.hi = tuple(vals[2 * d * i: 2 * d * i + d]), tuple(vals[2 * d * i + d: 2 * d * (i + 1)])
        if all(c.size <= leaf_size for c in fresh):
            break
        # per cluster: the side it splits across and the midpoint there
        # (+inf for a leaf: all its points stay), then per point
        axes = [max(range(d), key=lambda a: c.hi[a] - c.lo[a]) if c.size > leaf_size else 0 for c in parts]
        mids = [0.5 * (c.lo[a] + c.hi[a]) if c.size > leaf_size else math.inf for c, a in zip(parts, axes)]
        # (the cluster of each point by a search of the clusters' starts,
        # not xp.repeat: JAX compiles a repeat anew for every count)
        segment = xp.searchsorted(xp.asarray([c.start for c in parts], device=dev), positions, side="right") - 1
        x = P[:, 0]
        if d > 1:
            axis = xp.take(xp.asarray(axes, device=dev), segment)
            for a in range(1, d):
                x = xp.where(axis == a, P[:, a], x)
        above = x > xp.take(xp.asarray(mids, dtype=P.dtype, device=dev), segment)
        # points to the left of each cluster's end, the split's counts
        left_of = xp.cumulative_sum(xp.astype(xp.logical_not(above), segment.dtype))
        ends = backend.to_list(xp.take(left_of, xp.asarray([c.stop - 1 for c in parts], device=dev)))
        order = xp.argsort(2 * segment + xp.astype(above, segment.dtype), stable=True)
        perm, P = xp.take(perm, order), xp.take(P, order, axis=0)
        new_parts, fresh, before = [], [], 0
        for c, a, end in zip(parts, axes, ends):
            count, before = int(end) - before, int(end)
            if c.size <= leaf_size:
                new_parts.append(c)
                continue
            if not 0 < count < c.size:
                along = xp.argsort(P[c.start:c.stop, a], stable=True)
                perm = xp.concat([perm[:c.start], xp.take(perm[c.start:c.stop], along), perm[c.stop:]])
                P = xp.concat([P[:c.start, :], xp.take(P[c.start:c.stop, :], along, axis=0), P[c.stop:, :]])
                count = c.size // 2
            c.children = (Cluster(c.start, c.start + count, (), (), c.level + 1, c.path + (0,)),
                          Cluster(c.start + count, c.stop, (), (), c.level + 1, c.path + (1,)))
            new_parts += c.children
            fresh += c.children
        parts = new_parts
    return root, perm, P


def spectral_coordinates(A: Any, *, dim: int = 3, seed: int = 0) -> tuple[Any, Any]:
    """Coordinates for the rows and columns of a matrix from a randomized SVD.

    Parameters
    ----------
    A : array, shape (m, n)
    dim : int
        Number of coordinates (clipped to ``min(m, n)``).
    seed : int

    Returns
    -------
    rows : array, shape (m, dim)
        ``U[:, :dim] * s[:dim]``.
    cols : array, shape (n, dim)
        ``V[:, :dim] * s[:dim]``.

    Raises
    ------
    ValueError
        If ``A`` is not 2-D or has NaN/Inf, or ``dim`` < 1.

    Notes
    -----
    One pass of the randomized range finder with ``dim + 8`` columns and one
    power iteration (Halko, Martinsson & Tropp, SIAM Rev. 53, 2011).

    Examples
    --------
    >>> import numpy as np
    >>> A = np.outer(np.arange(1.0, 5.0), np.ones(3))
    >>> r, c = spectral_coordinates(A, dim=1)
    >>> r.shape, c.shape
    ((4, 1), (3, 1))
    """
    xp = backend.namespace(A=A)
    _check_points(A, "A")
    dim = validation.positive_int(dim, "dim")
    dtype = backend.float_dtype(xp, A)
    A = xp.astype(A, dtype) if A.dtype != dtype else A
    m, n = A.shape
    p = min(m, n, dim + 8)
    omega = backend.normal(xp, (n, p), dtype=dtype, device=backend.device(A), seed=seed)
    Q, _ = backend.qr(A @ omega)
    Q, _ = backend.qr(A @ (xp.matrix_transpose(A) @ Q))
    U, s, Vh = backend.svd(xp.matrix_transpose(Q) @ A)
    k = min(dim, s.shape[0])
    rows = (Q @ U[:, :k]) * s[:k]
    cols = xp.matrix_transpose(Vh[:k, :]) * s[:k]
    return rows, cols
