"""natgrad on dask arrays (issue 20): every solver that scales out gives the
NumPy float64 answer, on dask's default (threaded) scheduler and on a
two-worker ``dask.distributed.LocalCluster`` (started once for this module
and closed at its end).

The problems are small (they fit one machine, so NumPy and SciPy give the
reference) but chunked the way the large ones are: tall Jacobians by rows,
wide ones (Woodbury) by columns, kernel matrices by rows.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

from faults import Fault, InjectedFault, assert_honest_solve, outcome  # noqa: E402

from natgrad import backend  # noqa: E402
from natgrad.adapters.callables import CallableModel  # noqa: E402
from natgrad.backend import lazy  # noqa: E402
from natgrad.hmatrix import HMatrix  # noqa: E402
from natgrad.linalg import (  # noqa: E402
    SolveStatus,
    cg,
    from_matvec,
    lanczos,
    minres,
    neumann_solve,
    nystrom,
    nystrom_pcg,
    saddle_free_solve,
    woodbury_solve,
)
from natgrad.optim import ENGD, gauss_newton_direction  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    """Two single-threaded worker processes, closed when the module ends."""
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
        memory_limit="1GiB",
    ) as cluster, distributed.Client(cluster, set_as_default=False) as client:
        yield client


@pytest.fixture(params=["threads", "cluster"])
def scheduler(request):
    """Run the test on dask's threaded scheduler or on the LocalCluster."""
    if request.param == "threads":
        with dask.config.set(scheduler="threads"):
            yield "threads"
    else:
        client = request.getfixturevalue("cluster")
        with client.as_current():
            yield "cluster"


def rel(x, ref) -> float:
    """‖x − ref‖ / ‖ref‖ in float64 (``x`` computed from dask)."""
    x = np.asarray(x, dtype=np.float64)
    return float(np.linalg.norm(x - ref) / np.linalg.norm(ref))


def tall_jacobian(N: int, P: int, seed: int) -> np.ndarray:
    """A random-features Jacobian ``cos(X W + b)``: tall, full column rank,
    with a decaying spectrum (not a random Gaussian matrix)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, 3))
    W = rng.standard_normal((3, P)) * np.linspace(0.2, 3.0, P)
    return np.cos(X @ W + rng.uniform(0, 2 * np.pi, P))


def rbf_kernel(n: int, seed: int, width: float) -> np.ndarray:
    """``exp(−‖x − y‖²/width)`` at ``n`` uniform points in the unit square
    (the wider, the faster the spectrum decays and the fewer CG iterations)."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(size=(n, 2))
    return np.exp(-np.sum((X[:, None] - X[None]) ** 2, axis=-1) / width)


def test_namespace_and_library_name():
    x = da.ones(4, chunks=2)
    xp = backend.namespace(x=x)
    assert backend.is_dask(xp) and backend.library_name(xp) == "dask"
    assert backend.is_lazy(x) and not backend.is_lazy(np.ones(2))
    assert backend.sync_interval(x) == 10  # checks every 10 iterations, as on a GPU
    with pytest.raises(TypeError, match="b is a NumPy array but a is a dask array"):
        backend.namespace(a=x, b=np.ones(4))


def test_cholesky_returns_the_triangle_asked_for(scheduler):
    """array-api-compat's dask ``cholesky(upper=False)`` returns the upper
    factor; natgrad asks dask for the triangle itself."""
    rng = np.random.default_rng(0)
    G = rng.standard_normal((30, 30))
    A = G @ G.T + 30 * np.eye(30)
    Ad = da.from_array(A, chunks=(10, 30))  # not square chunks: rechunked
    L = np.asarray(backend.cholesky(Ad))
    np.testing.assert_allclose(L, np.linalg.cholesky(A), rtol=1e-12, atol=1e-12)
    U = np.asarray(backend.cholesky(Ad, lower=False))
    np.testing.assert_allclose(U, np.linalg.cholesky(A).T, rtol=1e-12, atol=1e-12)
    B = rng.standard_normal((30, 7))
    Bd = da.from_array(B, chunks=(30, 3))  # column chunks are kept
    X = backend.cho_solve(backend.cholesky(Ad), Bd)
    assert rel(X, np.linalg.solve(A, B)) < 1e-12
    Lt = np.tril(rng.standard_normal((30, 30))) + 5 * np.eye(30)
    for trans in (False, True):
        x = backend.solve_triangular(da.from_array(Lt, chunks=10), Bd, lower=True, trans=trans)
        assert rel(x, scipy.linalg.solve_triangular(Lt, B, lower=True, trans=int(trans))) < 1e-12


