"""Faults in the H-matrix layer (issue 18), on every backend.

* ``HMatrix.from_kernel`` with the kernel wrapped by :class:`tests.faults.Fault`:
  NaN, Inf, the user's exception, a wrong shape, ×1e±150, or a kernel that
  writes into its point arrays, from call 1, 2 or a late call.
* ``HMatrix.from_dense`` with NaN/Inf entries, entries of 1e±150, float32
  (also at 1e±20, whose squares overflow or underflow float32).
* ``H @ x`` with NaN/Inf in ``x``, the wrong shape, a tracked ``x``.
* Tracked input (a torch tensor that requires grad, a JAX tracer) for the
  points, the matrix and ``x``; degenerate points and matrices.

What each ends in (the contract of ``tests.faults.outcome``): a natgrad error
naming the argument (and the kernel's call), the user's exception unchanged,
or an H-matrix that meets its bound.  A kernel that changes its answers
mid-build (a scale jump, a write into its arguments) is not an error natgrad
can see: the H-matrix is then that of the matrix the kernel *answered* --
each entry from the last call that covered it -- and meets the bound and its
reported ``error_estimate`` for that matrix.  The tests rebuild that matrix
from a log of the calls (:class:`Answered`).
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import from_numpy, to_numpy
from test_hmatrix import DENSE, dense_reference, kernel_fn, points, slow_backend

from natgrad.backend import TracedArrayError
from natgrad.hmatrix import HMatrix
from tests.faults import BREAKING, SCALE, Fault, assert_fault_named, outcome, writable

#: a late call of the kernel: after the symmetry probe (6 calls) and the first
#: blocks; the smallest build here (eager JAX, 128 points, symmetric storage)
#: makes 36 calls, the NumPy one 826
LATE = 30
#: the build of every kernel test: small enough to be quick on every backend,
#: large enough for ACA blocks (aca_min_size) and a compressed matrix
BUILD = dict(eps=1e-6, leaf_size=16, aca_min_size=16)


def _n(xp):
    # eager JAX compiles every new block shape, PyTorch's small SVDs are slow:
    # n = 128 has few shapes (median splits: the shapes depend on n alone,
    # so every test here reuses JAX's compiled ones)
    if slow_backend(xp):
        return 128
    return 200 if "strict" in xp.__name__ else 300


#: the kernel faults with a full build on each backend (every one on NumPy;
#: each build on the others costs several seconds: a sample there)
FULL_BUILDS = {
    "numpy": None,
    "array_api_strict": {("huge", 1), ("tiny", 2), ("write", LATE)},
    "torch": {("huge", 1), ("write", LATE)},
    "jax": {("huge", 1), ("tiny", LATE)},  # JAX arrays cannot be written
    "cupy": {("huge", 1), ("tiny", 2), ("write", LATE)},
}


def _dense_kw(xp):
    # the index tree has few block shapes (eager JAX compiles each one)
    return dict(leaf_size=32, tree="index") if slow_backend(xp) else dict(leaf_size=16)


def _build(xp):
    # ACA (several compiled shapes per block on JAX) on numpy and
    # array_api_strict; the SVD path, the same fault handling, on the others
    return dict(BUILD, aca_min_size=128) if slow_backend(xp) else BUILD


class Answered:
    """Wraps a kernel and records the matrix it answered.

    Each call's block is placed at its points' indices, later calls over
    earlier ones (a verified ACA block is re-evaluated whole, and the
    H-matrix holds the last evaluation).  The points of a call are looked up
    before the wrapped kernel runs, so a kernel that writes into them is
    logged at the points natgrad handed it.
    """

    def __init__(self, fn, P):
        self.fn = fn
        self.index = {row.tobytes(): i for i, row in enumerate(np.asarray(P, dtype=np.float64))}
        self.M = np.full((P.shape[0], P.shape[0]), np.nan)

    def _rows(self, X):
        try:
            return [self.index[r.tobytes()] for r in to_numpy(X).astype(np.float64)]
        except KeyError:  # an earlier call's write reached a later call
            raise AssertionError("the kernel was handed points that are not the caller's") from None

    def __call__(self, X, Y):
        rows, cols = self._rows(X), self._rows(Y)
        K = self.fn(X, Y)
        K_np = to_numpy(K)
        if K_np.shape == (len(rows), len(cols)):
            self.M[np.ix_(rows, cols)] = K_np
        return K


def rel_error(D, M):
    """‖D − M‖_F / ‖M‖_F in float64, safe at 1e±150 (normalised first)."""
    D, M = np.asarray(D, dtype=np.float64), np.asarray(M, dtype=np.float64)
    s = np.abs(M).max()
    return np.linalg.norm(D / s - M / s) / np.linalg.norm(M / s)


# -- the kernel at call k ------------------------------------------------------


# points in the plane (standard admissibility) and on a line (weak, the
# default there)
GEOMETRIES = ["2", "1"]


def _reached(at, build):
    """``at``, or the last kernel call of a healthy ``build(kernel)`` if it
    makes fewer (a weak build on a line, on the slower backends' smaller
    problems, makes under LATE calls): the fault must fire."""
    if at < LATE:
        return at
    probe = Fault(kernel_fn("cauchy"), "nan", 10**9)
    build(probe)
    return min(at, probe.calls)


@pytest.mark.parametrize("dim", GEOMETRIES)
@pytest.mark.parametrize("at", [1, 2, LATE])
@pytest.mark.parametrize("kind", BREAKING)
def test_kernel_breaking_fault_is_named(xp, kind, at, dim):
    """NaN, Inf, a wrong shape: an error naming the kernel and the call; the
    user's exception passes through, with a note naming the call."""
    P = points(dim, _n(xp), seed=1)
    Px = from_numpy(xp, P)
    at = _reached(at, lambda k: HMatrix.from_kernel(k, Px, **_build(xp)))
    kernel = Fault(kernel_fn("cauchy"), kind, at)
    out = outcome(lambda: HMatrix.from_kernel(kernel, Px, **_build(xp)), "kernel")
    assert kernel.calls == at  # stopped at the faulty call
    assert_fault_named(out, kind, at, "kernel")
    np.testing.assert_array_equal(to_numpy(Px), P)


