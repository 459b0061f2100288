"""Compressing weight matrices (compress_matrix) and networks (plan_compression).

Every number a compressed matrix reports -- its storage and its error -- is
recomputed here from its dense reconstruction and its factors in float64
NumPy, on every backend.  The matrices compress for a reason: a kernel-like
matrix with shuffled rows and columns (H-matrix territory), a low-rank
matrix plus noise (truncated SVD territory), a random matrix (nothing
compresses), and a random initialisation plus a low-rank update (only the
update compresses).
"""

from __future__ import annotations

import math

import array_api_compat.numpy as np_xp
import numpy as np
import pytest
from faults import Fault, InjectedFault, outcome
from helpers import from_numpy, to_numpy

from natgrad.adapters.compression import CompressionReport, plan_compression
from natgrad.hmatrix import BlockLayout, CompressedMatrix, apply_layout, compress_matrix

LEAF = 16  # small leaves, so that the 64-128 matrices of the tests have blocks


def skip_eager_jax_hmatrix(backend_name: str) -> None:
    """H-matrix builds on eager JAX compile every block shape once: a first
    64 x 64 build took 30 s.  HMatrix.from_dense is tested on JAX in
    tests/test_hmatrix.py, and the JAX face compresses in NumPy."""
    if backend_name == "jax":
        pytest.skip("H-matrix builds on eager JAX compile per block shape (30 s); see test_hmatrix.py")


def shuffled_kernel(m: int, n: int, seed: int = 0, noise: float = 1e-5, scale: float = 0.3) -> np.ndarray:
    """exp(-|s - t| / scale) on sorted points, rows and columns shuffled, plus noise."""
    rng = np.random.default_rng(seed)
    s, t = np.sort(rng.random(m)), np.sort(rng.random(n))
    K = np.exp(-np.abs(s[:, None] - t[None, :]) / scale) + noise * rng.standard_normal((m, n))
    return K[rng.permutation(m)][:, rng.permutation(n)]