def test_cholesky_breakdown_is_a_cholesky_error(scheduler):
    A = np.diag([1.0, -1.0, 2.0, 3.0])
    with pytest.raises(backend.CholeskyError, match="Cholesky factorisation failed"):
        backend.cholesky(da.from_array(A, chunks=2))
    A[1, 1] = np.nan
    with pytest.raises(backend.CholeskyError):
        backend.cholesky(da.from_array(A, chunks=2))


def test_qr_svd_eigh(scheduler):
    J = tall_jacobian(400, 12, seed=1)
    Jd = da.from_array(J, chunks=(100, 6))  # column chunks merged for TSQR
    Q, R = backend.qr(Jd)
    np.testing.assert_allclose(np.asarray(Q @ R), J, atol=1e-12)
    np.testing.assert_allclose(np.asarray(Q.T @ Q), np.eye(12), atol=1e-12)
    U, s, Vh = backend.svd(Jd)
    np.testing.assert_allclose(np.asarray(s), np.linalg.svd(J, compute_uv=False), rtol=1e-12)
    U, s, Vh = backend.svd(Jd.T)  # wide: TSQR of the transpose
    np.testing.assert_allclose(np.asarray(s), np.linalg.svd(J, compute_uv=False), rtol=1e-12)
    G = J.T @ J
    w, V = backend.eigh(da.from_array(G, chunks=6))
    np.testing.assert_allclose(np.asarray(w), np.linalg.eigvalsh(G), rtol=1e-12)


def test_large_client_operations_are_refused(monkeypatch):
    """Nothing large is gathered on the client behind the caller's back."""
    monkeypatch.setattr(lazy, "CLIENT_MAX_SIZE", 20)
    A = da.eye(30, chunks=10)
    with pytest.raises(backend.DistributedUnsupportedError, match=r"eigh .* shape \(30, 30\)"):
        backend.eigh(A)
    with pytest.raises(backend.DistributedUnsupportedError, match="svd"):
        backend.svd(da.ones((40, 30), chunks=10))
    with pytest.raises(backend.DistributedUnsupportedError, match="qr"):
        backend.qr(da.ones((40, 30), chunks=10))


def test_hmatrices_refuse_dask_arrays():
    """H-matrices do not run distributed, and say so instead of failing deep
    inside (an AttributeError for ``__dlpack__`` before)."""
    X = da.from_array(np.random.default_rng(20).uniform(size=(40, 2)), chunks=20)
    with pytest.raises(backend.DistributedUnsupportedError, match=r"points is a dask array.*points\.compute\(\)"):
        HMatrix.from_kernel(lambda x, y: x[:, :1] + y[:, 0], X)
    with pytest.raises(backend.DistributedUnsupportedError, match="A is a dask array, and HMatrix.from_dense"):
        HMatrix.from_dense(da.eye(40, chunks=20))


def test_random_normal_is_drawn_on_the_workers():
    xp = backend.namespace(da.ones(1))
    a = backend.normal(xp, (20_000, 8), seed=3)
    assert backend.is_lazy(a) and a.dtype == np.float64
    b = np.asarray(backend.normal(xp, (20_000, 8), seed=3))
    np.testing.assert_array_equal(np.asarray(a), b)  # reproducible for a seed
    assert abs(b.mean()) < 0.02 and abs(b.std() - 1.0) < 0.02
    assert backend.normal(xp, 5, dtype=xp.float32, seed=0).dtype == np.float32