@pytest.mark.parametrize("kind", BREAKING)
def test_kernel_fault_with_default_arguments(kind):
    """``from_kernel(kernel, points)`` as a user writes it, in the plane at a
    size where the default leaves of 192 shape the tree: a fault at a late
    call is named, the same as with the small leaves above (NumPy: the
    defaults do not depend on the library)."""
    import array_api_compat.numpy as xnp

    P = points("2", 1500, seed=4)
    probe = Fault(kernel_fn("cauchy"), "nan", 10**9)  # never fires: counts a healthy build's calls
    healthy = HMatrix.from_kernel(probe, xnp.asarray(P))
    assert healthy.rows.leaf_size == 192 and max(c.size for c in healthy.rows.leaves()) > 128
    at = 3 * probe.calls // 4  # late, in the last quarter of the build
    assert at > LATE
    kernel = Fault(kernel_fn("cauchy"), kind, at)
    out = outcome(lambda: HMatrix.from_kernel(kernel, xnp.asarray(P)), "kernel")
    assert kernel.calls == at
    assert_fault_named(out, kind, at, "kernel")


@pytest.mark.parametrize("dim", GEOMETRIES)
@pytest.mark.parametrize("at", [1, 2, LATE])
@pytest.mark.parametrize("kind", ["huge", "tiny", "write"])
def test_kernel_changing_answers_give_an_honest_hmatrix(xp, backend_name, kind, at, dim):
    """×1e±150 or a write into the points from call k on: the H-matrix is
    that of the matrix the kernel answered, within eps and within its own
    error estimate; the caller's points never change.  The one exception:
    a jump to 1e150 times the first call's scale, whose squares could
    overflow, is refused naming the call."""
    sample = FULL_BUILDS.get(backend_name)
    if sample is not None and (kind, at) not in sample:
        pytest.skip("every case on NumPy, a sample on the slower backends")
    P = points(dim, _n(xp), seed=2)
    Px = from_numpy(xp, P)
    at = _reached(at, lambda k: HMatrix.from_kernel(k, Px, symmetric=False, **_build(xp)))
    log = Answered(Fault(kernel_fn("cauchy"), kind, at), P)
    # the full matrix: with symmetric storage one block triangle mirrors the
    # other, so the entries of a kernel whose answers change are not all ones
    # it answered (the symmetry probe's calls are in the faults above)
    out = outcome(lambda: HMatrix.from_kernel(log, Px, symmetric=False, **_build(xp)), "kernel")
    assert log.fn.fired
    np.testing.assert_array_equal(to_numpy(Px), P)
    if kind == "huge" and at > 1:
        assert isinstance(out.error, ValueError)
        assert f"kernel (call {at}) returned values up to" in str(out.error)
        return
    H = out.value
    assert H.info["admissibility"] == ("weak" if dim == "1" else "standard")
    M = log.M
    assert np.all(np.isfinite(M))  # every entry was asked for
    err = rel_error(to_numpy(H.to_dense()), M)
    assert err <= BUILD["eps"]
    assert err <= H.error_estimate * 1.01 + 1e-14
    A = dense_reference("cauchy", P)
    if at == 1 and kind in SCALE:  # a consistent scale: the bound on the scaled matrix
        assert rel_error(to_numpy(H.to_dense()), SCALE[kind] * A) <= BUILD["eps"]
        assert H.norm_estimate == pytest.approx(SCALE[kind] * np.linalg.norm(A), rel=1e-6)
    if at == 1 and kind == "write":
        # every call saw its own zeroed copy of X: the rows are all k(0, y_j),
        # and no write reached another call or the caller (JAX arrays cannot
        # be written: there the kernel stays healthy)
        want = np.broadcast_to(dense_reference("cauchy", np.zeros((1, P.shape[1])), P), M.shape) if writable(Px) else A
        np.testing.assert_allclose(M, want, rtol=1e-14)