def lowrank_noise(m: int, n: int, k: int, noise: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((m, k)) @ rng.standard_normal((k, n)) / math.sqrt(k) + noise * rng.standard_normal((m, n))


def dense_of_layout(layout: BlockLayout, factors: list) -> np.ndarray:
    """The matrix a layout and its factors stand for, in float64 NumPy, by
    applying it to the identity (rows of ``I @ Aᵀ`` are the columns of A)."""
    f = [to_numpy(a).astype(np.float64) for a in factors]
    return apply_layout(np_xp, layout, f, np.eye(layout.shape[1])).T


def stored_bytes(C: CompressedMatrix) -> int:
    """What C must store, recomputed from its operator (8 bytes per float64 entry)."""
    m, n = C.shape
    if C.kind == "dense":
        total = m * n * 8
    elif C.kind == "svd":
        U, V = to_numpy(C.operator.U), to_numpy(C.operator.V)
        assert U.shape[1] == V.shape[1] == C.ranks[0]
        total = U.size * 8 + V.size * 8
    else:
        H = C.operator
        total = 0
        for b in H.blocks():
            if b["kind"] == "dense":
                total += b["m"] * b["n"] * 8
            elif b["kind"] == "lowrank":
                total += b["rank"] * (b["m"] + b["n"]) * 8
        total += sum(to_numpy(p).size * 8 for p in (H.rows.perm, H.cols.perm) if p is not None)
    if C.reference_stored:
        total += m * n * 8
    return total


def check_reported(C: CompressedMatrix, W: np.ndarray, W0: np.ndarray | None, eps: float,
                   bound_norm: float | None = None) -> np.ndarray:
    """C's error and storage equal what the dense reconstruction and the
    factors say, and the bound holds.  Returns the reconstruction."""
    What = to_numpy(C.to_dense()).astype(np.float64)
    err = np.linalg.norm(What - W) / np.linalg.norm(W)
    assert abs(C.error - err) <= 1e-12, (C.kind, C.error, err)
    assert np.linalg.norm(What - W) <= eps * (np.linalg.norm(W) if bound_norm is None else bound_norm)
    assert C.nbytes == stored_bytes(C)
    assert C.dense_nbytes == W.size * 8
    # the blocks and factors handed to the frameworks are the same matrix
    layout, factors = C.layout()
    part = dense_of_layout(layout, factors)
    if C.reference is not None:
        part = part + W0
    np.testing.assert_allclose(part, What, rtol=0, atol=1e-12 * np.abs(W).max())
    extra = W.size * 8 if C.reference_stored else 0
    perms = sum(len(p) * 8 for p in (layout.row_perm, layout.col_perm) if p is not None)
    assert C.nbytes == layout.stored_entries() * 8 + perms + extra
    return What


@pytest.mark.parametrize("kind", ["dense", "svd", "hmatrix"])
def test_every_representation_reports_its_storage_and_error(xp, kind, backend_name):
    if kind == "hmatrix":
        skip_eager_jax_hmatrix(backend_name)
    W = shuffled_kernel(96, 80, seed=1)
    eps = 1e-2
    Wx = from_numpy(xp, W)
    C = compress_matrix(Wx, eps=eps, method=kind, leaf_size=LEAF)
    assert C.kind == kind and C.shape == (96, 80)
    What = check_reported(C, W, None, eps)
    if kind == "svd":  # the smallest rank within 0.99 eps (Eckart-Young)
        s = np.linalg.svd(W, compute_uv=False)
        k = C.ranks[0]
        assert np.sqrt(np.sum(s[k - 1:] ** 2)) > 0.99 * eps * np.linalg.norm(W)
    if kind != "dense":
        assert C.compression_ratio < 0.8  # it compresses this matrix
    # products on both sides, vectors and blocks
    rng = np.random.default_rng(2)
    x, X, y = rng.standard_normal(80), rng.standard_normal((80, 3)), rng.standard_normal((4, 96))
    np.testing.assert_allclose(to_numpy(C @ from_numpy(xp, x)), What @ x, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(to_numpy(C.matvec(from_numpy(xp, X))), What @ X, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(to_numpy(C.rmatvec(from_numpy(xp, y.T))), What.T @ y.T, rtol=1e-10, atol=1e-12)
    if backend_name != "array_api_strict":  # its arrays do not defer `y @ C` to C
        np.testing.assert_allclose(to_numpy(from_numpy(xp, y) @ C), y @ What, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(to_numpy(Wx), W)  # input not mutated


def test_auto_picks_the_least_storage_that_meets_eps(xp, backend_name):
    skip_eager_jax_hmatrix(backend_name)
    W = shuffled_kernel(96, 96, seed=3, scale=0.1)
    eps = 1e-2
    Wx = from_numpy(xp, W)
    auto = compress_matrix(Wx, eps=eps, leaf_size=LEAF)
    built = {k: compress_matrix(Wx, eps=eps, method=k, leaf_size=LEAF) for k in ("dense", "svd", "hmatrix")}
    meeting = {k: C for k, C in built.items() if C.error <= eps}
    best = min(meeting.values(), key=lambda C: C.nbytes)
    assert auto.kind == best.kind == "hmatrix"  # the shuffled kernel: the H-matrix wins
    assert auto.nbytes == best.nbytes
    for k, C in built.items():
        assert auto.info["candidates"][k]["nbytes"] == C.nbytes
        assert auto.info["candidates"][k]["meets_bound"] == (C.error <= eps)
    check_reported(auto, W, None, eps)


@pytest.mark.parametrize(("matrix", "winner"), [
    (lambda: lowrank_noise(120, 100, 5, 1e-4), "svd"),
    (lambda: np.random.default_rng(4).standard_normal((100, 100)), "dense"),
])
def test_auto_on_lowrank_and_random_matrices(matrix, winner):
    W = matrix()
    auto = compress_matrix(W, eps=1e-2, leaf_size=LEAF)
    sizes = {k: compress_matrix(W, eps=1e-2, method=k, leaf_size=LEAF) for k in ("dense", "svd", "hmatrix")}
    ok = [C for C in sizes.values() if C.error <= 1e-2]
    assert auto.kind == winner
    assert auto.nbytes == min(C.nbytes for C in ok)
    check_reported(auto, W, None, 1e-2)


def test_default_leaf_size_suits_layer_widths():
    """A 64-wide layer: with from_dense's leaf size 64 it would be one dense
    leaf; compress_matrix's own default (LEAF_SIZE = 16) compresses it, and
    a leaf size given by the caller still wins."""
    from natgrad.hmatrix.compress import LEAF_SIZE

    W = shuffled_kernel(64, 64, seed=3, scale=0.1)
    C = compress_matrix(W, eps=1e-2, method="hmatrix")
    assert LEAF_SIZE == 16 and C.nbytes < 0.8 * C.dense_nbytes, C.nbytes / C.dense_nbytes
    assert np.linalg.norm(C.to_dense() - W) <= 1e-2 * np.linalg.norm(W)
    assert compress_matrix(W, eps=1e-2, method="hmatrix", leaf_size=64).nbytes > C.dense_nbytes


def test_update_mode(xp, backend_name):
    """W = W0 + low-rank update: W is incompressible, ΔW is not."""
    rng = np.random.default_rng(5)
    W0 = rng.standard_normal((96, 64)) / 8.0
    W = W0 + lowrank_noise(96, 64, 3, 1e-5, seed=6) * 0.05
    eps = 1e-2
    Wx, W0x = from_numpy(xp, W), from_numpy(xp, W0)
    plain = compress_matrix(Wx, eps=eps, method="svd")
    assert plain.compression_ratio > 1.0  # the initialisation does not compress
    # regenerated reference: only the update is stored
    auto = "auto" if backend_name != "jax" else "svd"  # see skip_eager_jax_hmatrix
    C = compress_matrix(Wx, eps=eps, reference=W0x, reference_stored=False, method=auto, leaf_size=LEAF)
    assert C.kind == "svd" and C.ranks[0] <= 6 and C.compression_ratio < 0.15
    check_reported(C, W, W0, eps)
    # bound on ‖ΔW‖: tighter, and the reported update error is what it is
    D = compress_matrix(Wx, eps=eps, reference=W0x, reference_stored=False, method="svd", relative_to="delta")
    dW = np.linalg.norm(W - W0)
    What = check_reported(D, W, W0, eps, bound_norm=dW)
    assert abs(D.info["delta_error"] - np.linalg.norm(What - W) / dW) <= 1e-12
    assert D.ranks[0] >= C.ranks[0]
    # a stored reference counts in full: then dense is cheapest and auto says so
    S = compress_matrix(Wx, eps=eps, reference=W0x, reference_stored=True, method="svd")
    assert S.nbytes == C.nbytes + W.size * 8
    check_reported(S, W, W0, eps)
    if backend_name != "jax":  # auto builds an H-matrix (see skip_eager_jax_hmatrix)
        assert compress_matrix(Wx, eps=eps, reference=W0x, method="auto", leaf_size=LEAF).kind == "dense"
    np.testing.assert_array_equal(to_numpy(W0x), W0)
    np.testing.assert_array_equal(to_numpy(Wx), W)


def test_update_below_the_bound_is_dropped():
    rng = np.random.default_rng(7)
    W0 = rng.standard_normal((40, 30))
    W = W0 + 1e-4 * rng.standard_normal((40, 30))
    C = compress_matrix(W, eps=1e-2, reference=W0, reference_stored=False)
    assert C.kind == "svd" and C.ranks == [0] and C.nbytes == 0
    layout, factors = C.layout()
    assert layout.blocks == () and factors == []
    check_reported(C, W, W0, 1e-2)


def test_float32_weights():
    W = shuffled_kernel(96, 96, seed=8).astype(np.float32)
    C = compress_matrix(W, eps=1e-2, leaf_size=LEAF)
    assert C.dtype == np.float32 and C.dense_nbytes == W.size * 4
    What = C.to_dense().astype(np.float64)
    assert np.linalg.norm(What - W) <= 1e-2 * np.linalg.norm(W.astype(np.float64))
    # below what float32 lets an H-matrix guarantee, auto skips it and says why
    T = compress_matrix(W, eps=1e-5, leaf_size=LEAF)
    assert "skipped" in T.info["candidates"]["hmatrix"] and T.kind in ("dense", "svd")


def test_auto_keeps_no_candidate_whose_measured_error_misses_the_bound(xp):
    # float32 weights with singular values e^(-k/8) at eps 3e-7, near
    # float32's unit roundoff: the SVD's truncation meets its share of the
    # bound, but the float32 factors' rounding takes the measured error to
    # 1.34 eps.  auto measures every candidate and keeps only those within
    # the bound (here the dense matrix); keeping the smallest regardless
    # returned the SVD with that error.
    rng = np.random.default_rng(0)
    n = 128
    Q1, _ = np.linalg.qr(rng.standard_normal((n, n)))
    Q2, _ = np.linalg.qr(rng.standard_normal((n, n)))
    W = ((Q1 * np.exp(-np.arange(n) / 8.0)) @ Q2.T).astype(np.float32)
    eps = 3e-7
    C = compress_matrix(from_numpy(xp, W, dtype="float32"), eps=eps)
    svd = C.info["candidates"]["svd"]
    assert not svd["meets_bound"] and svd["error"] > eps  # the SVD is smaller, and misses
    assert C.kind == "dense" and C.error <= eps
    What = to_numpy(C.to_dense()).astype(np.float64)
    assert np.linalg.norm(What - W) <= eps * np.linalg.norm(W.astype(np.float64))


@pytest.mark.parametrize(("kwargs", "name"), [
    (dict(eps=0.0), "eps"), (dict(eps=1.0), "eps"), (dict(eps=-0.1), "eps"), (dict(eps=float("nan")), "eps"),
    (dict(eps=1e-2, method="qr"), "method"), (dict(eps=1e-2, relative_to="both"), "relative_to"),
    (dict(eps=1e-2, reference=np.ones((3, 4))), "reference"),
])
def test_bad_arguments_are_named(kwargs, name):
    W = np.ones((4, 4)) + np.eye(4)
    res = outcome(lambda: compress_matrix(W, **kwargs), name)
    assert res.raised


@pytest.mark.parametrize("W", [np.ones(5), np.ones((2, 2, 2)), np.ones((0, 3))], ids=["1d", "3d", "empty"])
def test_bad_shapes_are_named(W):
    assert outcome(lambda: compress_matrix(W, eps=0.1), "W").raised
    with pytest.raises(TypeError, match="eps"):
        compress_matrix(np.ones((3, 3)), eps="0.1")
    with pytest.raises(TypeError, match="W"):
        compress_matrix([[1.0, 2.0]], eps=0.1)


def test_nan_weight_or_reference_is_refused(xp):
    """A fault in the weights (a NaN from a diverged training run) is a clear error."""
    W = lowrank_noise(32, 24, 2, 1e-3)
    bad = W.copy()
    bad[3, 5] = np.nan
    res = outcome(lambda: compress_matrix(from_numpy(xp, bad), eps=0.1), "W")
    assert res.raised and "NaN" in str(res.error)
    res = outcome(lambda: compress_matrix(from_numpy(xp, W), eps=0.1, reference=from_numpy(xp, bad)),
                  "reference")
    assert res.raised and "NaN" in str(res.error)


# -- plan_compression: the framework-free planner ------------------------------------------


def _mlp(seed: int = 0, width: int = 96):
    """A 2 -> width -> width -> 1 tanh network with trained-looking weights:
    a kernel-like hidden layer and a nearly low-rank first layer."""
    rng = np.random.default_rng(seed)
    W1 = lowrank_noise(width, 2, 2, 0.0, seed=seed) * 2.0
    W2 = shuffled_kernel(width, width, seed=seed + 1, noise=1e-3) * (3.0 / width)
    W3 = rng.standard_normal((1, width)) / math.sqrt(width)
    b1, b2 = rng.standard_normal(width) * 0.3, rng.standard_normal(width) * 0.1
    weights = [W1, W2, W3]

    def net(layers, X):
        A = [W if C is None else C for W, C in zip(weights, layers)]
        h = np.tanh((A[0] @ X.T).T + b1)
        h = np.tanh((A[1] @ h.T).T + b2)
        return (A[2] @ h.T).T

    return weights, net


def test_output_budget_holds_on_held_out_points():
    weights, net = _mlp()
    rng = np.random.default_rng(11)
    probe, held_out = rng.uniform(-1, 1, (256, 2)), rng.uniform(-1, 1, (1000, 2))
    eps = 1e-2
    compressed, report = plan_compression(weights, eps=eps, budget="output",
                                          evaluate=lambda layers: net(layers, probe), leaf_size=LEAF)
    assert isinstance(report, CompressionReport)
    assert report.output_error <= 0.9 * eps  # the measured guarantee on the probe
    f, g = net([None] * 3, held_out), net(compressed, held_out)
    assert np.linalg.norm(g - f) <= eps * np.linalg.norm(f)  # and on points it never saw
    assert report.compression_ratio < 0.7  # it did compress
    # the report is what the layers say
    for layer, C, W in zip(report.layers, compressed, weights):
        assert (layer.kind, layer.nbytes, layer.error) == (C.kind, C.nbytes, C.error)
        check_reported(C, W, None, report.layer_eps)
    # and the search is what it says: every trial logged, the chosen one the smallest feasible
    feasible = [t["nbytes"] for t in report.info["search"] if t["output_error"] <= 0.9 * eps]
    assert report.total_nbytes == min(feasible)
    text = str(report)
    assert "total" in text and "output error on the probe" in text and "layer2" in text


def test_layer_budget_reports_the_output_error():
    weights, net = _mlp(seed=2)
    probe = np.random.default_rng(12).uniform(-1, 1, (64, 2))
    compressed, report = plan_compression(weights, eps=1e-3, evaluate=lambda ls: net(ls, probe),
                                          names=["fc1", "fc2", "out"], leaf_size=LEAF)
    assert [layer.name for layer in report.layers] == ["fc1", "fc2", "out"]
    for C, W in zip(compressed, weights):
        check_reported(C, W, None, 1e-3)
    f = net([None] * 3, probe)
    assert abs(report.output_error - np.linalg.norm(net(compressed, probe) - f) / np.linalg.norm(f)) <= 1e-12
    _, no_probe = plan_compression(weights, eps=1e-3, leaf_size=LEAF)
    assert no_probe.output_error is None and "output error" not in str(no_probe)


def test_output_budget_falls_back_to_dense():
    """A network so sensitive that no per-layer bound meets the budget keeps every layer dense."""
    rng = np.random.default_rng(13)
    Q1, _ = np.linalg.qr(rng.standard_normal((48, 48)))
    Q2, _ = np.linalg.qr(rng.standard_normal((48, 48)))
    W = (Q1 * np.logspace(0, -12, 48)) @ Q2.T  # every bound truncates something
    x = rng.standard_normal((48, 8))

    def evaluate(layers):
        A = W if layers[0] is None else layers[0]
        with np.errstate(over="ignore"):  # any change is amplified 1e8 times
            return np.exp(1e8 * ((A @ x) - W @ x)) + 1.0

    # method="svd": auto would reach dense by itself at the tightest bound
    compressed, report = plan_compression([W], eps=1e-3, budget="output", evaluate=evaluate, search_steps=2,
                                          method="svd")
    assert report.info["fallback"] == "dense" and compressed[0].kind == "dense"
    assert [t["output_error"] > 0.9e-3 for t in report.info["search"]] == [True, True]
    assert report.output_error <= 1e-3 and "fallback" in str(report)


def test_output_search_below_the_float32_hmatrix_floor():
    """method="hmatrix" in float32: trials below 1.2e-4 cannot be built; they
    count as infeasible (here: every layer stays dense) instead of raising."""
    W = shuffled_kernel(64, 64, seed=9).astype(np.float32)
    X = np.random.default_rng(16).standard_normal((64, 8)).astype(np.float32)

    def evaluate(layers):  # the change of W @ X, amplified 1e3 times
        A = W if layers[0] is None else layers[0]
        return np.concatenate([W @ X, 1e3 * (A @ X - W @ X)], axis=0)

    compressed, report = plan_compression([W], eps=1e-2, budget="output", evaluate=evaluate, method="hmatrix",
                                          leaf_size=LEAF)
    skipped = [t for t in report.info["search"] if "skipped" in t]
    assert [t["layer_eps"] for t in skipped] == [pytest.approx(9e-6)]
    assert report.info["fallback"] == "dense" and report.output_error <= 1e-2


def test_verification_that_misses_the_budget_falls_back_to_dense():
    """When the verified output (the compressed operators themselves) misses
    eps although the search's shortcut met it, every layer is kept dense."""
    weights, net = _mlp(seed=4, width=32)
    probe = np.random.default_rng(15).uniform(-1, 1, (32, 2))

    def evaluate(layers):
        return net(layers, probe)

    def verify(layers):  # a verification that sees 5 % more change than the search
        out = net(layers, probe)
        changed = any(C is not None and C.kind != "dense" for C in layers)
        return out + (0.05 * np.linalg.norm(out) / math.sqrt(out.size) if changed else 0.0)

    compressed, report = plan_compression(weights, eps=1e-2, budget="output", evaluate=evaluate, verify=verify,
                                          search_steps=2)
    assert report.info["fallback"] == "dense" and report.info["rejected_output_error"] > 1e-2
    assert all(C.kind == "dense" for C in compressed) and report.output_error <= 1e-2
    # without the discrepancy the same call compresses
    _, ok = plan_compression(weights, eps=1e-2, budget="output", evaluate=evaluate, verify=evaluate, search_steps=2)
    assert "fallback" not in ok.info and ok.compression_ratio < 1.0


def test_planner_faults_and_bad_arguments():
    weights, net = _mlp(seed=3, width=32)
    probe = np.random.default_rng(14).uniform(-1, 1, (16, 2))

    def evaluate(layers):
        return net(layers, probe)

    # NaN from the network at a trial: that trial is infeasible, not a crash
    faulty = Fault(evaluate, "nan", at=2, once=True)
    _, report = plan_compression(weights, eps=1e-2, budget="output", evaluate=faulty, search_steps=2)
    assert faulty.fired and report.output_error <= 0.9e-2
    assert math.isinf(report.info["search"][0]["output_error"])
    # NaN in the original network's output: a clear error naming evaluate
    res = outcome(lambda: plan_compression(weights, eps=1e-2, budget="output",
                                           evaluate=Fault(evaluate, "nan", at=1)), "evaluate")
    assert res.raised
    # the user's own exception passes through unchanged
    res = outcome(lambda: plan_compression(weights, eps=1e-2, budget="output",
                                           evaluate=Fault(evaluate, "raise", at=3)))
    assert isinstance(res.error, InjectedFault)
    # a NaN weight names its layer
    bad = [w.copy() for w in weights]
    bad[1][0, 0] = np.nan
    res = outcome(lambda: plan_compression(bad, eps=1e-2, names=["a", "b", "c"]), "'b'")
    assert res.raised and "NaN" in str(res.error)
    for kwargs, name in [(dict(eps=1e-2, budget="output"), "evaluate"), (dict(eps=2.0), "eps"),
                         (dict(eps=1e-2, budget="net"), "budget"), (dict(eps=1e-2, names=["a"]), "names"),
                         (dict(eps=1e-2, references=[None]), "references"),
                         (dict(eps=1e-2, probe_share=0.0), "probe_share")]:
        assert outcome(lambda: plan_compression(weights, **kwargs), name).raised
    assert outcome(lambda: plan_compression([], eps=1e-2), "weights").raised
    res = outcome(lambda: plan_compression(weights, eps=1e-2, evaluate=lambda ls: [1.0]), "evaluate")
    assert res.raised