def test_persist_cuts_the_graph():
    x = da.ones(10, chunks=5)
    for _ in range(20):
        x = x + 1.0
    y, none, eager = backend.persist(x, None, np.ones(2))
    assert len(y.__dask_graph__()) == 2  # one task per chunk
    assert none is None and isinstance(eager, np.ndarray)
    np.testing.assert_array_equal(np.asarray(y), np.full(10, 21.0))


@pytest.mark.parametrize("solver", [cg, minres])
def test_krylov_on_a_row_chunked_matrix(scheduler, solver):
    K = rbf_kernel(200, seed=2, width=1.0) + 0.5 * np.eye(200)  # 19 iterations
    b = np.random.default_rng(3).standard_normal(200)
    Kd, bd = da.from_array(K, chunks=(100, 200)), da.from_array(b, chunks=100)
    res = solver(Kd, bd, rtol=1e-12, maxiter=500, record_history=True)
    assert res.converged, res.info
    assert backend.is_lazy(res.x)
    history = res.stats["residual_history"]  # read from dask in one transfer
    assert len(history) >= 2 and history[-1] <= 1e-12 * np.linalg.norm(b) * 1.01
    assert rel(res.x, np.linalg.solve(K, b)) < 1e-9


def test_cg_graph_stays_bounded():
    """The iterate of a long solve has the graph of a short one: the state
    is persisted at every check, so iteration 200 costs what iteration 5 does."""
    K = rbf_kernel(60, seed=4, width=0.1) + 1e-3 * np.eye(60)
    Kd = da.from_array(K, chunks=(30, 60))
    bd = da.from_array(np.random.default_rng(5).standard_normal(60), chunks=30)
    sizes = []
    with dask.config.set(scheduler="sync"):
        for maxiter in (20, 60):
            res = cg(Kd, bd, rtol=1e-30, maxiter=maxiter)
            assert res.iterations == maxiter
            sizes.append(len(res.x.__dask_graph__()))
    assert sizes[1] == sizes[0] and sizes[0] < 200, sizes


def _indefinite(n: int, seed: int) -> np.ndarray:
    """A symmetric matrix with eigenvalues spread over [−1, 2]."""
    Q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, n)))
    return (Q * np.linspace(-1.0, 2.0, n)) @ Q.T


def test_lanczos_on_dask():
    H = _indefinite(80, seed=30)
    v = np.random.default_rng(31).standard_normal(80)
    with dask.config.set(scheduler="threads"):
        res = lanczos(da.from_array(H, chunks=(40, 80)), da.from_array(v, chunks=40), 12)
    ref = lanczos(H, v, 12)
    for got, want in zip(res, ref):
        assert backend.is_lazy(got)
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-10, atol=1e-12)


def test_series_on_dask():
    """Neumann and saddle-free series (given step and scale: no random
    estimate, so the same arithmetic as NumPy) give NumPy's answer (threaded
    scheduler only: the cluster runs the same graphs, at seconds per term on
    two shared cores)."""
    H = _indefinite(80, seed=32)
    A = H @ H + 0.1 * np.eye(80)  # positive definite, λ in [0.1, 4.1]
    g = np.random.default_rng(33).standard_normal(80)
    Hd, Ad = da.from_array(H, chunks=(40, 80)), da.from_array(A, chunks=(40, 80))
    gd = da.from_array(g, chunks=40)
    with dask.config.set(scheduler="threads"):
        got = neumann_solve(lambda v: Ad @ v, gd, alpha=0.4, terms=60)
    want = neumann_solve(lambda v: A @ v, g, alpha=0.4, terms=60)
    assert got.status is want.status and got.iterations == want.iterations
    assert rel(got.x, want.x) < 1e-10
    with dask.config.set(scheduler="threads"):
        got = saddle_free_solve(lambda v: Hd @ v, gd, damping=0.5, scale=2.5)
    want = saddle_free_solve(lambda v: H @ v, g, damping=0.5, scale=2.5)
    assert got.status is want.status and backend.is_lazy(got.x)
    # the ε-extrapolation amplifies the rounding differences of dask's sums
    assert rel(got.x, want.x) < 1e-9