@pytest.mark.parametrize("kind, eps", [("huge", 1e-4), ("tiny", 1e-6)])
def test_kernel_extreme_scale_meets_the_bound(kind, eps):
    """A kernel scaled by 1e±150 throughout: the same bound, the same blocks
    as the unscaled kernel (the build normalises by a power of two)."""
    import array_api_compat.numpy as xnp

    P = points("2", 300, seed=3)
    A = dense_reference("inverse", P)
    kw = dict(eps=eps, leaf_size=16, aca_min_size=16, eta=2.0)
    # float32 storage stands aside at these scales (below): the unscaled
    # kernel is built without it too, so both split the budget alike
    H0 = HMatrix.from_kernel(kernel_fn("inverse"), xnp.asarray(P), mixed_precision=False, **kw)
    H = outcome(lambda: HMatrix.from_kernel(Fault(kernel_fn("inverse"), kind, 1), xnp.asarray(P), **kw)).value
    # the bound is not met trivially: low-rank blocks, some down ACA's path
    # (finished by ACA, fallen back, or formed at once once most of their
    # size class had been)
    assert not H.info["densified"] and any(b["kind"] == "lowrank" for b in H.blocks())
    assert H.info["aca"] + H.info["aca_fallback"] + H.info["aca_formed"] > 0
    err = rel_error(H.to_dense(), SCALE[kind] * A)
    assert err <= eps and err <= H.error_estimate * 1.01 + 1e-14
    # the blocks of the unscaled kernel, up to rounding (1e150 is not a
    # power of two: a singular value at a threshold may fall either way)
    assert abs(sum(H.ranks()) - sum(H0.ranks())) <= 0.02 * sum(H0.ranks())
    # the products too (the blocks are scaled back)
    x = np.random.default_rng(0).standard_normal(300)
    y = H @ x / SCALE[kind]
    np.testing.assert_allclose(y, H.to_dense() @ x / SCALE[kind], rtol=1e-10, atol=1e-10 * np.abs(y).max())
    assert np.linalg.norm(y - A @ x) <= eps * np.linalg.norm(A) * np.linalg.norm(x)
    # mixed precision cannot store 1e±150 in float32: it stands aside
    Hm = outcome(lambda: HMatrix.from_kernel(Fault(kernel_fn("inverse"), kind, 1), xnp.asarray(P),
                                             mixed_precision=True, **kw)).value
    assert Hm.info["float32_blocks"] == 0
    assert rel_error(Hm.to_dense(), SCALE[kind] * A) <= eps


