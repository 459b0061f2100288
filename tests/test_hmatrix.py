"""HMatrix: the error contract ‖H − A‖_F ≤ eps ‖A‖_F against dense references,
matvec, transpose, storage, permutation, bad input."""

from __future__ import annotations

import array_api_compat
import math

import numpy as np
import pytest
from helpers import from_numpy, to_numpy
from hypothesis import given, settings
from hypothesis import strategies as st

from natgrad.hmatrix import HMatrix, plot
from natgrad.linalg import LinearOperator, cg

# radial kernels f(r) and their NumPy twins (the reference)
RADIAL = {
    "exponential": lambda xp, r: xp.exp(-r),
    "gaussian": lambda xp, r: xp.exp(-4.0 * r * r),
    "cauchy": lambda xp, r: 1.0 / (1.0 + r * r),
    "inverse": lambda xp, r: 1.0 / (r + 0.05),
    "matern32": lambda xp, r: (1.0 + 3.0**0.5 * r / 0.3) * xp.exp(-(3.0**0.5) * r / 0.3),
    "log": lambda xp, r: xp.log(r + 0.1),
}


def kernel_fn(name):
    f = RADIAL[name]

    def kernel(X, Y):
        xp = array_api_compat.array_namespace(X, Y)
        d = X[:, None, :] - Y[None, :, :]
        return f(xp, xp.sqrt(xp.sum(d * d, axis=-1)))

    return kernel


def dense_reference(name, P, Q=None):
    Q = P if Q is None else Q
    r = np.linalg.norm(P[:, None, :] - Q[None, :, :], axis=-1)
    return RADIAL[name](np, r)


def points(kind, n, seed=0):
    rng = np.random.default_rng(seed)
    if kind == "sphere":  # a curved surface in 3-D
        p = rng.standard_normal((n, 3))
        return p / np.linalg.norm(p, axis=1, keepdims=True)
    if kind == "helix":
        t = np.sort(rng.uniform(0, 4 * np.pi, n))
        return np.stack([np.cos(t), np.sin(t), 0.1 * t], axis=1)
    return rng.random((n, int(kind)))