def test_series_graph_stays_bounded():
    """As for cg: a 40-term Neumann sum has the graph of a 20-term one."""
    H = _indefinite(40, seed=34)
    Ad = da.from_array(H @ H + 0.1 * np.eye(40), chunks=(20, 40))
    gd = da.from_array(np.random.default_rng(35).standard_normal(40), chunks=20)
    sizes = []
    with dask.config.set(scheduler="sync"):
        for terms in (20, 40):
            res = neumann_solve(lambda v: Ad @ v, gd, alpha=0.4, terms=terms)
            assert res.iterations == terms
            sizes.append(len(res.x.__dask_graph__()))
    assert sizes[1] == sizes[0] and sizes[0] < 200, sizes


def _normal_operator(Jd, damping):
    """``v ↦ (JᵀJ + λI) v`` as a map-reduce over ``J``'s row chunks."""
    P = Jd.shape[1]
    return from_matvec(lambda v: Jd.T @ (Jd @ v) + damping * v, (P, P), Jd.dtype)


def test_gauss_newton_cg_on_a_row_sharded_jacobian(scheduler):
    J = tall_jacobian(1000, 12, seed=6)  # 13 iterations
    y = np.random.default_rng(7).standard_normal(1000)
    Jd, yd = da.from_array(J, chunks=(500, 12)), da.from_array(y, chunks=500)
    lam = 1e-2
    ref = np.linalg.solve(J.T @ J + lam * np.eye(12), J.T @ y)
    res = cg(_normal_operator(Jd, lam), Jd.T @ yd, rtol=1e-13, maxiter=2000)
    assert res.converged, res.info
    assert rel(res.x, ref) < 1e-8


def test_nystrom_preconditioned_gauss_newton(scheduler):
    """Matrix-free Gauss–Newton CG with a Nyström preconditioner whose sketch
    ``JᵀJ Ω`` is computed from the row chunks: fewer iterations than plain
    CG, the same answer."""
    J = tall_jacobian(1000, 30, seed=8)
    y = np.random.default_rng(9).standard_normal(1000)
    Jd, yd = da.from_array(J, chunks=(500, 30)), da.from_array(y, chunks=500)
    lam = 1e-2
    ref = np.linalg.solve(J.T @ J + lam * np.eye(30), J.T @ y)
    products = lambda v: Jd.T @ (Jd @ v)  # noqa: E731 - vectors and blocks alike
    gram = from_matvec(products, (30, 30), Jd.dtype, matmat=products)
    res = nystrom_pcg(gram, Jd.T @ yd, 20, damping=lam, seed=0, rtol=1e-12, maxiter=500)
    assert res.converged, res.info
    assert rel(res.x, ref) < 1e-8
    plain = cg(_normal_operator(Jd, lam), Jd.T @ yd, rtol=1e-12, maxiter=500)
    assert res.iterations < plain.iterations


def test_nystrom_of_a_row_chunked_kernel(scheduler):
    K = rbf_kernel(600, seed=10, width=0.3)
    Kd = da.from_array(K, chunks=(300, 600))
    approx = nystrom(Kd, 40, seed=0)
    assert backend.is_lazy(approx.V)
    err = np.linalg.norm(K - np.asarray(approx.to_dense()), 2) / np.linalg.norm(K, 2)
    # a rank-40 sketch beats the best rank-20 approximation (λ₂₁/λ₁ = 1.1e-4;
    # rank 40 is 4e-7), and is on a par with NumPy's (other random numbers)
    w = np.linalg.eigvalsh(K)[::-1]
    numpy_err = np.linalg.norm(K - nystrom(K, 40, seed=0).to_dense(), 2) / np.linalg.norm(K, 2)
    assert err < w[20] / w[0] and err < 3 * numpy_err, (err, w[20] / w[0], numpy_err)
    b = np.random.default_rng(11).standard_normal(600)
    res = nystrom_pcg(Kd, da.from_array(b, chunks=300), 40, damping=1e-3, seed=0, rtol=1e-11)
    assert res.converged, res.info
    assert rel(res.x, np.linalg.solve(K + 1e-3 * np.eye(600), b)) < 1e-8


