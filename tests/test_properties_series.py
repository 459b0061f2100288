"""Property tests (hypothesis) of the series, Nyström-PCG and Woodbury solvers
(issue 18): random SPD, low-rank + damping, indefinite and ill-conditioned
operators, float32 and float64, right-hand sides (n,), (n, 1), (n, k) where
the solver takes blocks, n from 1 to 100, on a backend drawn per example.

For each: when the solver says converged (for a direct method: when it
returns), the true residual, computed in float64 with the operator as the
solver applied it (the float32 matrix when the dtype is float32), meets the
tolerance up to the dtype's attainable accuracy; the inputs are unchanged;
the output has the input's namespace, device and dtype.

The attainable-accuracy term is the rounding error of forming the residual
``b − Bx`` in the working precision, ``ATTAIN · n · eps · (‖B‖‖x‖ + ‖b‖)``
with ``ATTAIN = 4`` (a normwise bound for a matrix-vector product and a
subtraction, Higham, *Accuracy and Stability*, §3.5); it is ≤ 1e-3 of the
tolerance in float64 and of its size in float32, so the checks are not
vacuous.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import BACKENDS
from helpers import from_numpy, symmetric_matrix, to_numpy
from natgrad import backend
from natgrad.linalg import nystrom_pcg, woodbury_solve
from natgrad.linalg.series import neumann_solve, saddle_free_solve

CPU = [name for name in BACKENDS if name != "cupy"]
#: without JAX, whose kernels compile anew for every intermediate shape of
#: Lanczos (a growing basis) and of the ε-table: ~1 s an example.  These
#: solvers run on JAX in tests/test_faults_series.py and test_faults_lowrank.py.
EAGER = [name for name in CPU if name != "jax"]
EPS = {"float64": np.finfo(np.float64).eps, "float32": float(np.finfo(np.float32).eps)}
RTOL = {"float64": 1e-8, "float32": 1e-4}
ATTAIN = 4.0
SETTINGS = settings(max_examples=25, deadline=None, derandomize=True)
#: problem sizes 1..100; a few of them, since JAX compiles anew for each shape
SIZES = st.sampled_from([1, 2, 5, 16, 40, 100])


def _xp(name: str):
    return importlib.import_module(BACKENDS[name])


def _attainable(n: int, dtype: str, B: np.ndarray, x: np.ndarray, b: np.ndarray) -> float:
    return ATTAIN * n * EPS[dtype] * (np.linalg.norm(B, 2) * np.linalg.norm(x) + np.linalg.norm(b))


def _as_applied(M: np.ndarray, dtype: str) -> np.ndarray:
    """The matrix the solver really applies: rounded to the dtype."""
    return M.astype(dtype).astype(np.float64)


def _check_output(xp, out, like, before: list[tuple[object, np.ndarray]]) -> np.ndarray:
    assert backend.namespace(out=out) is xp or backend.namespace(out=out) is backend.namespace(like=like)
    assert out.dtype == like.dtype and backend.device(out) == backend.device(like)
    for arr, copy in before:
        np.testing.assert_array_equal(to_numpy(arr), copy, err_msg="an input changed")
    a = to_numpy(out).astype(np.float64)
    assert np.all(np.isfinite(a))
    return a


@st.composite
def spectra(draw, indefinite: bool = False):
    """(n, eigenvalues, seed): SPD with condition number up to 1e3 (the
    damping drawn on top may lower it), or with some eigenvalues flipped
    negative; n = 1..100 from a few sizes (each new shape recompiles JAX's
    kernels)."""
    n = draw(SIZES)
    log_cond = draw(st.floats(0.0, 3.0))
    top = 10.0 ** draw(st.floats(-2.0, 2.0))
    w = top * np.logspace(-log_cond, 0.0, n)
    if indefinite:
        flips = draw(st.lists(st.booleans(), min_size=n, max_size=n))
        w = np.where(flips, -w, w)
    return n, w, draw(st.integers(0, 2**16))


@SETTINGS
@given(spec=spectra(), dtype=st.sampled_from(["float64", "float32"]), lib=st.sampled_from(CPU),
       damping_frac=st.floats(0.0, 1.0), auto=st.booleans())
def test_neumann_converged_means_residual_below_rtol(spec, dtype, lib, damping_frac, auto):
    xp = _xp(lib)
    n, w, seed = spec
    A = _as_applied(symmetric_matrix(w, seed), dtype)
    damping = damping_frac * float(w.max())
    v = np.random.default_rng(seed + 1).standard_normal(n).astype(dtype)
    Ax, vx = from_numpy(xp, A, dtype), from_numpy(xp, v, dtype)
    alpha = "auto" if auto else 1.0 / (float(np.abs(w).max()) + damping)
    res = neumann_solve(lambda u: Ax @ u, vx, alpha=alpha, damping=damping, terms=200, rtol=RTOL[dtype])
    x = _check_output(xp, res.x, vx, [(vx, v), (Ax, A.astype(dtype))])
    if res.converged:
        B = A + damping * np.eye(n)
        v64 = v.astype(np.float64)
        r = np.linalg.norm(v64 - B @ x)
        assert r <= RTOL[dtype] * np.linalg.norm(v64) + _attainable(n, dtype, B, x, v64), res.info


@SETTINGS
@given(spec=spectra(indefinite=True), dtype=st.sampled_from(["float64", "float32"]), lib=st.sampled_from(EAGER),
       damping_frac=st.floats(1e-3, 1.0), lanczos=st.booleans())
def test_saddle_free_converged_means_small_residual(spec, dtype, lib, damping_frac, lanczos):
    """saddle_free_solve has no tolerance: "converged" promises an error
    estimate ≤ 0.1 and a proven residual lower bound ≤ 0.01.  Checked: the
    true relative residual of (|H| + λI)x = g is ≤ 0.1 (+ attainable)."""
    xp = _xp(lib)
    n, w, seed = spec
    H = _as_applied(symmetric_matrix(w, seed), dtype)
    damping = damping_frac * float(np.abs(w).max())
    g = np.random.default_rng(seed + 2).standard_normal(n).astype(dtype)
    Hx, gx = from_numpy(xp, H, dtype), from_numpy(xp, g, dtype)
    kw = {"method": "lanczos"} if lanczos else {}
    res = saddle_free_solve(lambda u: Hx @ u, gx, damping=damping, terms=20, **kw)
    x = _check_output(xp, res.x, gx, [(gx, g), (Hx, H.astype(dtype))])
    if res.converged:
        e, Q = np.linalg.eigh(H)
        B = (Q * (np.abs(e) + damping)) @ Q.T
        g64 = g.astype(np.float64)
        r = np.linalg.norm(g64 - B @ x)
        assert r <= 0.1 * np.linalg.norm(g64) + _attainable(n, dtype, B, x, g64), (r, res.info)


@SETTINGS
@given(n=SIZES, rank_frac=st.floats(0.05, 1.0), log_damping=st.floats(-4.0, 0.0),
       dtype=st.sampled_from(["float64", "float32"]), lib=st.sampled_from(EAGER),
       k=st.sampled_from([0, 1, 3]), seed=st.integers(0, 2**16))
def test_nystrom_pcg_converged_means_residual_below_rtol(n, rank_frac, log_damping, dtype, lib, k, seed):
    """Low-rank + damping operators (A = GGᵀ of rank ≤ n, plus damping)."""
    xp = _xp(lib)
    rng = np.random.default_rng(seed)
    r = max(1, int(rank_frac * n))
    G = rng.standard_normal((n, r)) / np.sqrt(r)
    A = _as_applied(G @ G.T, dtype)
    damping = 10.0**log_damping
    b = rng.standard_normal((n,) if k == 0 else (n, k)).astype(dtype)
    Ax, bx = from_numpy(xp, A, dtype), from_numpy(xp, b, dtype)
    res = nystrom_pcg(Ax, bx, max(1, min(n, r // 2 + 1)), damping=damping, seed=seed, rtol=RTOL[dtype],
                      maxiter=4 * n + 20)
    x = _check_output(xp, res.x, bx, [(bx, b), (Ax, A.astype(dtype))])
    assert x.shape == b.shape
    if res.converged:
        B = A + damping * np.eye(n)
        b64 = b.astype(np.float64).reshape(n, -1)
        X = x.reshape(n, -1)
        for j in range(b64.shape[1]):
            rj = np.linalg.norm(b64[:, j] - B @ X[:, j])
            assert rj <= RTOL[dtype] * np.linalg.norm(b64[:, j]) + _attainable(n, dtype, B, X[:, j], b64[:, j]), (
                j, rj, res.info)


@SETTINGS
@given(N=st.sampled_from([1, 3, 20, 40]), P=SIZES, log_damping=st.floats(-3.0, 1.0),
       dtype=st.sampled_from(["float64", "float32"]), lib=st.sampled_from(CPU),
       k=st.sampled_from([0, 1, 3]), seed=st.integers(0, 2**16))
def test_woodbury_solve_residual_at_attainable_accuracy(N, P, log_damping, dtype, lib, k, seed):
    """A direct method: whenever it returns, ‖(λI + UᵀU)x − b‖ is at the
    level a backward-stable solve reaches, times the condition number of the
    sample-space kernel κ = (‖U‖² + λ)/λ that the Woodbury formula
    amplifies rounding by (not backward stable): ≤ 20·(N + P)·eps·κ·‖M‖‖x‖."""
    xp = _xp(lib)
    rng = np.random.default_rng(seed)
    U = (rng.standard_normal((N, P)) / np.sqrt(P)).astype(dtype)
    damping = 10.0**log_damping
    b = rng.standard_normal((P,) if k == 0 else (P, k)).astype(dtype)
    Ux, bx = from_numpy(xp, U, dtype), from_numpy(xp, b, dtype)
    x = woodbury_solve(Ux, bx, damping)
    x = _check_output(xp, x, bx, [(bx, b), (Ux, U)])
    U64 = U.astype(np.float64)
    M = damping * np.eye(P) + U64.T @ U64
    kappa = (np.linalg.norm(U64, 2) ** 2 + damping) / damping
    r = np.linalg.norm(b.astype(np.float64).reshape(P, -1) - M @ x.reshape(P, -1), axis=0)
    bound = 20 * (N + P) * EPS[dtype] * kappa * np.linalg.norm(M, 2) * np.linalg.norm(x.reshape(P, -1), axis=0)
    assert np.all(r <= bound + 1e-300), (r, bound)