@pytest.mark.parametrize("scale", [1e20, 1e-20])
def test_float32_kernel_at_scales_beyond_float32_squares(xp, scale):
    """float32 points, a kernel of 1e±20: its squares overflow (underflow)
    float32, the build normalises and meets the bound."""
    if "strict" in xp.__name__ or "jax" in xp.__name__:
        pytest.skip("the same array-API code as PyTorch; NumPy and PyTorch suffice")
    P = points("2", _n(xp), seed=4).astype(np.float32)
    k = kernel_fn("cauchy")
    H = outcome(lambda: HMatrix.from_kernel(lambda X, Y: k(X, Y) * scale, from_numpy(xp, P, dtype="float32"),
                                            **dict(_build(xp), eps=1e-3))).value
    A = scale * dense_reference("cauchy", P.astype(np.float64))
    assert rel_error(to_numpy(H.to_dense()), A) <= 1e-3


@pytest.mark.parametrize("at", [2, LATE])
def test_kernel_scale_jump_beyond_float64_squares_is_named(at):
    """A kernel whose answers jump by 1e200 from call ``at`` on: the build
    (at the first answer's scale) cannot square them; a ValueError names the
    call.  No overflow warning, no foreign exception."""
    import array_api_compat.numpy as xnp

    P = points("2", 300, seed=5)
    k = kernel_fn("cauchy")
    calls = {"n": 0}

    def jumping(X, Y):
        calls["n"] += 1
        return k(X, Y) * (1e200 if calls["n"] >= at else 1.0)

    out = outcome(lambda: HMatrix.from_kernel(jumping, xnp.asarray(P), **BUILD), "kernel")
    assert isinstance(out.error, ValueError) and f"kernel (call {at}) returned values up to" in str(out.error)
    assert calls["n"] == at


def test_kernel_output_tracked_by_autograd_is_named():
    """A torch kernel whose output requires grad (a learnable length scale):
    refused naming the kernel's call, not built into autograd graphs."""
    import torch

    P = torch.asarray(points("2", 100, seed=6))
    w = torch.tensor(2.0, requires_grad=True)
    k = kernel_fn("cauchy")
    out = outcome(lambda: HMatrix.from_kernel(lambda X, Y: k(X * w, Y * w), P, leaf_size=16), "kernel (call 1)")
    assert isinstance(out.error, TracedArrayError)


# -- from_dense ----------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_dense_nonfinite_entry_is_named(xp, bad):
    A = DENSE["smooth-rect"]()
    A[17, 3] = bad
    Ax = from_numpy(xp, A)
    out = outcome(lambda: HMatrix.from_dense(Ax), "A")
    assert out.raised and "A contains NaN or Inf" in str(out.error)


@pytest.mark.parametrize("scale", [1e150, 1e-150])
def test_dense_extreme_scale_meets_the_bound(xp, scale):
    if slow_backend(xp) and scale < 1:
        pytest.skip("1e150 on eager JAX/PyTorch; both on numpy and array_api_strict")
    A = DENSE["smooth-rect"]()
    Ax = from_numpy(xp, scale * A)
    H0 = HMatrix.from_dense(from_numpy(xp, A), eps=1e-4, **_dense_kw(xp))
    H = outcome(lambda: HMatrix.from_dense(Ax, eps=1e-4, **_dense_kw(xp)), "A").value
    assert not H.info["densified"]
    err = rel_error(to_numpy(H.to_dense()), scale * A)
    assert err <= 1e-4
    assert abs(err - H.error_estimate) <= 0.02 * 1e-4  # exact tails, reported honestly
    assert H.ranks() == H0.ranks()
    np.testing.assert_array_equal(to_numpy(Ax), scale * A)