def test_gauss_newton_dense_tall_jacobian(scheduler):
    """``JᵀJ`` reduced over the row chunks, the ``P × P`` Cholesky in one task."""
    J = tall_jacobian(3000, 30, seed=12)
    r = np.random.default_rng(13).standard_normal(3000)
    d, details = gauss_newton_direction(
        da.from_array(J, chunks=(500, 30)), da.from_array(r, chunks=500), 1e-6, solver="dense"
    )
    ref = np.linalg.solve(J.T @ J + 1e-6 * np.eye(30), J.T @ r)
    assert details["factorisation"] == "cholesky"
    assert rel(d, ref) < 1e-10


def test_woodbury_with_columns_sharded(scheduler):
    """``JJᵀ`` as a reduction over column chunks when ``P`` is the large side."""
    J = tall_jacobian(2400, 50, seed=14).T  # 50 × 2400
    r = np.random.default_rng(15).standard_normal(50)
    Jd = da.from_array(J, chunks=(50, 400))
    d, _ = gauss_newton_direction(Jd, da.from_array(r), 1e-3, solver="woodbury")
    # the same algorithm on NumPy (issue 20: ≤ 1e-10), and the P × P normal
    # equations (condition number 9e6: their own error is about 1e-10)
    assert rel(d, gauss_newton_direction(J, r, 1e-3, solver="woodbury")[0]) < 1e-10
    assert rel(d, np.linalg.solve(J.T @ J + 1e-3 * np.eye(2400), J.T @ r)) < 1e-8
    b = np.random.default_rng(16).standard_normal(2400)
    x = woodbury_solve(Jd, da.from_array(b, chunks=400), damping=1e-2)
    assert rel(x, np.linalg.solve(J.T @ J + 1e-2 * np.eye(2400), b)) < 1e-10


def _tanh_regression(lib):
    rng = np.random.default_rng(17)
    X = rng.standard_normal((2000, 8))
    y = np.tanh(X @ rng.standard_normal(8)) + 0.01 * rng.standard_normal(2000)

    def residuals(p, batch):
        Xb, yb = batch
        return lib.tanh(Xb @ p) - yb

    def jacobian(p, batch):
        Xb, _ = batch
        t = lib.tanh(Xb @ p)
        return (1.0 - t * t)[:, None] * Xb

    return X, y, residuals, jacobian


def test_engd_dense_steps(scheduler):
    """ENGD(solver="dense") on a model whose residuals and Jacobian are dask
    arrays: the NumPy iterates, and the parameters' graph does not grow."""
    X, y, res_np, jac_np = _tanh_regression(np)
    _, _, res_da, jac_da = _tanh_regression(da)
    runs = {}
    for name, batch, p, residuals, jacobian in (
        ("numpy", (X, y), np.zeros(8), res_np, jac_np),
        ("dask", (da.from_array(X, chunks=(500, 8)), da.from_array(y, chunks=500)),
         da.zeros(8, chunks=8), res_da, jac_da),
    ):
        model = CallableModel(residuals=residuals, jacobian=jacobian, params=p)
        opt = ENGD(solver="dense", damping=1e-8)
        losses = []
        for _ in range(4):
            p, info = opt.step(p, model, batch)
            losses.append(info["loss"])
        runs[name] = (p, losses)
    assert rel(runs["dask"][0], runs["numpy"][0]) < 1e-10
    np.testing.assert_allclose(runs["dask"][1], runs["numpy"][1], rtol=1e-10)
    assert len(runs["dask"][0].__dask_graph__()) == 1  # persisted: one chunk, one task


# Every kind and solver on the threaded scheduler; on the cluster (slow per
# operation) one case of each outcome.
_OPERATOR_FAULTS = [
    *(("threads", s, k) for s in (cg, minres) for k in ("nan", "inf", "raise", "shape")),
    ("cluster", cg, "nan"), ("cluster", minres, "raise"), ("cluster", cg, "shape"),
]


