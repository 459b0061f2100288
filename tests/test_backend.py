"""Tests for natgrad.backend: namespaces, devices, dtypes, dispatched linear
algebra, random numbers and conversions, on every backend."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import from_numpy, spd_matrix, to_numpy
from natgrad import backend


def test_import_natgrad_imports_no_optional_package():
    code = (
        "import sys, numpy, natgrad, natgrad.linalg, natgrad.backend\n"
        "from natgrad import backend\n"
        "a = numpy.ones(3)\n"
        "backend.namespace(a=a); backend.to_float(backend.namespace(a).sum(a))\n"  # tracer test imports no jax
        "bad = [m for m in ('torch', 'jax', 'cupy', 'numba', 'dask', 'matplotlib', 'tqdm') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_namespace_of_each_backend(xp):
    a = from_numpy(xp, np.ones(3))
    assert backend.namespace(a) is xp
    assert backend.namespace(a, 2.0, None, x=a) is xp


def test_namespace_rejects_two_libraries():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match=r"b is a PyTorch array but A is a NumPy array"):
        backend.namespace(A=np.ones(2), b=torch.ones(2))


def test_namespace_rejects_two_devices():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        # torch's "meta" device stands in for a second device without a GPU.
        a, b = torch.ones(2), torch.ones(2, device="meta")
    else:  # pragma: no cover - GPU machines
        a, b = torch.ones(2), torch.ones(2, device="cuda")
    with pytest.raises(TypeError, match=r"b is on device .* but a is on device"):
        backend.namespace(a=a, b=b)


def test_namespace_rejects_non_arrays():
    with pytest.raises(TypeError, match=r"b must be an array"):
        backend.namespace(A=np.ones(2), b=[1.0, 2.0])
    with pytest.raises(TypeError, match="at least one array"):
        backend.namespace(1.0, None)


def test_float_dtype_and_eps(xp):
    f32 = from_numpy(xp, np.ones(2), "float32")
    f64 = from_numpy(xp, np.ones(2), "float64")
    ints = xp.asarray([1, 2, 3])
    assert backend.float_dtype(xp, f32) == xp.float32
    assert backend.float_dtype(xp, f32, f64) == xp.float64
    assert backend.float_dtype(xp, ints) == xp.float64
    assert backend.eps(xp.float32, xp) == pytest.approx(np.finfo(np.float32).eps)
    assert backend.eps(xp.float64, xp) == pytest.approx(np.finfo(np.float64).eps)
    assert backend.is_low_precision(xp.float32, xp)
    assert not backend.is_low_precision(xp.float64, xp)


def test_sync_interval_is_one_on_cpu(xp, backend_name):
    a = from_numpy(xp, np.ones(3))
    expected = 10 if backend_name == "cupy" else 1
    assert backend.sync_interval(a) == expected


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_add_identity_returns_a_new_shifted_matrix(xp, dtype):
    rng = np.random.default_rng(11)
    A = rng.standard_normal((7, 7))
    A_x = from_numpy(xp, A, dtype)
    K = backend.add_identity(A_x, 0.75)
    assert K.dtype == A_x.dtype and tuple(K.shape) == (7, 7)
    assert backend.device(K) == backend.device(A_x)
    # float32 rounding of the shifted diagonal only
    np.testing.assert_allclose(to_numpy(K), A.astype(dtype) + 0.75 * np.eye(7), rtol=1e-6 if dtype == "float32" else 0)
    np.testing.assert_array_equal(to_numpy(A_x), A.astype(dtype))  # input untouched


def test_add_identity_rejects_non_square(xp):
    with pytest.raises(ValueError, match=r"A must be a square 2-D array, got shape \(3, 4\)"):
        backend.add_identity(from_numpy(xp, np.ones((3, 4))), 1.0)
    with pytest.raises(ValueError, match="square 2-D"):
        backend.add_identity(from_numpy(xp, np.ones(3)), 1.0)


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-12), ("float32", 1e-4)])
def test_cholesky_and_cho_solve(xp, dtype, tol):
    A = spd_matrix(30, 1e2, seed=1)
    b = np.random.default_rng(2).standard_normal((30, 3))
    L = backend.cholesky(from_numpy(xp, A, dtype))
    assert L.dtype == getattr(xp, dtype)
    L_ref = np.linalg.cholesky(A)
    np.testing.assert_allclose(to_numpy(L), L_ref, atol=tol * 10)
    for rhs in (b, b[:, 0]):
        x = backend.cho_solve(L, from_numpy(xp, rhs, dtype))
        assert tuple(x.shape) == rhs.shape
        np.testing.assert_allclose(to_numpy(x), np.linalg.solve(A, rhs), rtol=tol * 1e2, atol=tol * 1e2)


def test_cholesky_upper(xp):
    A = spd_matrix(12, 10.0, seed=3)
    U = backend.cholesky(from_numpy(xp, A), lower=False)
    np.testing.assert_allclose(to_numpy(U), np.linalg.cholesky(A).T, atol=1e-12)
    b = np.arange(12.0)
    x = backend.cho_solve(U, from_numpy(xp, b), lower=False)
    np.testing.assert_allclose(to_numpy(x), np.linalg.solve(A, b), rtol=1e-10)


def test_cholesky_failure_is_reported_on_every_backend(xp):
    A = np.diag([1.0, -1.0, 2.0])
    with pytest.raises(backend.CholeskyError):
        backend.cholesky(from_numpy(xp, A))


@pytest.mark.parametrize("lower", [True, False])
@pytest.mark.parametrize("trans", [False, True])
def test_solve_triangular(xp, lower, trans):
    rng = np.random.default_rng(4)
    T = np.tril(rng.standard_normal((15, 15))) + 5 * np.eye(15)
    if not lower:
        T = T.T
    b = rng.standard_normal((15, 2))
    for rhs in (b, b[:, 1]):
        x = backend.solve_triangular(from_numpy(xp, T), from_numpy(xp, rhs), lower=lower, trans=trans)
        ref = scipy.linalg.solve_triangular(T, rhs, lower=lower, trans=1 if trans else 0)
        np.testing.assert_allclose(to_numpy(x), ref, rtol=1e-10, atol=1e-12)


def test_eigh_qr_svd(xp):
    rng = np.random.default_rng(5)
    S = rng.standard_normal((10, 10))
    S = S + S.T
    w, V = backend.eigh(from_numpy(xp, S))
    np.testing.assert_allclose(to_numpy(w), np.linalg.eigvalsh(S), atol=1e-12)
    V = to_numpy(V)
    np.testing.assert_allclose(V @ np.diag(to_numpy(w)) @ V.T, S, atol=1e-12)

    A = rng.standard_normal((12, 5))
    Q, R = backend.qr(from_numpy(xp, A))
    assert tuple(Q.shape) == (12, 5) and tuple(R.shape) == (5, 5)
    np.testing.assert_allclose(to_numpy(Q) @ to_numpy(R), A, atol=1e-12)
    np.testing.assert_allclose(to_numpy(Q).T @ to_numpy(Q), np.eye(5), atol=1e-12)

    U, s, Vh = backend.svd(from_numpy(xp, A))
    np.testing.assert_allclose(to_numpy(s), np.linalg.svd(A, compute_uv=False), atol=1e-12)
    np.testing.assert_allclose(to_numpy(U) * to_numpy(s) @ to_numpy(Vh), A, atol=1e-12)


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-12), ("float32", 1e-5)])
@pytest.mark.parametrize("shape", [(9, 6), (6, 9)])
def test_pivoted_qr_truncation_error_is_the_tail_of_the_rows(xp, backend_name, dtype, tol, shape):
    # A[:, perm] = Q R; dropping the rows i >= r of R costs exactly
    # sqrt(sum_{i>=r} |R_i|^2), for every r (what the H-matrix build charges)
    m, n = shape
    rng = np.random.default_rng(11)
    A = (rng.standard_normal((m, 4)) * [1.0, 0.3, 1e-2, 1e-4]) @ rng.standard_normal((4, n))
    A += 1e-7 * rng.standard_normal((m, n))
    A_x = from_numpy(xp, A, dtype)
    f = backend.pivoted_qr(A_x)
    if backend_name != "numpy":
        assert f is None  # no pivoted QR in the library's namespace: callers use the SVD
        return
    A = A.astype(dtype)
    k = min(m, n)
    R, perm = np.asarray(f.R), np.asarray(f.perm)
    assert R.shape == (k, n) and sorted(perm.tolist()) == list(range(n))
    assert np.all(np.tril(R, -1) == 0)
    d = np.abs(np.diag(R))
    assert np.all(d[1:] <= d[:-1] * (1 + tol))  # pivoting: |R_ii| does not increase
    rows2 = np.sum(R.astype(np.float64) ** 2, axis=1)
    scale = np.linalg.norm(A)
    for r in range(k + 1):
        Q = np.asarray(f.Q(r))
        assert Q.shape == (m, r)
        np.testing.assert_allclose(Q.T @ Q, np.eye(r), atol=tol * 10)
        err = np.linalg.norm(A[:, perm].astype(np.float64) - Q @ R[:r].astype(np.float64))
        assert abs(err - np.sqrt(rows2[r:].sum())) <= 10 * tol * scale
    np.testing.assert_array_equal(to_numpy(A_x), A)  # input untouched
    with pytest.raises(ValueError, match="r must be"):
        f.Q(k + 1)


def test_pivoted_qr_refuses_a_vector():
    with pytest.raises(ValueError, match="2-D"):
        backend.pivoted_qr(np.ones(3))


def _neighbour_block(m, n, seed, length=1.0):
    """exp(-r/length) between m points and n points in the neighbouring
    unit square: a near-field block, ranks 20-40 at 1e-6."""
    rng = np.random.default_rng(seed)
    X, Y = rng.random((m, 2)), rng.random((n, 2)) + [1.0, 0.0]
    return np.exp(-np.linalg.norm(X[:, None, :] - Y[None, :, :], axis=2) / length)


def _qr_rank(f, tol):
    # the H-matrix build's rule: the fewest rows whose tail, with rest2, is within tol
    tails = np.cumsum(np.asarray(f.row_norms2)[::-1])
    return len(tails) - int(np.searchsorted(tails, tol * tol - f.rest2, side="right"))


@pytest.mark.parametrize("shape", [(128, 128), (200, 96), (70, 64)])
@pytest.mark.parametrize("rel", [1e-6, 1e-3])
def test_truncated_pivoted_qr_bounds_its_error_at_every_rank(xp, backend_name, shape, rel):
    # the QR through the Gram matrix: Q orthonormal, every truncation's
    # error within rest2 + the tail of the rows (and no further above it
    # than the rounding allowance), rest2 within tol²/2 + that allowance,
    # and the rank the build reads off it that of geqp3's full QR
    m, n = shape
    A = _neighbour_block(m, n, seed=m + n)
    tol = rel * np.linalg.norm(A)
    A_x = from_numpy(xp, A)
    f = backend.truncated_pivoted_qr(A_x, tol)
    if backend_name != "numpy":
        assert f is None  # as pivoted_qr: callers use the SVD
        return
    assert isinstance(f, backend.GramPivotedQR)
    allowance = n * np.finfo(np.float64).eps * np.sum(A * A)
    assert f.rest2 <= tol * tol / 2 + allowance
    rows2 = np.asarray(f.row_norms2)
    for r in range(len(rows2) + 1):
        Q, W = f.truncated(r)
        assert Q.shape == (m, r) and W.shape == (r, n)
        np.testing.assert_allclose(Q.T @ Q, np.eye(r), atol=1e-13)
        err2 = np.sum((A - Q @ W) ** 2)
        claimed = f.rest2 + rows2[r:].sum()
        assert err2 <= claimed and claimed - err2 <= 2 * allowance
    assert abs(_qr_rank(f, tol) - _qr_rank(backend.pivoted_qr(A), tol)) <= 1
    assert f.factored_rows == len(rows2) and backend.pivoted_qr(A).factored_rows == n
    assert sorted(np.asarray(f.perm).tolist()) == list(range(n))
    R = np.asarray(f.R)
    assert np.all(np.abs(np.tril(R, -1)) <= 1e-12 * np.abs(R[0, 0]))  # upper trapezoidal in pivot order
    np.testing.assert_array_equal(to_numpy(A_x), A)  # input untouched


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), m=st.integers(64, 200), n=st.integers(64, 140),
       length=st.floats(0.2, 5.0), margin=st.floats(1.05, 50.0))
def test_truncated_pivoted_qr_bound_holds_down_to_the_edge_of_the_gram_route(seed, m, n, length, margin):
    # rest2 = ‖A‖² − ‖W‖² loses about u ‖A‖² to cancellation; near the
    # route's edge (tol² = 8 n u ‖A‖² · margin) that is a visible share of
    # rest2, and the allowance n u ‖A‖² added to it keeps the bound (without
    # it, 17 of 40 such blocks had ‖A − QW‖² above rest2)
    A = _neighbour_block(m, n, seed, length)
    cols = min(m, n)
    A = A if m >= n else A.T
    tol = np.sqrt(margin * 8 * cols * np.finfo(np.float64).eps * np.sum(A * A))
    f = backend.truncated_pivoted_qr(A, tol)
    assert f is not None and f.rest2 <= tol * tol
    rows2 = np.asarray(f.row_norms2)
    for r in {0, len(rows2) // 2, len(rows2)}:
        Q, W = f.truncated(r)
        assert np.sum((A - Q @ W) ** 2) <= f.rest2 + rows2[r:].sum()


@pytest.mark.parametrize("case", ["tolerance near the Gram's rounding", "narrow", "float32"])
def test_truncated_pivoted_qr_is_the_full_qr_where_the_gram_route_does_not_apply(case):
    # pivots chosen on AᵀA are trustworthy only while tol² stands 8 n u ‖A‖²
    # above its rounding; below 64 columns geqp3 is as fast; LAPACK's pstrf
    # route is float64 only.  has_truncated_pivoted_qr says the same
    A = _neighbour_block(128, 40 if case == "narrow" else 128, seed=3)
    # tol² = 4 n u ‖A‖²: above the rounding, but the allowance for it would
    # take a quarter of the budget
    rel = np.sqrt(4 * 128 * np.finfo(np.float64).eps) if case == "tolerance near the Gram's rounding" else 1e-4
    dtype = np.float32 if case == "float32" else np.float64
    A = A.astype(dtype)
    f = backend.truncated_pivoted_qr(A, rel * np.linalg.norm(A))
    assert type(f) is backend.PivotedQR and f.rest2 == 0.0
    assert not backend.has_truncated_pivoted_qr(backend.namespace(A), dtype, A.shape[1], rel)
    assert backend.has_truncated_pivoted_qr(backend.namespace(A), np.float64, 128, 1e-4)
    ok = backend.truncated_pivoted_qr(_neighbour_block(128, 128, seed=3), 1e-4 * np.linalg.norm(A))
    assert type(ok) is backend.GramPivotedQR


def test_truncated_pivoted_qr_stops_at_max_rank():
    # a block that needs more than max_rank rows: max_rank + 1 estimated
    # rows whose tail is beyond the tolerance, and no factors
    rng = np.random.default_rng(5)
    A = rng.standard_normal((100, 80))
    tol = 1e-6 * np.linalg.norm(A)
    f = backend.truncated_pivoted_qr(A, tol, max_rank=10)
    assert len(f.row_norms2) == 11 and f.rest2 + f.row_norms2[10] > tol * tol
    assert _qr_rank(f, tol) == 11 and f.factored_rows == 0
    np.testing.assert_allclose(np.sum(f.row_norms2) + f.rest2, np.sum(A * A), rtol=1e-12)
    with pytest.raises(ValueError, match="r must be"):
        f.truncated(1)
    # rank 5 under noise the cautious stopping rule keeps pivoting on, but
    # the tail rule does not need: max_rank 5 is enough, and formed
    B = rng.standard_normal((100, 5)) @ rng.standard_normal((5, 80))
    noise = rng.standard_normal((100, 80))
    tol = 1e-6 * np.linalg.norm(B)
    B += noise * (0.75 * tol / np.linalg.norm(noise))
    g = backend.truncated_pivoted_qr(B, tol)
    assert len(g.row_norms2) > 20 and _qr_rank(g, tol) == 5  # pstrf stops later than needed ...
    h = backend.truncated_pivoted_qr(B, tol, max_rank=5)
    assert len(h.row_norms2) == 5 and h.rest2 <= tol * tol  # ... max_rank stops it where the tolerance is met
    assert h.factored_rows == 5
    Q, W = h.truncated(5)
    assert np.linalg.norm(B - Q @ W) <= tol


def test_truncated_pivoted_qr_of_a_block_below_the_tolerance_keeps_no_rows():
    # pstrf always takes its first pivot: the rank rule then drops it, and
    # the whole block is the error; a zero block has no rows at all
    A = _neighbour_block(90, 70, seed=8)
    tol = 1.01 * np.linalg.norm(A)
    f = backend.truncated_pivoted_qr(A, tol)
    assert _qr_rank(f, tol) == 0 and len(f.row_norms2) <= 1
    assert np.sum(A * A) <= f.rest2 + np.sum(f.row_norms2) and f.rest2 <= tol * tol
    Q, W = f.truncated(0)
    assert Q.shape == (90, 0) and W.shape == (0, 70)
    z = backend.truncated_pivoted_qr(np.zeros((90, 70)), 1e-3)
    assert len(z.row_norms2) == 0 and z.rest2 == 0.0


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_truncated_pivoted_qr_refuses_non_finite_entries_and_survives_huge_ones(bad):
    A = _neighbour_block(100, 80, seed=9)
    B = A.copy()
    B[7, 3] = bad
    with pytest.raises(ValueError, match="NaN or Inf"):
        backend.truncated_pivoted_qr(B, 1e-6)
    # squares that overflow float64 are not an error: geqp3 factors them
    huge = A * 1e160
    f = backend.truncated_pivoted_qr(huge, 1e-6 * 1e160 * np.linalg.norm(A))
    assert type(f) is backend.PivotedQR and np.all(np.isfinite(np.asarray(f.R)))


def test_truncated_pivoted_qr_takes_the_full_qr_when_the_pivots_miss(monkeypatch):
    # rounding in AᵀA can mislead pstrf's pivots or rank: a measured rest2
    # above tol² falls back to geqp3 (simulated: a pstrf that stops at half
    # the rank), never to rows that miss the tolerance
    from natgrad.backend import dense

    pstrf, geqrf, orgqr, syrk = dense._lapack_gram(np.float64)

    def early(G, tol, overwrite_a=0):
        c, piv, rank, info = pstrf(G, tol=tol, overwrite_a=overwrite_a)
        return c, piv, rank // 2, info

    monkeypatch.setattr(dense, "_lapack_gram", lambda dtype: (early, geqrf, orgqr, syrk))
    A = _neighbour_block(128, 128, seed=2)
    tol = 1e-6 * np.linalg.norm(A)
    f = backend.truncated_pivoted_qr(A, tol)
    assert type(f) is backend.PivotedQR
    assert _qr_rank(f, tol) == _qr_rank(backend.pivoted_qr(A), tol)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("shape", [(7, 40), (1, 5), (40, 7)])
def test_gram_matches_dense_product(xp, dtype, shape):
    U = np.random.default_rng(6).standard_normal(shape)
    G = backend.gram(from_numpy(xp, U, dtype))
    assert G.dtype == getattr(xp, dtype)
    tol = 1e-12 if dtype == "float64" else 1e-4
    np.testing.assert_allclose(to_numpy(G), U @ U.T, rtol=tol, atol=tol * np.abs(U @ U.T).max())
    np.testing.assert_array_equal(to_numpy(G), to_numpy(G).T)


def test_gram_of_torch_cpu_tensors_shares_memory_and_keeps_autograd(monkeypatch):
    torch = pytest.importorskip("torch")
    from natgrad.backend import syrk

    monkeypatch.setattr(syrk, "TORCH_SYRK_MIN_WORK", 0.0)  # take the syrk path at test size
    seen = []
    real_gram = syrk.gram
    monkeypatch.setattr(syrk, "gram", lambda U, **kw: seen.append(type(U)) or real_gram(U, **kw))
    U = torch.from_numpy(np.random.default_rng(8).standard_normal((6, 30)))
    before = U.clone()
    G = backend.gram(U)  # through a zero-copy NumPy view and syrk
    assert isinstance(G, torch.Tensor) and G.dtype == torch.float64
    np.testing.assert_allclose(G.numpy(), U.numpy() @ U.numpy().T, rtol=1e-12, atol=1e-12)
    assert torch.equal(G, G.T) and torch.equal(U, before)
    assert np.ndarray in seen  # the product went through NumPy
    strided = U[:, ::3]
    np.testing.assert_allclose(backend.gram(strided).numpy(), strided.numpy() @ strided.numpy().T, rtol=1e-12)
    # a tensor that requires grad stays in PyTorch, so gradients flow through G
    W = U.clone().requires_grad_(True)
    backend.gram(W).sum().backward()
    np.testing.assert_allclose(W.grad.numpy(), 2 * np.ones((6, 6)) @ U.numpy(), rtol=1e-12)


def test_gram_rejects_non_matrix():
    with pytest.raises(ValueError, match="U must be 2-D"):
        backend.gram(np.ones(3))


def test_normal_is_reproducible_and_consistent_across_backends(xp, backend_name):
    a = backend.normal(xp, (4, 3), seed=11)
    b = backend.normal(xp, (4, 3), seed=11)
    c = backend.normal(xp, (4, 3), seed=12)
    assert tuple(a.shape) == (4, 3) and a.dtype == xp.float64
    np.testing.assert_array_equal(to_numpy(a), to_numpy(b))
    assert not np.array_equal(to_numpy(a), to_numpy(c))
    if backend_name != "cupy":  # CuPy draws on the device with its own generator
        np.testing.assert_array_equal(to_numpy(a), np.random.default_rng(11).standard_normal((4, 3)))
    f32 = backend.normal(xp, 5, dtype=xp.float32, seed=0)
    assert f32.dtype == xp.float32 and tuple(f32.shape) == (5,)


def test_to_namespace_round_trip(xp):
    import array_api_compat.numpy as np_xp

    host = np.random.default_rng(7).standard_normal((3, 4))
    a = backend.to_namespace(host, xp)
    assert backend.namespace(a) is xp
    np.testing.assert_array_equal(to_numpy(a), host)
    back = backend.to_namespace(a, np_xp)
    np.testing.assert_array_equal(np.asarray(back), host)
    assert backend.to_namespace(a, xp) is a


def test_to_namespace_is_zero_copy_for_torch():
    torch = pytest.importorskip("torch")
    import array_api_compat.torch as torch_xp

    host = np.arange(6.0)
    t = backend.to_namespace(host, torch_xp)
    host[0] = 42.0  # shared memory: the tensor sees the write
    assert float(t[0]) == 42.0
    assert isinstance(t, torch.Tensor)


def test_all_finite(xp):
    assert backend.all_finite(from_numpy(xp, np.ones(3)))
    assert not backend.all_finite(from_numpy(xp, np.array([1.0, np.nan])))
    assert not backend.all_finite(from_numpy(xp, np.array([np.inf, 1.0])))


# -- JAX transforms ---------------------------------------------------------------
#
# natgrad's solvers and optimisers are eager, host-driven loops; inside jax.jit,
# jax.vmap or jax.grad they must refuse the traced arguments with one clear error
# that says what to do, instead of failing somewhere inside ("b is on device None").

TRANSFORMS = ["jit", "vmap", "grad"]
ADVICE = [
    "cannot be called under jax.jit, jax.vmap or jax.grad",
    "Call them outside the transform",
    "jit your own function",
]


def _under(transform, fn, x):
    """Call ``fn`` (array -> array) on ``x`` under one JAX transformation."""
    import jax
    import jax.numpy as jnp

    if transform == "jit":
        return jax.jit(fn)(x)
    if transform == "vmap":
        return jax.vmap(fn)(jnp.stack([x, 2.0 * x]))
    return jax.grad(lambda v: jnp.sum(fn(v)))(x)


def _assert_traced_error(err, argument=None):
    message = str(err.value)
    for phrase in ADVICE:
        assert phrase in message
    if argument is not None:
        assert message.startswith(f"{argument} is a JAX tracer")


def _jax_problem():
    jnp = pytest.importorskip("jax.numpy")
    rng = np.random.default_rng(21)
    A = spd_matrix(6, cond=10.0, seed=21)
    return jnp, jnp.asarray(A), jnp.asarray(rng.standard_normal(6)), jnp.asarray(rng.standard_normal((4, 6)))


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_namespace_refuses_jax_tracers_and_names_the_argument(transform):
    jnp, A, b, _ = _jax_problem()
    assert issubclass(backend.TracedArrayError, TypeError)

    def fn(v):
        backend.namespace(A=A, b=v)
        return v

    with pytest.raises(backend.TracedArrayError) as err:
        _under(transform, fn, b)
    _assert_traced_error(err, "b")
    assert backend.namespace(A=A, b=b) is backend.namespace(A)  # concrete arrays pass


@pytest.mark.parametrize("sync", ["to_float", "to_bool", "to_int", "all_finite"])
def test_host_syncs_refuse_jax_tracers(sync):
    jnp, _, b, _ = _jax_problem()
    read = getattr(backend, sync)
    reduce = {"to_float": jnp.sum, "to_bool": lambda v: jnp.all(v > 0),
              "to_int": jnp.argmax, "all_finite": lambda v: v}[sync]

    def fn(v):
        read(reduce(v))
        return v

    with pytest.raises(backend.TracedArrayError, match=rf"{sync}\(\) was handed a JAX tracer") as err:
        _under("jit", fn, b)
    _assert_traced_error(err)


def test_pure_dense_functions_still_trace_under_jit():
    """The backend's pure array functions accept tracers, so a user's own jitted
    function may call them; cholesky reads its factor on the host and refuses."""
    import jax

    jnp, A, b, U = _jax_problem()
    A64, b64, U64 = np.asarray(A), np.asarray(b), np.asarray(U)
    L = backend.cholesky(A)
    tol = dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(jax.jit(backend.cho_solve)(L, b), np.linalg.solve(A64, b64), **tol)
    np.testing.assert_allclose(
        jax.jit(backend.solve_triangular)(L, b), scipy.linalg.solve_triangular(np.asarray(L), b64, lower=True), **tol
    )
    np.testing.assert_allclose(jax.jit(backend.gram)(U), U64 @ U64.T, **tol)
    np.testing.assert_allclose(jax.jit(backend.add_identity)(A, 0.5), A64 + 0.5 * np.eye(6), **tol)
    np.testing.assert_allclose(jax.jit(lambda M: backend.eigh(M)[0])(A), np.linalg.eigvalsh(A64), **tol)
    Q, R = jax.jit(backend.qr)(U)
    np.testing.assert_allclose(np.asarray(Q) @ np.asarray(R), U64, **tol)
    np.testing.assert_allclose(jax.jit(lambda M: backend.svd(M)[1])(U), np.linalg.svd(U64, compute_uv=False), **tol)
    with pytest.raises(backend.TracedArrayError) as err:
        jax.jit(backend.cholesky)(A)
    _assert_traced_error(err, "A")


def _solver_calls(A, U):
    from natgrad.linalg import cg, neumann_solve, woodbury_solve

    return {
        "cg": lambda v: cg(A, v).x,
        "woodbury_solve": lambda v: woodbury_solve(U, v, 0.5),
        "neumann_solve": lambda v: neumann_solve(lambda w: A @ w, v, alpha=0.05).x,
    }


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("solver", ["cg", "woodbury_solve", "neumann_solve"])
def test_solvers_under_jax_transforms_raise_the_traced_error(solver, transform):
    _, A, b, U = _jax_problem()
    fn = _solver_calls(A, U)[solver]
    assert np.all(np.isfinite(np.asarray(fn(b))))  # eagerly, the same call works
    with pytest.raises(backend.TracedArrayError) as err:
        _under(transform, fn, b)
    _assert_traced_error(err)


def _optimiser(name):
    from natgrad import optim

    return {
        "ENGD": lambda: optim.ENGD(damping=1e-3),
        "SPRING": lambda: optim.SPRING(damping=1e-3, momentum=0.5),
        "FNGD": lambda: optim.FNGD(damping=1e-3),
        # a short Lanczos: the test is about the traced error, and each eager
        # JAX HVP of the default series compiles anew (86 s under load)
        "SaddleFreeNewton": lambda: optim.SaddleFreeNewton(damping=1e-2, method="lanczos", terms=3),
        "GradientFlow": lambda: optim.GradientFlow(lr=0.1),
    }[name]()


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("name", ["ENGD", "SPRING", "FNGD", "SaddleFreeNewton", "GradientFlow"])
def test_optimiser_step_under_jax_transforms_raises_the_traced_error(name, transform):
    from natgrad.adapters.jax import JaxModel

    jnp, _, theta, X = _jax_problem()
    y = jnp.asarray(np.random.default_rng(22).standard_normal(4))

    def residuals(params, batch):
        inputs, targets = batch
        return jnp.tanh(inputs @ params) - targets

    model = JaxModel(residuals, jnp.zeros(6), loss="mean" if name == "FNGD" else "squared")
    new_params, _ = _optimiser(name).step(theta, model, (X, y))
    assert np.all(np.isfinite(np.asarray(new_params)))  # eagerly, the same step works
    opt = _optimiser(name)
    with pytest.raises(backend.TracedArrayError) as err:
        _under(transform, lambda p: opt.step(p, model, (X, y))[0], theta)
    _assert_traced_error(err, "params")


def test_to_list_reads_values_in_one_transfer(xp):
    values = np.array([1.5, -2.0, 3.25])
    assert backend.to_list(from_numpy(xp, values)) == [1.5, -2.0, 3.25]
    M = np.arange(6.0).reshape(2, 3)
    assert backend.to_list(from_numpy(xp, M)) == M.tolist()


def test_host_syncs_return_python_numbers(xp):
    x = from_numpy(xp, np.array([1.0, 5.0, 2.0]))
    value, index, flag = backend.to_float(xp.sum(x)), backend.to_int(xp.argmax(x)), backend.to_bool(xp.all(x > 0))
    assert (value, index, flag) == (8.0, 1, True)
    assert type(value) is float and type(index) is int and type(flag) is bool


def test_numpy_namespace_is_the_namespace_of_numpy_arrays():
    assert backend.numpy_namespace() is backend.namespace(np.ones(2))


def test_blas_threads_limits_and_restores_the_pools():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from natgrad.backend import blas_threads

    def blas_limits():
        return [p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]

    before = blas_limits()
    assert before, "NumPy's BLAS pool is visible to threadpoolctl"
    with blas_threads(1):
        assert blas_limits() == [1] * len(before)
    assert blas_limits() == before
    with pytest.raises(KeyError):
        with blas_threads(1):
            raise KeyError("restored after an exception too")
    assert blas_limits() == before
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="limit must be a positive int"):
            with blas_threads(bad):
                pass


def test_vecdot_matches_the_conjugated_dot(xp):
    # backend.vecdot delegates to the namespace's vecdot off dask: conj on the first
    # argument, the contracted axis negative (float64 NumPy reference)
    rng = np.random.default_rng(42)
    A, B = rng.standard_normal((7, 4)), rng.standard_normal((7, 4))
    a, b = from_numpy(xp, A), from_numpy(xp, B)
    np.testing.assert_allclose(to_numpy(backend.vecdot(xp, a, b, axis=-2)), np.sum(A * B, axis=0), rtol=1e-14)
    np.testing.assert_allclose(to_numpy(backend.vecdot(xp, a, b)), np.sum(A * B, axis=1), rtol=1e-14)
    C = A + 1j * B
    c = xp.asarray(from_numpy(xp, A), dtype=xp.complex128) + 1j * xp.asarray(from_numpy(xp, B), dtype=xp.complex128)
    np.testing.assert_allclose(to_numpy(backend.vecdot(xp, c, c)), np.sum(np.conj(C) * C, axis=1), rtol=1e-14)


def test_assign_writes_a_row_or_column(xp, backend_name):
    # the buffer comes back with the write, whatever the library (in place
    # where it can be, a new array on JAX); values against the NumPy write
    rng = np.random.default_rng(7)
    B = rng.standard_normal((4, 5))
    row, col = rng.standard_normal(5), rng.standard_normal(4)
    buf = from_numpy(xp, B)
    out = backend.assign(buf, (2, slice(None)), from_numpy(xp, row))
    out = backend.assign(out, (slice(None), 3), from_numpy(xp, col))
    ref = B.copy()
    ref[2, :] = row
    ref[:, 3] = col
    np.testing.assert_array_equal(to_numpy(out), ref)
    if backend_name == "jax":
        np.testing.assert_array_equal(to_numpy(buf), B)  # immutable: the write made a new array
    else:
        assert out is buf  # no copy of the buffer per write
    with pytest.raises(TypeError):
        backend.assign([[0.0]], (0, 0), 1.0)


def test_stack_padded_places_each_matrix_and_zeros_the_rest(xp):
    rng = np.random.default_rng(11)
    mats = [rng.standard_normal(shape) for shape in [(3, 5), (4, 2), (1, 1), (4, 5)]]
    given = [from_numpy(xp, M) for M in mats]
    S = backend.stack_padded(given, 4, 6)
    assert backend.namespace(S) is xp and tuple(S.shape) == (4, 4, 6)
    expected = np.zeros((4, 4, 6))
    for i, M in enumerate(mats):
        expected[i, :M.shape[0], :M.shape[1]] = M
    np.testing.assert_array_equal(to_numpy(S), expected)
    for M, G in zip(mats, given):  # the inputs are not written
        np.testing.assert_array_equal(to_numpy(G), M)


def test_stack_padded_refuses_what_does_not_fit():
    with pytest.raises(ValueError, match="at least one"):
        backend.stack_padded([], 2, 2)
    with pytest.raises(ValueError, match="at most 2 x 2"):
        backend.stack_padded([np.ones((2, 2)), np.ones((3, 1))], 2, 2)
    with pytest.raises(ValueError, match="at most 2 x 2"):
        backend.stack_padded([np.ones(2)], 2, 2)


@pytest.mark.parametrize("layout", ["gaps", "to-the-end", "unequal"])
def test_segment_bounds_match_per_segment_reductions(xp, layout):
    rng = np.random.default_rng(3)
    A = rng.standard_normal((40, 3))
    segments = {
        "gaps": [(2, 5), (5, 6), (9, 20), (30, 33)],  # rows between segments belong to none
        "to-the-end": [(0, 7), (7, 15), (15, 40)],
        "unequal": [(0, 1), (1, 2), (2, 3), (3, 4), (4, 40)],  # padding would gather 5 x 36 > 4 x 40 rows
    }[layout]
    starts, stops = [s for s, _ in segments], [e for _, e in segments]
    lo, hi = backend.segment_bounds(from_numpy(xp, A), starts, stops)
    np.testing.assert_array_equal(to_numpy(lo), np.stack([A[s:e].min(axis=0) for s, e in segments]))
    np.testing.assert_array_equal(to_numpy(hi), np.stack([A[s:e].max(axis=0) for s, e in segments]))


def test_segment_bounds_refuses_bad_segments():
    A = np.ones((5, 2))
    for starts, stops in [([], []), ([0], [2, 3]), ([0, 1], [2, 3]), ([3], [3]), ([2], [6])]:
        with pytest.raises(ValueError, match="segments|starts and stops"):
            backend.segment_bounds(A, starts, stops)