@pytest.mark.parametrize("scale", [1.0, 1e20, 1e-20])
def test_dense_float32(xp, scale):
    """float32 at scales whose squares overflow or underflow float32."""
    A = (scale * DENSE["smooth-rect"]()).astype(np.float32)
    Ax = from_numpy(xp, A, dtype="float32")
    H = outcome(lambda: HMatrix.from_dense(Ax, eps=1e-3, **_dense_kw(xp)), "A").value
    assert H.dtype == Ax.dtype and not H.info["densified"]
    err = rel_error(to_numpy(H.to_dense()), A.astype(np.float64))
    assert err <= 1e-3
    assert err <= H.error_estimate * 1.01 + 1e-6  # float32 rounding of the blocks
    x = np.random.default_rng(0).standard_normal(A.shape[1]).astype(np.float32)
    y = to_numpy(H @ from_numpy(xp, x, dtype="float32"))
    assert np.all(np.isfinite(y))
    assert rel_error(y, A.astype(np.float64) @ x) <= 1e-3 * np.sqrt(A.shape[1])


# -- the product ---------------------------------------------------------------


def _block_diagonal():
    """Two kernel blocks and zeros between them: a NaN in one half of x must
    leave the other half's rows finite."""
    K = dense_reference("exponential", np.sort(points("1", 60, seed=7), axis=0))
    A = np.zeros((120, 120))
    A[:60, :60], A[60:, 60:] = K, 2.0 * K
    return A


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("where", [0, 59, 60, 119])
def test_matvec_nonfinite_x_propagates_like_the_dense_product(xp, bad, where):
    """NaN/Inf in x is not checked (no host synchronisation per product, as
    for every natgrad operator): it propagates to exactly the rows the
    stored matrix connects to it; the other rows, and the other columns of
    a block of right-hand sides, are the correct product.  No warning."""
    A = _block_diagonal()
    H = HMatrix.from_dense(from_numpy(xp, A), eps=1e-8, leaf_size=16, tree="index")
    D = to_numpy(H.to_dense())
    X = np.random.default_rng(8).standard_normal((120, 2))
    X[where, 1] = bad
    Xx = from_numpy(xp, X)
    Y = to_numpy(outcome(lambda: H @ Xx, "x").value)
    # the rows an entry of the stored matrix connects to the bad entry are
    # non-finite (the zero blocks are not stored: unlike a dense product,
    # 0 · NaN does not reach the other half), the rest is the product with
    # the healthy entries
    bad_rows = D[:, where] != 0.0
    np.testing.assert_array_equal(~np.isfinite(Y[:, 1]), bad_rows)
    assert bad_rows.sum() == 60
    ref = D @ np.where(np.isfinite(X), X, 0.0)
    ok = np.isfinite(Y)
    np.testing.assert_allclose(Y[ok], ref[ok], rtol=1e-12, atol=1e-12 * np.abs(ref).max())
    assert np.all(np.isfinite(Y[:, 0]))  # the healthy column
    y = to_numpy(outcome(lambda: H @ Xx[:, 1], "x").value)  # a vector
    np.testing.assert_array_equal(~np.isfinite(y), bad_rows)
    np.testing.assert_array_equal(to_numpy(Xx), X)  # x not mutated


def test_matvec_bad_operands_are_named(xp):
    H = HMatrix.from_dense(from_numpy(xp, DENSE["smooth"]()), eps=1e-4, leaf_size=32)
    for x in (np.ones(199), np.ones((200, 2, 1)), np.ones((0,)), np.ones((2, 200))):
        out = outcome(lambda: H @ from_numpy(xp, x), "x")
        assert isinstance(out.error, ValueError) and "x must have shape (200,)" in str(out.error)
    for x in ([1.0] * 200, None):
        out = outcome(lambda: H @ x, "x")
        assert isinstance(out.error, TypeError)
    out = outcome(lambda: H.rmatvec(from_numpy(xp, np.ones(7))), "x")
    assert isinstance(out.error, ValueError)


# -- tracked input ---------------------------------------------------------------


def test_torch_tracked_inputs_are_named():
    import torch

    P = points("2", 120, seed=9)
    k = kernel_fn("cauchy")
    tracked = torch.asarray(P).requires_grad_(True)
    for call, name in [
        (lambda: HMatrix.from_kernel(k, tracked), "points"),
        (lambda: HMatrix.from_kernel(k, torch.asarray(P), col_points=tracked), "col_points"),
        (lambda: HMatrix.from_dense(torch.asarray(dense_reference("cauchy", P)).requires_grad_(True)), "A"),
    ]:
        out = outcome(call, name)
        assert isinstance(out.error, TracedArrayError) and f"{name}.detach()" in str(out.error)
    H = HMatrix.from_kernel(k, torch.asarray(P), leaf_size=16)
    for call in (lambda: H @ torch.ones(120, requires_grad=True), lambda: H.rmatvec(torch.ones(120, requires_grad=True))):
        out = outcome(call, "x")
        assert isinstance(out.error, TracedArrayError)
    assert not tracked.grad  # nothing was recorded or mutated


