"""Cluster trees: permutation, ranges, bounding boxes, data-driven embedding."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import from_numpy, to_numpy
from hypothesis import given, settings
from hypothesis import strategies as st

from natgrad.hmatrix import ClusterTree, spectral_coordinates


def _check_tree(tree, P, leaf_size, n=None):
    """Invariants against the NumPy points P (original order, None without geometry)."""
    n = P.shape[0] if P is not None else n
    perm = np.arange(n) if tree.perm is None else to_numpy(tree.perm)
    assert sorted(perm.tolist()) == list(range(n))
    if tree.iperm is not None:
        assert np.array_equal(perm[to_numpy(tree.iperm)], np.arange(n))
    assert tree.root.start == 0 and tree.root.stop == n
    for c in tree:
        if c.is_leaf:
            assert 1 <= c.size <= leaf_size
        else:
            a, b = c.children
            assert (a.start, a.stop, b.start, b.stop) == (c.start, b.start, a.stop, c.stop)
            assert a.size >= 1 and b.size >= 1
            assert a.level == b.level == c.level + 1
        if P is not None:
            pts = P[perm[c.start:c.stop]]
            np.testing.assert_allclose(c.lo, pts.min(axis=0), rtol=1e-12)
            np.testing.assert_allclose(c.hi, pts.max(axis=0), rtol=1e-12)
    leaves = tree.leaves()
    assert [c.start for c in leaves[1:]] == [c.stop for c in leaves[:-1]]
    if P is not None and tree.points is not None:
        np.testing.assert_array_equal(to_numpy(tree.points), P[perm])


@pytest.mark.parametrize("split", ["pca", "bisect"])
@pytest.mark.parametrize("dim", [1, 2, 3])
def test_from_points_invariants(xp, split, dim):
    n = 120 if "jax" in xp.__name__ else 300  # JAX compiles each new shape
    P = np.random.default_rng(dim).random((n, dim))
    points = from_numpy(xp, P)
    tree = ClusterTree.from_points(points, leaf_size=20, split=split)
    _check_tree(tree, P, 20)
    np.testing.assert_array_equal(to_numpy(points), P)  # input not mutated
    if split == "pca":  # median splits: balanced
        sizes = [c.size for c in tree.leaves()]
        assert max(sizes) - min(sizes) <= 1


def test_pca_split_follows_the_principal_axis(xp):
    # points on a tilted line: the first split separates the two ends
    t = np.linspace(0.0, 1.0, 64)
    P = np.stack([t, 2.0 * t, -t], axis=1)[np.random.default_rng(0).permutation(64)]
    tree = ClusterTree.from_points(from_numpy(xp, P), leaf_size=8)
    a, b = tree.root.children
    assert a.hi[0] < b.lo[0] or b.hi[0] < a.lo[0]


def test_bisect_splits_the_box_in_half(xp):
    P = np.array([[0.0], [0.1], [0.2], [0.9], [1.0]])
    tree = ClusterTree.from_points(from_numpy(xp, P), leaf_size=2, split="bisect")
    a, b = tree.root.children
    assert (a.size, b.size) == (3, 2)


_ODD = np.float32(1.0) + np.spacing(np.float32(1.0))


def _bisection_reference(P, leaf_size):
    """Recursive box bisection as ClusterTree.from_points documents it, one
    cluster at a time: (start, stop, lo, hi, level, path) of every cluster
    depth first, and the permutation."""
    out, order = [], []

    def split(idx, start, level, path):
        pts = P[idx]
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        out.append((start, start + len(idx), tuple(lo.tolist()), tuple(hi.tolist()), level, path))
        if len(idx) <= leaf_size:
            order.extend(idx.tolist())
            return
        with np.errstate(over="ignore"):  # a box wider than the largest float
            axis = int(np.argmax(hi - lo))
        below = pts[:, axis] <= P.dtype.type(0.5 * (float(lo[axis]) + float(hi[axis])))
        left, right = idx[below], idx[~below]
        if len(left) in (0, len(idx)):  # one side empty: sorted along the axis and halved
            s = idx[np.argsort(pts[:, axis], kind="stable")]
            left, right = s[: len(idx) // 2], s[len(idx) // 2:]
        split(left, start, level + 1, path + (0,))
        split(right, start + len(left), level + 1, path + (1,))

    split(np.arange(P.shape[0]), 0, 0, ())
    return out, np.array(order)


def _clusters(tree):
    out = []

    def walk(c):
        out.append((c.start, c.stop, c.lo, c.hi, c.level, c.path))
        for child in c.children:
            walk(child)

    walk(tree.root)
    return out


@pytest.mark.parametrize("case", ["uniform-1d", "uniform-3d", "clustered-2d", "grid-2d", "ties-float32", "huge-2d"])
def test_bisect_tree_matches_a_recursive_reference(xp, case):
    # the tree is built a level at a time; every split, box and the order
    # within each side must be those of the one-cluster-at-a-time recursion
    rng = np.random.default_rng(7)
    jax = "jax" in xp.__name__  # compiles each new shape: a few levels only
    n = 60 if jax else 1500
    P = {
        "uniform-1d": lambda: rng.uniform(size=(n, 1)),
        "uniform-3d": lambda: rng.uniform(size=(n, 3)),
        "clustered-2d": lambda: rng.standard_normal((n, 2)) ** 3,  # leaves from many levels at once
        # points on midpoints (they go left) and coincident points (halved by sorting)
        "grid-2d": lambda: rng.integers(0, 3, size=(n, 2)).astype(np.float64),
        # two adjacent floats, the smaller with an odd last bit: their midpoint
        # rounds onto the larger, so one side would be empty
        "ties-float32": lambda: (_ODD + np.spacing(_ODD) * rng.integers(0, 2, size=(n, 2))).astype(np.float32),
        # a box whose midpoint overflows (lo + hi = -inf or inf): sorted and halved
        "huge-2d": lambda: rng.choice([-1.0, 1.0], size=(n, 2)) * 1.7e308 * rng.uniform(0.9, 1.0, size=(n, 2)),
    }[case]()
    points = from_numpy(xp, P, dtype=P.dtype.name)
    for leaf in (7,) if jax else (1, 7, 40):
        tree = ClusterTree.from_points(points, leaf_size=leaf, split="bisect")
        clusters, perm = _bisection_reference(P, leaf)
        assert _clusters(tree) == clusters
        np.testing.assert_array_equal(to_numpy(tree.perm), perm)
        np.testing.assert_array_equal(to_numpy(tree.points), P[perm])


def test_identical_points_still_split(xp):
    P = np.ones((50, 2))
    tree = ClusterTree.from_points(from_numpy(xp, P), leaf_size=8)
    _check_tree(tree, P, 8)
    assert tree.root.diameter == 0.0


def test_from_indices():
    tree = ClusterTree.from_indices(100, leaf_size=10)
    _check_tree(tree, None, 10, n=100)
    assert tree.perm is None and tree.depth == 4
    assert all(c.lo == (float(c.start),) and c.hi == (float(c.stop - 1),) for c in tree)
    a, b = tree.root.children
    assert a.distance(b) == 1.0


def test_from_matrix_clusters_related_rows(xp):
    # rows come in two groups (multiples of two different vectors): the first
    # split of the data-driven tree separates them
    rng = np.random.default_rng(0)
    u, v = rng.standard_normal(30), rng.standard_normal(30)
    coef = rng.uniform(1.0, 2.0, 40)
    A = np.concatenate([np.outer(coef[:20], u), np.outer(coef[20:], v)])[rng.permutation(40)]
    tree = ClusterTree.from_matrix(from_numpy(xp, A), leaf_size=20)
    perm = to_numpy(tree.perm)
    groups = [np.abs(A[perm[c.start:c.stop]] @ u) > 1e-8 * np.linalg.norm(u) for c in tree.root.children]
    # each child's rows all have a component along u, or none does
    for g in groups:
        assert g.all() or not g.any()
    cols = ClusterTree.from_matrix(from_numpy(xp, A), axis=1, leaf_size=4)
    _check_tree(cols, None, 4, n=30)
    assert cols.n == 30


def test_spectral_coordinates_of_rank_one(xp):
    u, v = np.arange(1.0, 6.0), np.array([1.0, -2.0, 2.0])
    rows, cols = spectral_coordinates(from_numpy(xp, np.outer(u, v)), dim=2)
    rows, cols = to_numpy(rows), to_numpy(cols)
    assert rows.shape == (5, 2) and cols.shape == (3, 2)
    # σ₁ = ‖u‖‖v‖, left vector u/‖u‖: row coordinates ±u‖v‖
    np.testing.assert_allclose(np.abs(rows[:, 0]), u * np.linalg.norm(v), rtol=1e-10)
    # right vector v/‖v‖: column coordinates ±v‖u‖
    np.testing.assert_allclose(np.abs(cols[:, 0]), np.abs(v) * np.linalg.norm(u), rtol=1e-10)
    np.testing.assert_allclose(rows[:, 1], 0.0, atol=1e-10)


@pytest.mark.parametrize(
    "points, kwargs, exc, match",
    [
        (np.ones(5), {}, ValueError, "points must be a non-empty 2-D"),
        (np.ones((0, 2)), {}, ValueError, "points must be a non-empty 2-D"),
        (np.array([[0.0, np.nan], [1.0, 1.0]]), {}, ValueError, "points contains NaN"),
        (np.array([[0.0, np.inf], [1.0, 1.0]]), {}, ValueError, "points contains NaN"),
        (np.ones((4, 2)), {"leaf_size": 0}, ValueError, "leaf_size must be positive"),
        (np.ones((4, 2)), {"leaf_size": 2.5}, TypeError, "leaf_size must be an int"),
        (np.ones((4, 2)), {"split": "kd"}, ValueError, "split must be"),
    ],
)
def test_from_points_bad_input(xp, points, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        ClusterTree.from_points(from_numpy(xp, points), **kwargs)


def test_bad_input_other_constructors(xp):
    with pytest.raises(TypeError, match="points must be an array"):
        ClusterTree.from_points([[0.0, 1.0]])
    with pytest.raises(ValueError, match="n must be positive"):
        ClusterTree.from_indices(0)
    with pytest.raises(ValueError, match="leaf_size must be positive"):
        ClusterTree.from_indices(5, leaf_size=-1)
    with pytest.raises(ValueError, match="axis must be 0 or 1"):
        ClusterTree.from_matrix(from_numpy(xp, np.ones((3, 3))), axis=2)
    with pytest.raises(ValueError, match="A contains NaN"):
        spectral_coordinates(from_numpy(xp, np.full((3, 3), np.nan)))
    with pytest.raises(ValueError, match="dim must be positive"):
        spectral_coordinates(from_numpy(xp, np.ones((3, 3))), dim=0)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 200),
    d=st.integers(1, 4),
    leaf=st.integers(1, 40),
    split=st.sampled_from(["pca", "bisect"]),
    seed=st.integers(0, 2**16),
)
def test_tree_invariants_property(n, d, leaf, split, seed):
    import array_api_compat.numpy as xp_np

    P = np.random.default_rng(seed).standard_normal((n, d))
    P[: n // 3] = P[0]  # repeated points
    tree = ClusterTree.from_points(xp_np.asarray(P), leaf_size=leaf, split=split)
    _check_tree(tree, P, leaf)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), d=st.integers(1, 4))
def test_contact_counts_the_overlapping_coordinates(seed, d):
    # Cluster.contact against a direct count: a coordinate counts when the
    # two intervals overlap by more than a tenth of the narrower one; the
    # count is symmetric, and moving one box clear of the other along a
    # coordinate removes exactly that coordinate
    from natgrad.hmatrix import Cluster

    rng = np.random.default_rng(seed)
    lo1, lo2 = rng.uniform(0, 1, d), rng.uniform(0, 1, d)
    w1, w2 = rng.uniform(0.01, 1, d), rng.uniform(0.01, 1, d)
    a = Cluster(0, 1, tuple(lo1), tuple(lo1 + w1))
    b = Cluster(1, 2, tuple(lo2), tuple(lo2 + w2))
    overlap = np.minimum(lo1 + w1, lo2 + w2) - np.maximum(lo1, lo2)
    expected = int(np.sum(overlap > 0.1 * np.minimum(w1, w2)))
    assert a.contact(b) == b.contact(a) == expected
    k = int(rng.integers(d))
    shifted = lo2.copy()
    shifted[k] = lo1[k] + w1[k] + 0.5
    c = Cluster(1, 2, tuple(shifted), tuple(shifted + w2))
    assert a.contact(c) == expected - int(overlap[k] > 0.1 * min(w1[k], w2[k]))
    assert a.contact(a) == d and a.contact(b, share=1.0) == 0
