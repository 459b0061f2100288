"""Block cluster trees: partition, admissibility, weak admissibility."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import from_numpy
from hypothesis import given, settings
from hypothesis import strategies as st

from natgrad.hmatrix import BlockTree, Cluster, ClusterTree, admissible


def _coverage(bt):
    m, n = bt.rows.n, bt.cols.n
    count = np.zeros((m, n), dtype=int)
    for b in bt.leaves:
        count[b.rows.start:b.rows.stop, b.cols.start:b.cols.stop] += 1
    return count


def _box_distance(t, s):
    gap = np.maximum(0.0, np.maximum(np.subtract(s.lo, t.hi), np.subtract(t.lo, s.hi)))
    return float(np.linalg.norm(gap))


@pytest.mark.parametrize("eta", [0.5, 1.0, 3.0])
def test_standard_partition(xp, eta):
    P = np.random.default_rng(0).random((256, 2))
    tree = ClusterTree.from_points(from_numpy(xp, P), leaf_size=16)
    bt = BlockTree(tree, tree, eta=eta)
    assert np.all(_coverage(bt) == 1)  # leaves partition the matrix exactly
    for b in bt.leaves:
        t, s = b.rows, b.cols
        dist = _box_distance(t, s)
        diam = min(math.dist(t.lo, t.hi), math.dist(s.lo, s.hi))
        if b.admissible:
            assert dist > 0 and diam <= eta * dist * (1 + 1e-12)
        else:
            assert t.is_leaf and s.is_leaf
            assert dist == 0 or diam > eta * dist
    assert len(bt.admissible_leaves) + len(bt.dense_leaves) == len(bt.leaves)
    assert len(bt.admissible_leaves) > 0


def test_larger_eta_admits_more():
    P = np.random.default_rng(1).random((400, 3))
    import array_api_compat.numpy as xp_np

    tree = ClusterTree.from_points(xp_np.asarray(P), leaf_size=16)
    dense = [sum(b.rows.size * b.cols.size for b in BlockTree(tree, tree, eta=e).dense_leaves)
             for e in (0.5, 1.0, 2.0, 4.0)]
    assert dense == sorted(dense, reverse=True) and dense[0] > dense[-1]


def test_weak_admissibility_is_hodlr():
    tree = ClusterTree.from_indices(64, leaf_size=8)
    bt = BlockTree(tree, tree, admissibility="weak")
    assert np.all(_coverage(bt) == 1)
    # HODLR: two off-diagonal blocks per non-leaf cluster, dense diagonal leaves
    assert len(bt.admissible_leaves) == 2 * 7 and len(bt.dense_leaves) == 8
    assert all(b.rows.start == b.cols.start for b in bt.dense_leaves)


def test_rectangular_trees():
    rows = ClusterTree.from_indices(100, leaf_size=10)
    cols = ClusterTree.from_indices(30, leaf_size=10)
    for kind in ("weak", "standard"):
        bt = BlockTree(rows, cols, admissibility=kind)
        assert np.all(_coverage(bt) == 1)
        assert all(b.rows.is_leaf and b.cols.is_leaf for b in bt.dense_leaves)


def test_admissible_function():
    a = Cluster(0, 4, (0.0, 0.0), (1.0, 1.0), path=(0,))
    b = Cluster(4, 8, (3.0, 0.0), (4.0, 1.0), path=(1,))
    c = Cluster(8, 9, (1.0, 0.0), (2.0, 1.0), path=(0, 1))
    assert a.distance(b) == 2.0 and a.diameter == math.sqrt(2.0)
    assert admissible(a, b, 1.0) and not admissible(a, b, 0.5)
    assert not admissible(a, c, 100.0)  # touching boxes are never admissible
    assert admissible(a, b, 1.0, "weak") and not admissible(a, c, 1.0, "weak")


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"eta": 0.0}, ValueError, "eta must be a finite positive number"),
        ({"eta": -1.0}, ValueError, "eta must be"),
        ({"eta": float("nan")}, ValueError, "eta must be"),
        ({"eta": "1"}, TypeError, "eta must be a real number"),
        ({"admissibility": "strong"}, ValueError, "admissibility must be"),
    ],
)
def test_bad_input(kwargs, exc, match):
    tree = ClusterTree.from_indices(10, leaf_size=2)
    with pytest.raises(exc, match=match):
        BlockTree(tree, tree, **kwargs)


def test_bad_trees():
    tree = ClusterTree.from_indices(10, leaf_size=2)
    with pytest.raises(TypeError, match="cols must be a ClusterTree"):
        BlockTree(tree, None)
    import array_api_compat.numpy as xp_np

    t2 = ClusterTree.from_points(xp_np.ones((5, 2)), leaf_size=2)
    with pytest.raises(ValueError, match="different dimensions"):
        BlockTree(tree, t2)
    BlockTree(tree, t2, admissibility="weak")  # fine without geometry


@settings(max_examples=20, deadline=None)
@given(m=st.integers(1, 120), n=st.integers(1, 120), leaf=st.integers(1, 30),
       eta=st.floats(0.1, 5.0), weak=st.booleans(), seed=st.integers(0, 1000))
def test_partition_property(m, n, leaf, eta, weak, seed):
    import array_api_compat.numpy as xp_np

    rng = np.random.default_rng(seed)
    rows = ClusterTree.from_points(xp_np.asarray(rng.random((m, 2))), leaf_size=leaf)
    cols = ClusterTree.from_points(xp_np.asarray(rng.random((n, 2))), leaf_size=leaf)
    bt = BlockTree(rows, cols, eta=eta, admissibility="weak" if weak else "standard")
    assert np.all(_coverage(bt) == 1)