def size_for(xp, n):
    # JAX compiles every new shape eagerly and PyTorch's small SVDs are slow
    # on a busy CPU: keep their problems smaller
    return n if not any(k in xp.__name__ for k in ("jax", "torch")) else max(n // 2, 100)


def slow_backend(xp):
    return any(k in xp.__name__ for k in ("jax", "torch"))


def rel_error(H, A):
    return np.linalg.norm(to_numpy(H.to_dense()) - A) / np.linalg.norm(A)


CASES = [
    ("exponential", "1", 1e-2),
    ("exponential", "3", 1e-6),
    ("gaussian", "2", 1e-8),
    ("cauchy", "2", 1e-4),
    ("inverse", "3", 1e-6),
    ("matern32", "2", 1e-10),
    ("log", "1", 1e-6),
    ("exponential", "sphere", 1e-6),
    ("cauchy", "helix", 1e-8),
]
SLOW_CASES = [CASES[2], CASES[4], CASES[5], CASES[8]]


@pytest.mark.parametrize("name, geometry, eps", CASES)
def test_kernel_error_bound(xp, name, geometry, eps):
    if slow_backend(xp) and (name, geometry, eps) not in SLOW_CASES:
        pytest.skip("all cases run on numpy and array_api_strict; four on eager JAX/PyTorch")
    P = points(geometry, size_for(xp, 500))
    A = dense_reference(name, P)
    Px = from_numpy(xp, P)
    # a small aca_min_size routes most admissible blocks through ACA
    eta = 4.0 if geometry in ("3", "sphere") else 1.0
    H = HMatrix.from_kernel(kernel_fn(name), Px, eps=eps, leaf_size=16, eta=eta,
                            aca_min_size=16 if P.shape[0] >= 500 else 8)
    # (in 3-D at this size most ACA blocks do not pay and fall back)
    assert H.info["aca"] + H.info["aca_fallback"] > 0
    err = rel_error(H, A)
    assert err <= eps
    assert err <= H.error_estimate * 1.01 + 1e-15  # verified blocks: the estimate is exact
    np.testing.assert_array_equal(to_numpy(Px), P)  # input not mutated


@pytest.mark.parametrize("eps", [1e-3, 1e-7, 1e-10])
def test_unverified_aca_meets_bound(eps):
    # without a-posteriori checks the bound rests on ACA's estimate with a
    # safety factor: it must still hold on these smooth kernels
    import array_api_compat.numpy as xp_np

    for name, geometry in [("exponential", "2"), ("inverse", "1"), ("log", "helix")]:
        P = points(geometry, 900, seed=1)
        A = dense_reference(name, P)
        H = HMatrix.from_kernel(kernel_fn(name), xp_np.asarray(P), eps=eps, leaf_size=32,
                                eta=2.0, aca_min_size=32, verify=False)
        assert H.info["verify"] is False and H.info["aca"] > 0
        assert rel_error(H, A) <= eps


def test_verify_forms_a_block_whose_feature_aca_never_sampled(xp):
    # exp(-|x - y|) plus narrow bumps at (0.3, 0.8) and (0.8, 0.3): a far
    # block whose entries are smooth except near one row and one column
    # that partial pivoting never visits, so ACA stops early and
    # confidently.  With verify the residual check catches it and the block
    # is formed and compressed; without the check (its fallback removed)
    # the error was 180 eps, as in the unverified build below.
    if "jax" in xp.__name__:
        pytest.skip("a host-side comparison of floats; on JAX the ACA crosses' shapes compile "
                    "one by one (30 s at any size)")

    def kernel(X, Y):
        xp_ = array_api_compat.array_namespace(X, Y)
        x, y = X[:, 0][:, None], Y[:, 0][None, :]

        def bump(a, b):
            return xp_.exp(-((x - a) ** 2 + (y - b) ** 2) / 1e-6)

        return xp_.exp(-xp_.abs(x - y)) + 0.1 * (bump(0.3, 0.8) + bump(0.8, 0.3))

    eps = 1e-6
    P = np.sort(np.random.default_rng(7).random((size_for(xp, 2000), 1)), axis=0)
    A = kernel(P, P)
    if xp.__name__ == "array_api_compat.numpy":  # the problem's property, the same on every backend
        unverified = HMatrix.from_kernel(kernel, from_numpy(xp, P), eps=eps, verify=False)
        assert rel_error(unverified, A) > 10 * eps, "the bump no longer defeats ACA's stopping rule"
    H = HMatrix.from_kernel(kernel, from_numpy(xp, P), eps=eps, verify=True)
    assert H.info["aca_fallback"] > 0
    err = rel_error(H, A)
    assert err <= eps
    assert err <= H.error_estimate * 1.01 + 1e-15


@pytest.mark.parametrize("name, geometry", [("exponential", "2"), ("inverse", "1")])
def test_aca_blocks_share_the_global_budget(xp, name, geometry):
    # ACA blocks join the pool of singular values that the global budget
    # truncates: some end up beyond their own share eps‖A_b‖ (the budget
    # came from elsewhere), yet every reported block error bounds the true
    # one and the whole matrix meets the bound.  (The exponential's ACA
    # blocks are small and of high rank: most of them fetch a third of their
    # entries, and the rest of their size class is formed and sketched,
    # which joins the same pool.)
    eps = 1e-6
    P = points(geometry, size_for(xp, 700), seed=3)
    A = dense_reference(name, P)
    H = HMatrix.from_kernel(kernel_fn(name), from_numpy(xp, P), eps=eps, leaf_size=32, eta=2.0,
                            aca_min_size=32)
    assert H.info["verify"] is True and H.info["aca"] > 0
    perm = to_numpy(H.rows.perm)
    Ap = A[perm][:, perm]
    Hp = to_numpy(H.to_dense())[perm][:, perm]
    beyond_share = {"aca": 0, "formed": 0}
    for b in H.blocks():
        rows, cols = slice(b["row0"], b["row0"] + b["m"]), slice(b["col0"], b["col0"] + b["n"])
        err = np.linalg.norm(Hp[rows, cols] - Ap[rows, cols])
        norm = np.linalg.norm(Ap[rows, cols])
        assert err <= b["error"] * (1 + 1e-9) + 1e-13 * norm
        if b["kind"] == "lowrank" and err > eps * norm:
            beyond_share["aca" if b["method"] == "aca" else "formed"] += 1
    assert beyond_share["aca"] + beyond_share["formed"] > 0
    if name == "inverse":  # low ranks: its ACA blocks finish from their crosses
        assert beyond_share["aca"] > 0
    assert np.linalg.norm(Hp - Ap) <= eps * np.linalg.norm(Ap)

def test_rectangular_kernel(xp):
    rng = np.random.default_rng(0)
    P, Q = rng.random((size_for(xp, 300), 2)), rng.random((size_for(xp, 180), 2)) + [0.5, 0.0]
    A = dense_reference("cauchy", P, Q)
    H = HMatrix.from_kernel(kernel_fn("cauchy"), from_numpy(xp, P), col_points=from_numpy(xp, Q),
                            eps=1e-7, leaf_size=16, aca_min_size=16)
    assert H.shape == A.shape
    assert rel_error(H, A) <= 1e-7
    x = rng.standard_normal(A.shape[1])
    y = rng.standard_normal(A.shape[0])
    np.testing.assert_allclose(to_numpy(H @ from_numpy(xp, x)), A @ x, rtol=1e-5, atol=1e-6 * np.abs(A @ x).max())
    np.testing.assert_allclose(to_numpy(H.T @ from_numpy(xp, y)), A.T @ y, rtol=1e-5,
                               atol=1e-6 * np.abs(A.T @ y).max())


def test_matvec_vector_block_transpose(xp):
    n = size_for(xp, 400)
    P = points("2", n, seed=2)
    A = dense_reference("exponential", P)
    H = HMatrix.from_kernel(kernel_fn("exponential"), from_numpy(xp, P), eps=1e-9, leaf_size=16)
    D = to_numpy(H.to_dense())
    rng = np.random.default_rng(0)
    x, X = rng.standard_normal(n), rng.standard_normal((n, 3))
    xx, XX = from_numpy(xp, x), from_numpy(xp, X)
    # the matvec is the product with the stored matrix, to rounding
    np.testing.assert_allclose(to_numpy(H @ xx), D @ x, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(to_numpy(H.matvec(XX)), D @ X, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(to_numpy(H.rmatvec(xx)), D.T @ x, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(to_numpy(H.T @ XX), D.T @ X, rtol=1e-10, atol=1e-10)
    # and close to the true matrix: ‖(H − A) x‖ ≤ eps ‖A‖_F ‖x‖
    assert np.linalg.norm(to_numpy(H @ xx) - A @ x) <= 1e-9 * np.linalg.norm(A) * np.linalg.norm(x)
    np.testing.assert_array_equal(to_numpy(xx), x)  # x not mutated
    assert isinstance(H, LinearOperator) and H.shape == (n, n)


def test_permutation_is_invisible(xp):
    # points in a scrambled order: H must match A in the caller's order
    P = points("2", size_for(xp, 300), seed=3)[::-1]
    A = dense_reference("cauchy", P)
    H = HMatrix.from_kernel(kernel_fn("cauchy"), from_numpy(xp, P), eps=1e-10, leaf_size=16)
    assert not np.array_equal(to_numpy(H.rows.perm), np.arange(P.shape[0]))
    e = np.zeros(P.shape[0])
    e[7] = 1.0
    np.testing.assert_allclose(to_numpy(H @ from_numpy(xp, e)), A[:, 7], atol=1e-8)
    np.testing.assert_allclose(to_numpy(H.to_dense()), A, atol=1e-8)


def test_cg_on_hmatrix(xp):
    n = size_for(xp, 400)
    P = points("2", n, seed=4)
    A = dense_reference("exponential", P) + 0.1 * np.eye(n)
    H = HMatrix.from_kernel(lambda X, Y: kernel_fn("exponential")(X, Y), from_numpy(xp, P), eps=1e-10)
    b = np.random.default_rng(0).standard_normal(n)
    # cg on H + 0.1 I through the operator algebra
    from natgrad.linalg.operators import shifted

    res = cg(shifted(H, 0.1), from_numpy(xp, b), rtol=1e-9, maxiter=2000)
    assert res.converged
    x = to_numpy(res.x)
    assert np.linalg.norm(A @ x - b) <= 1e-6 * np.linalg.norm(b)


def test_ranks_shrink_and_storage_below_dense(xp):
    P = points("1", size_for(xp, 400), seed=5)
    A = dense_reference("log", P)
    storage, errors = [], []
    for eps in (1e-10, 1e-7, 1e-4, 1e-2):
        H = HMatrix.from_kernel(kernel_fn("log"), from_numpy(xp, P), eps=eps, leaf_size=32)
        storage.append(sum(H.ranks()))
        errors.append(rel_error(H, A))
        assert errors[-1] <= eps
        assert H.compression_ratio < (0.5 if P.shape[0] >= 400 else 0.8)
        assert H.nbytes < A.size * 8
    assert storage == sorted(storage, reverse=True) and storage[0] > storage[-1]


# -- dense input ------------------------------------------------------------


def _nn_weights(m, n, seed):
    """A trained-network-like weight matrix: a decaying spectrum plus noise,
    no geometry, rows and columns in arbitrary order."""
    rng = np.random.default_rng(seed)
    k = min(m, n)
    U, _ = np.linalg.qr(rng.standard_normal((m, k)))
    V, _ = np.linalg.qr(rng.standard_normal((n, k)))
    s = 3.0 / (1.0 + np.arange(k)) ** 1.2
    return (U * s) @ V.T + 0.002 * rng.standard_normal((m, n)) / np.sqrt(n)


DENSE = {
    "smooth": lambda: dense_reference("exponential", points("1", 200, 6)),
    "smooth-rect": lambda: dense_reference("cauchy", points("2", 200, 7), points("2", 120, 8)),
    "random": lambda: np.random.default_rng(9).standard_normal((120, 90)),
    "nn-wide": lambda: _nn_weights(48, 200, 10),
    "nn-tall": lambda: _nn_weights(160, 96, 11),
    "lowrank+diag": lambda: np.diag(np.linspace(1, 2, 150)) + np.outer(np.ones(150), np.arange(150.0)) / 150,
}


@pytest.mark.parametrize("kind", list(DENSE))
@pytest.mark.parametrize("eps", [1e-2, 1e-9])
def test_dense_error_bound(xp, kind, eps):
    if slow_backend(xp) and kind not in ("nn-tall", "smooth-rect", "random"):
        pytest.skip("all kinds run on numpy and array_api_strict; three on eager JAX/PyTorch")
    A = DENSE[kind]()
    Ax = from_numpy(xp, A)
    H = HMatrix.from_dense(Ax, eps=eps, leaf_size=32)
    err = rel_error(H, A)
    assert err <= eps
    assert abs(err - H.error_estimate) <= 0.02 * eps  # exact tails
    np.testing.assert_array_equal(to_numpy(Ax), A)
    x = np.random.default_rng(0).standard_normal(A.shape[1])
    np.testing.assert_allclose(to_numpy(H @ from_numpy(xp, x)), to_numpy(H.to_dense()) @ x, rtol=1e-9,
                               atol=1e-12 * np.abs(A).sum())


def test_dense_random_falls_back_to_dense(xp):
    A = np.random.default_rng(1).standard_normal((128, 128))
    H = HMatrix.from_dense(from_numpy(xp, A), eps=1e-6, leaf_size=32)
    assert H.info["densified"] and len(H.blocks()) == 1
    assert rel_error(H, A) == 0.0
    # one dense block plus O(n) index arrays and permutations
    assert H.nbytes <= A.nbytes + 8 * 8 * 256
    x = np.ones(128)
    np.testing.assert_allclose(to_numpy(H @ from_numpy(xp, x)), A @ x, rtol=1e-12)


def test_small_3d_never_exceeds_dense(xp):
    P = points("3", size_for(xp, 300), seed=14)
    H = HMatrix.from_kernel(kernel_fn("exponential"), from_numpy(xp, P), eps=1e-8, leaf_size=16)
    assert H.nbytes <= P.shape[0] ** 2 * 8 + 8 * 8 * 2 * P.shape[0]
    err = rel_error(H, dense_reference("exponential", P))
    assert err <= 1e-8
    if H.info["densified"]:  # the exact matrix is kept
        assert err <= 1e-14 and H.error_estimate == 0.0


def test_dense_index_tree_and_standard_admissibility(xp):
    P = np.sort(points("1", size_for(xp, 300), 12), axis=0)
    A = dense_reference("exponential", P)
    for adm in ("standard", "weak"):
        H = HMatrix.from_dense(from_numpy(xp, A), eps=1e-8, tree="index", admissibility=adm,
                               leaf_size=25)
        assert rel_error(H, A) <= 1e-8
        assert H.compression_ratio < 0.5
        assert H.rows.perm is None


def test_dense_large_blocks_use_randomized_svd():
    import array_api_compat.numpy as xp_np

    A = dense_reference("cauchy", np.sort(points("1", 640, 13), axis=0))
    H = HMatrix.from_dense(xp_np.asarray(A), eps=1e-6, tree="index", leaf_size=64)
    assert H.info["rsvd"] > 0
    assert rel_error(H, A) <= 1e-6


def test_randomized_svd_residual_counts_in_the_bound_and_the_estimate(xp):
    # singular values k^-2: the range finder of a block over 256 wide stops
    # with ‖A − QQᵀA‖ a sizeable share of the block's budget (it adds 8
    # directions at a time and each removes little), so the bound holds only
    # if that residual is charged before truncation and in the estimate.
    # from_dense measures every block exactly, so the estimate is the error
    # (up to float32 rounding bounds, which only add).  Leaving the residual
    # out gave errors of 1.07-2.3 eps and 1.1-2.4 times the estimate.
    rng = np.random.default_rng(21)
    n = 768
    Q1, _ = np.linalg.qr(rng.standard_normal((n, n)))
    Q2, _ = np.linalg.qr(rng.standard_normal((n, n)))
    A = (Q1 * np.arange(1.0, n + 1.0) ** -2.0) @ Q2.T
    cases = [(1e-2, False), (1e-3, False), (1e-2, True), (1e-3, True)]
    if "jax" in xp.__name__:
        cases = cases[3:]  # JAX compiles each new shape: 15 s a build
    for eps, mixed_precision in cases:
        H = HMatrix.from_dense(from_numpy(xp, A), eps=eps, tree="index", leaf_size=64,
                               mixed_precision=mixed_precision)
        assert H.info["rsvd"] > 0
        err = rel_error(H, A)
        assert err <= eps, (eps, mixed_precision)
        assert err <= H.error_estimate * (1.0 + 1e-6), (eps, mixed_precision)
        assert H.error_estimate <= eps, (eps, mixed_precision)


def test_a_wide_block_the_range_finder_cannot_fit_is_not_stored_low_rank(xp):
    # a far block carrying noise: the range finder of its 501 × 500 parent
    # stops at the rank where low rank stops paying (250) with its residual
    # over the block's budget.  That rank still stores fewer entries than
    # the dense block (250 · 1001 < 501 · 500), so only the residual test
    # keeps it out: without it the errors were 6.7 eps at eps 1e-3 and
    # 690 eps at 1e-6 (reported in the estimate, but over the bound).
    if "jax" in xp.__name__:
        pytest.skip("the backend-neutral comparison resid > budget; on JAX the range finder's "
                    "32 growing shapes compile one by one (a minute)")
    rng = np.random.default_rng(5)
    n = 1001
    x = np.sort(rng.random(n))
    A = np.exp(-np.abs(x[:, None] - x[None, :]))
    A[:300, 700:] += 1e-1 * rng.standard_normal((300, 301))
    for eps in (1e-3, 1e-6):
        H = HMatrix.from_dense(from_numpy(xp, A), eps=eps, tree="index", leaf_size=64)
        assert H.info["rsvd"] > 0 and H.info["split"] > 0  # the block was tried, then split
        assert rel_error(H, A) <= eps
        assert H.error_estimate <= eps


def test_the_build_runs_on_one_blas_thread_and_restores_the_pools():
    # the build's LAPACK and BLAS calls are on blocks of a few hundred rows,
    # where a thread pool costs more than it computes (2 threads: 1.4-2.1x
    # slower builds at n = 8000-20 000): the kernel sees one thread, the
    # caller's pools are back after the build and after a failing one
    threadpoolctl = pytest.importorskip("threadpoolctl")

    def blas_limits():
        return [p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]

    seen = []

    def kernel(X, Y):
        seen.append(blas_limits())
        return kernel_fn("exponential")(X, Y)

    P = points("2", 600, seed=12)
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        before = blas_limits()
        assert before and all(k == 2 for k in before)
        H = HMatrix.from_kernel(kernel, P, eps=1e-6)
        assert blas_limits() == before
        with pytest.raises(ValueError):
            HMatrix.from_kernel(lambda X, Y: kernel(X, Y)[:, :1], P, eps=1e-6)  # wrong shape
        assert blas_limits() == before
    assert seen and all(limits == [1] * len(before) for limits in seen)
    assert rel_error(H, dense_reference("exponential", P)) <= 1e-6


def test_float32(xp):
    A = DENSE["smooth"]().astype(np.float32)
    H = HMatrix.from_dense(from_numpy(xp, A, dtype="float32"), eps=1e-3, leaf_size=32)
    assert H.dtype == from_numpy(xp, A, dtype="float32").dtype
    assert rel_error(H, A.astype(np.float64)) <= 1e-3
    with pytest.raises(ValueError, match="below what"):
        HMatrix.from_dense(from_numpy(xp, A, dtype="float32"), eps=1e-6)


def test_blocks_partition_and_plot():
    import matplotlib

    matplotlib.use("Agg")
    import array_api_compat.numpy as xp_np

    A = DENSE["smooth-rect"]()
    H = HMatrix.from_dense(xp_np.asarray(A), eps=1e-6, leaf_size=16)
    cover = np.zeros(A.shape, dtype=int)
    for b in H.blocks():
        cover[b["row0"]:b["row0"] + b["m"], b["col0"]:b["col0"] + b["n"]] += 1
    assert np.all(cover == 1)
    ax = plot(H)
    assert len(ax.patches) == len(H.blocks())
    with pytest.raises(TypeError, match="H must be an HMatrix"):
        plot(A)


# -- bad input ----------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"eps": 0.0}, ValueError, "eps must be in"),
        ({"eps": 1.0}, ValueError, "eps must be in"),
        ({"eps": -1e-3}, ValueError, "eps must be in"),
        ({"eps": "small"}, TypeError, "eps must be a real number"),
        ({"eta": 0.0}, ValueError, "eta must be a finite positive number"),
        ({"eta": -2.0}, ValueError, "eta must be"),
        ({"leaf_size": 0}, ValueError, "leaf_size must be positive"),
        ({"leaf_size": 4.0}, TypeError, "leaf_size must be an int"),
        ({"split": "median"}, ValueError, "split must be"),
        ({"admissibility": "strong"}, ValueError, "admissibility must be"),
    ],
)
def test_from_kernel_bad_arguments(xp, kwargs, exc, match):
    P = from_numpy(xp, points("2", 20))
    with pytest.raises(exc, match=match):
        HMatrix.from_kernel(kernel_fn("cauchy"), P, **kwargs)


def test_from_kernel_bad_points_and_kernels(xp):
    k = kernel_fn("cauchy")
    with pytest.raises(ValueError, match="points must be a non-empty 2-D"):
        HMatrix.from_kernel(k, from_numpy(xp, np.ones(10)))
    with pytest.raises(ValueError, match="points contains NaN"):
        HMatrix.from_kernel(k, from_numpy(xp, np.array([[0.0], [np.nan]])))
    with pytest.raises(TypeError, match="kernel must be callable"):
        HMatrix.from_kernel(None, from_numpy(xp, np.ones((4, 1))))
    with pytest.raises(ValueError, match=r"kernel \(call 1\) returned shape \(\d+, 1\) \(expected \(\d+, \d+\)\)"):
        HMatrix.from_kernel(lambda X, Y: k(X, Y)[:, :1], from_numpy(xp, points("2", 20)))
    with pytest.raises(ValueError, match=r"kernel \(call 1\) returned NaN or Inf"):
        HMatrix.from_kernel(lambda X, Y: k(X, Y) / 0.0 * 0.0, from_numpy(xp, points("2", 20)))
    with pytest.raises(TypeError, match=r"kernel \(call 1\) must return an array"):
        HMatrix.from_kernel(lambda X, Y: 1.0, from_numpy(xp, points("2", 20)))
    with pytest.raises(ValueError, match="col_points must have 2 columns"):
        HMatrix.from_kernel(k, from_numpy(xp, points("2", 20)), col_points=from_numpy(xp, points("3", 5)))


@pytest.mark.parametrize("fault", ["nan", "shape"])
def test_kernel_fault_at_a_later_call_is_named(xp, fault):
    """A kernel that goes wrong only on a later block is caught at that call, by number."""
    k = kernel_fn("cauchy")
    calls = {"n": 0}

    def faulty(X, Y):
        calls["n"] += 1
        K = k(X, Y)
        if calls["n"] < 5:
            return K
        return K * math.nan if fault == "nan" else K[:, :-1]

    words = "returned NaN or Inf" if fault == "nan" else "returned shape"
    with pytest.raises(ValueError, match=rf"kernel \(call 5\) {words}"):
        HMatrix.from_kernel(faulty, from_numpy(xp, points("2", 300)), eps=1e-6, leaf_size=16)
    assert calls["n"] == 5


def test_mixed_namespaces_rejected():
    import torch

    P = points("2", 20)
    with pytest.raises(TypeError, match="col_points is a PyTorch array"):
        HMatrix.from_kernel(kernel_fn("cauchy"), np.asarray(P), col_points=torch.asarray(P))
    H = HMatrix.from_dense(np.asarray(DENSE["smooth"]()), eps=1e-4)
    with pytest.raises(TypeError, match="x must be an array of the H-matrix's namespace"):
        H @ torch.ones(200, dtype=torch.float64)


def test_from_dense_bad_input(xp):
    A = DENSE["smooth"]()
    with pytest.raises(ValueError, match="A must be a non-empty 2-D"):
        HMatrix.from_dense(from_numpy(xp, A[0]))
    B = A.copy()
    B[3, 4] = np.inf
    with pytest.raises(ValueError, match="A contains NaN or Inf"):
        HMatrix.from_dense(from_numpy(xp, B))
    with pytest.raises(ValueError, match="tree must be"):
        HMatrix.from_dense(from_numpy(xp, A), tree="kd")
    with pytest.raises(ValueError, match="eps must be in"):
        HMatrix.from_dense(from_numpy(xp, A), eps=2.0)
    with pytest.raises(ValueError, match="eta must be a finite positive number"):
        HMatrix.from_dense(from_numpy(xp, A), eta=0)
    with pytest.raises(ValueError, match="leaf_size must be positive"):
        HMatrix.from_dense(from_numpy(xp, A), leaf_size=0)
    H = HMatrix.from_dense(from_numpy(xp, A), eps=1e-3)
    with pytest.raises(ValueError, match=r"x must have shape \(200,\)"):
        H @ from_numpy(xp, np.ones(199))
    with pytest.raises(ValueError, match=r"x must have shape \(200,\)"):
        H.rmatvec(from_numpy(xp, np.ones((3, 200))))


# -- property: the bound on random inputs --------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    m=st.integers(1, 150),
    n=st.integers(1, 150),
    rank=st.integers(0, 20),
    noise=st.sampled_from([0.0, 1e-8, 1e-4, 1e-1]),
    eps=st.floats(1e-10, 0.5),
    leaf=st.integers(1, 40),
    tree=st.sampled_from(["embedding", "index"]),
    seed=st.integers(0, 10_000),
)
def test_dense_bound_property(m, n, rank, noise, eps, leaf, tree, seed):
    import array_api_compat.numpy as xp_np

    rng = np.random.default_rng(seed)
    A = rng.standard_normal((m, rank)) @ rng.standard_normal((rank, n)) + noise * rng.standard_normal((m, n))
    if not np.any(A):
        A[0, 0] = 1.0
    H = HMatrix.from_dense(xp_np.asarray(A), eps=eps, leaf_size=leaf, tree=tree)
    assert np.linalg.norm(H.to_dense() - A) <= eps * np.linalg.norm(A)
    x = rng.standard_normal((n, 2))
    np.testing.assert_allclose(H @ x, H.to_dense() @ x, rtol=1e-9, atol=1e-9 * np.abs(A).sum())


@settings(max_examples=15, deadline=None)
@given(
    n=st.integers(2, 400),
    dim=st.integers(1, 3),
    name=st.sampled_from(sorted(RADIAL)),
    eps=st.floats(1e-10, 0.1),
    leaf=st.integers(4, 64),
    eta=st.floats(0.5, 4.0),
    aca_min=st.integers(4, 64),
    seed=st.integers(0, 10_000),
)
def test_kernel_bound_property(n, dim, name, eps, leaf, eta, aca_min, seed):
    import array_api_compat.numpy as xp_np

    P = np.random.default_rng(seed).random((n, dim))
    A = dense_reference(name, P)
    H = HMatrix.from_kernel(kernel_fn(name), xp_np.asarray(P), eps=eps, leaf_size=leaf, eta=eta,
                            aca_min_size=aca_min)
    assert np.linalg.norm(H.to_dense() - A) <= eps * np.linalg.norm(A)