@pytest.mark.parametrize("scheduler,solver,kind", _OPERATOR_FAULTS, indirect=["scheduler"])
def test_operator_fault_at_a_later_call(scheduler, solver, kind):
    """An operator that goes wrong at its 7th product (NaN, Inf, the user's
    own exception, a wrong shape): an honest failure with the last finite
    iterate, or the user's error passed through / a natgrad error naming A,
    on the cluster as on NumPy."""
    K = rbf_kernel(200, seed=18, width=1.0) + 0.05 * np.eye(200)
    b = np.random.default_rng(19).standard_normal(200)
    Kd, bd = da.from_array(K, chunks=(50, 200)), da.from_array(b, chunks=50)
    fault = Fault(lambda v: Kd @ v, kind, at=7)
    op = from_matvec(fault, (200, 200), Kd.dtype)
    result = outcome(lambda: solver(op, bd, rtol=1e-12, maxiter=300), "A")
    assert fault.fired
    if kind == "raise":
        assert isinstance(result.error, InjectedFault)
    elif kind == "shape":
        assert result.raised and "call 7" in str(result.error), result.error
    else:
        assert not result.raised, result.error
        assert result.value.status is SolveStatus.NONFINITE, result.value.status
        assert backend.is_lazy(result.value.x)
        assert_honest_solve(result.value, K, b, 1e-12)


@pytest.mark.parametrize(
    "scheduler,kind", [("threads", "nan"), ("threads", "raise"), ("threads", "shape"), ("cluster", "nan")],
    indirect=["scheduler"],
)
def test_engd_jacobian_fault_at_a_later_step(scheduler, kind):
    """A dask model whose Jacobian goes wrong at step 3: that step is not
    taken (NaN) or raises (the user's error, or a natgrad error naming the
    Jacobian), and the optimiser keeps the state of step 2."""
    X, y, residuals, jacobian = _tanh_regression(da)
    batch = (da.from_array(X, chunks=(500, 8)), da.from_array(y, chunks=500))
    fault = Fault(jacobian, kind, at=3)
    model = CallableModel(residuals=residuals, jacobian=lambda p, b: fault(p, b),
                          params=da.zeros(8, chunks=8))
    opt = ENGD(solver="dense", damping=1e-8)
    p = model.params
    for _ in range(2):
        p, _ = opt.step(p, model, batch)
    before = (np.asarray(p).copy(), opt.state_dict()["steps"])
    result = outcome(lambda: opt.step(p, model, batch), "jacobian")
    assert fault.fired
    if kind == "raise":
        assert isinstance(result.error, InjectedFault)
    elif kind == "shape":
        assert result.raised
    else:
        assert not result.raised, result.error
        p_new, info = result.value
        assert not info["step_taken"]
        np.testing.assert_array_equal(np.asarray(p_new), before[0])
    assert opt.state_dict()["steps"] == before[1]


def test_vecdot_is_a_sum_of_products_with_a_smaller_graph():
    # backend.vecdot: the standard's vecdot (conj on the first argument, negative
    # axes) with dask's graph built as sum(conj(a) * b): fewer layers than
    # array-api-compat's vecdot, which every dask Krylov iteration would build
    import array_api_compat.dask.array as xpd

    rng = np.random.default_rng(41)
    for dtype in (np.float64, np.complex128):
        A = rng.standard_normal((60, 3)).astype(dtype)
        B = rng.standard_normal((60, 3)).astype(dtype)
        if dtype == np.complex128:
            A, B = A + 1j * rng.standard_normal((60, 3)), B - 2j * rng.standard_normal((60, 3))
        a, b = da.from_array(A, chunks=(20, 3)), da.from_array(B, chunks=(20, 3))
        for axis, ref in ((-2, np.sum(np.conj(A) * B, axis=0)), (-1, np.sum(np.conj(A) * B, axis=1))):
            out = backend.vecdot(xpd, a, b, axis=axis)
            np.testing.assert_allclose(out.compute(), ref, rtol=1e-13)
            assert len(out.__dask_graph__().layers) < len(xpd.vecdot(a, b, axis=axis).__dask_graph__().layers)