def test_jax_tracers_are_named():
    import jax
    import jax.numpy as jnp

    P = jnp.asarray(points("2", 120, seed=10))
    k = kernel_fn("cauchy")
    A = jnp.asarray(dense_reference("cauchy", np.asarray(P)))
    H = HMatrix.from_kernel(k, P, leaf_size=16)
    for call, name in [
        (lambda: jax.jit(lambda p: HMatrix.from_kernel(k, p).to_dense())(P), "points"),
        (lambda: jax.jit(lambda a: HMatrix.from_dense(a).to_dense())(A), "A"),
        (lambda: jax.jit(lambda v: H @ v)(jnp.ones(120)), "x"),
        (lambda: jax.vmap(lambda v: H @ v)(jnp.ones((3, 120))), "x"),
    ]:
        out = outcome(call, name)
        assert isinstance(out.error, TracedArrayError) and "JAX tracer" in str(out.error)


# -- degenerate input ------------------------------------------------------------


DEGENERATE = {
    "one point": lambda: np.array([[0.3, 0.7]]),
    "two points": lambda: points("2", 2, seed=11),
    "duplicates": lambda: np.repeat(points("2", 40, seed=12), 5, axis=0),
    "all equal": lambda: np.full((150, 2), 0.25),
}


@pytest.mark.parametrize("name", list(DEGENERATE))
def test_degenerate_points(xp, name):
    """One point, duplicated points, all points equal: a correct H-matrix
    (boxes of zero size never pass admissibility: those blocks stay dense)."""
    P = DEGENERATE[name]()
    A = dense_reference("cauchy", P)
    H = outcome(lambda: HMatrix.from_kernel(kernel_fn("cauchy"), from_numpy(xp, P), eps=1e-6, leaf_size=16),
                "points").value
    assert H.shape == A.shape
    assert rel_error(to_numpy(H.to_dense()), A) <= 1e-6
    x = np.linspace(-1.0, 1.0, P.shape[0])
    np.testing.assert_allclose(to_numpy(H @ from_numpy(xp, x)), A @ x, rtol=1e-5, atol=1e-6 * np.abs(A).sum())


@pytest.mark.parametrize("eps", [0.0, 1e-300, -1.0, float("nan"), float("inf")])
def test_degenerate_eps_is_named(xp, eps):
    P = from_numpy(xp, points("2", 20))
    for call in (lambda: HMatrix.from_kernel(kernel_fn("cauchy"), P, eps=eps),
                 lambda: HMatrix.from_dense(from_numpy(xp, DENSE["smooth"]()), eps=eps)):
        out = outcome(call, "eps")
        assert isinstance(out.error, ValueError)


@pytest.mark.parametrize("name", ["1x1", "1xn", "zeros", "ones"])
def test_degenerate_matrices(xp, name):
    A = {"1x1": np.array([[3.0]]), "1xn": np.arange(1.0, 31.0)[None, :],
         "zeros": np.zeros((50, 40)), "ones": np.ones((150, 150))}[name]
    Ax = from_numpy(xp, A)
    H = outcome(lambda: HMatrix.from_dense(Ax, eps=1e-6, **_dense_kw(xp)), "A").value
    D = to_numpy(H.to_dense())
    assert np.linalg.norm(D - A) <= 1e-6 * np.linalg.norm(A)  # exact for the zero matrix
    assert H.error_estimate <= 1e-6 and np.isfinite(H.error_estimate)
    x = np.linspace(-1.0, 1.0, A.shape[1])
    np.testing.assert_allclose(to_numpy(H @ from_numpy(xp, x)), A @ x, atol=1e-6 * max(np.abs(A).sum(), 1.0))

