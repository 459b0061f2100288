"""Tests for natgrad.optim on every backend, with a small explicit model whose
Jacobian and Hessian are known in closed form."""

from __future__ import annotations

import json

import numpy as np
import pytest

from faults import FaultyModel
from helpers import from_numpy, to_numpy
from natgrad import backend
from natgrad.backend import io
from natgrad.linalg import FactorizationWarning
from natgrad.optim import (
    ENGD,
    FNGD,
    SPRING,
    Adam,
    GradientFlow,
    SaddleFreeNewton,
    fit,
    gauss_newton_direction,
)


class TanhRegression:
    """r_i(θ) = tanh(x_iᵀθ) − s·y_i ("squared") or ℓ_i = ½ r_i² ("mean"), written
    with the array-API namespace of X so it runs on every backend.  The batch
    is None (s = 1) or the target scale s, so that batches can differ by step."""

    def __init__(self, X, y, params, loss="squared"):
        self.X, self.y, self.params, self.loss = X, y, params, loss
        self.xp = backend.namespace(X=X)

    def _parts(self, p, batch):
        t = self.xp.tanh(self.X @ p)
        y = self.y if batch is None else batch * self.y
        return t, t - y, 1.0 - t * t  # tanh, residual, tanh'

    def residuals(self, p, batch):
        _, r, _ = self._parts(p, batch)
        return r if self.loss == "squared" else 0.5 * r * r

    def jacobian(self, p, batch):
        _, r, dt = self._parts(p, batch)
        J = dt[:, None] * self.X
        return J if self.loss == "squared" else r[:, None] * J

    def jvp(self, p, batch, v):
        return self.jacobian(p, batch) @ v

    def vjp(self, p, batch, u):
        return self.xp.matrix_transpose(self.jacobian(p, batch)) @ u

    def loss_and_grad(self, p, batch):
        _, r, dt = self._parts(p, batch)
        g = self.xp.matrix_transpose(self.X) @ (r * dt)
        if self.loss == "squared":
            return 0.5 * self.xp.vecdot(r, r), g
        n = r.shape[0]
        return 0.5 * self.xp.vecdot(r, r) / n, g / n

    def hvp(self, p, batch, v):
        t, r, dt = self._parts(p, batch)
        Xv = self.X @ v
        # ∇²(½ Σ r²) = Jᵀ J + Σ r_i ∇² r_i,  ∇² r_i = −2 t_i t_i' x_i x_iᵀ
        w = dt * dt + r * (-2.0 * t * dt)
        hv = self.xp.matrix_transpose(self.X) @ (w * Xv)
        return hv if self.loss == "squared" else hv / r.shape[0]


def make_model(xp, n=12, p=30, loss="squared", seed=0, dtype="float64"):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p)) / np.sqrt(p)
    theta_true = rng.standard_normal(p)
    y = np.tanh(X @ theta_true) * 0.9
    params = 0.1 * rng.standard_normal(p)
    return TanhRegression(from_numpy(xp, X, dtype), from_numpy(xp, y, dtype), from_numpy(xp, params, dtype), loss)


def loss_np(model, params):
    r = to_numpy(model.residuals(params, None))
    return 0.5 * r @ r if model.loss == "squared" else r.mean()


OPTIMISERS = {
    "engd-woodbury": lambda: ENGD(damping=1e-6),
    "engd-dense": lambda: ENGD(damping=1e-6, solver="dense"),
    "engd-nystrom": lambda: ENGD(damping=1e-6, solver="nystrom", rank=6),
    "engd-cg": lambda: ENGD(damping=1e-6, solver="cg"),
    "spring": lambda: SPRING(damping=1e-6, momentum=0.5),
    "spring-lr-cap": lambda: SPRING(damping=1e-6, momentum=0.5, lr=0.5, norm_cap=1.0),
    "sfn-series": lambda: SaddleFreeNewton(damping=1.0, terms=10),
    "sfn-lanczos": lambda: SaddleFreeNewton(damping=0.1, method="lanczos", terms=10, adapt_damping=True),
    "flow-euler": lambda: GradientFlow(lr=0.5),
    "flow-heun": lambda: GradientFlow(lr=0.5, method="heun"),
    "flow-rk4": lambda: GradientFlow(lr=0.5, method="rk4"),
    "flow-ab2": lambda: GradientFlow(lr=0.5, method="ab2"),
    "flow-bs3": lambda: GradientFlow(lr=0.5, method="bs3"),
    "flow-bs3-fsal": lambda: GradientFlow(lr=0.5, method="bs3", fsal=True),
    "adam": lambda: Adam(lr=0.05),
}


@pytest.mark.parametrize("name", list(OPTIMISERS))
def test_every_optimiser_decreases_the_loss(xp, name):
    model = make_model(xp)
    opt = OPTIMISERS[name]()
    params = model.params
    start = loss_np(model, params)
    for _ in range(5):
        params, info = opt.step(params, model, None)
        assert isinstance(info["loss"], float)
        assert "time" in info
    assert backend.namespace(params) is xp
    assert tuple(params.shape) == (30,)
    assert loss_np(model, params) < 0.5 * start
    np.testing.assert_array_equal(to_numpy(model.params), to_numpy(make_model(xp).params))  # not mutated


def test_fngd_decreases_the_mean_loss(xp):
    model = make_model(xp, n=40, p=10, loss="mean")
    opt = FNGD(damping=1e-2, lr=0.3, refresh_every=2, momentum=0.3)
    params, start = model.params, loss_np(model, model.params)
    for _ in range(8):
        params, info = opt.step(params, model, None)
    assert loss_np(model, params) < 0.5 * start


def test_engd_solvers_agree_at_full_rank(xp):
    model = make_model(xp, n=10, p=25)
    J = model.jacobian(model.params, None)
    r = model.residuals(model.params, None)
    Jn, rn = to_numpy(J), to_numpy(r)
    lam = 1e-3
    ref = np.linalg.solve(Jn.T @ Jn + lam * np.eye(25), Jn.T @ rn)
    for solver, kw in (("woodbury", {}), ("dense", {}), ("nystrom", {"rank": 10})):
        d, _ = gauss_newton_direction(J, r, lam, solver=solver, **kw)
        np.testing.assert_allclose(to_numpy(d), ref, rtol=1e-6, atol=1e-9, err_msg=solver)
    d_cg, r_cg, details = ENGD(damping=lam, solver="cg", cg_rtol=1e-12).direction(model.params, model, None)
    np.testing.assert_allclose(to_numpy(d_cg), ref, rtol=1e-6, atol=1e-9)
    assert details["cg_converged"]
    d_pcg, _, details = ENGD(damping=lam, solver="cg", rank=5, cg_rtol=1e-12).direction(model.params, model, None)
    np.testing.assert_allclose(to_numpy(d_pcg), ref, rtol=1e-6, atol=1e-9)


def test_engd_dense_falls_back_when_cholesky_fails():
    rng = np.random.default_rng(3)
    J = rng.standard_normal((4, 12)) * 1e4  # JᵀJ is rank 4; λ far below eps·‖J‖²
    r = rng.standard_normal(4)
    with pytest.warns(FactorizationWarning):
        d, details = gauss_newton_direction(J, r, 1e-20, solver="dense")
    assert details["factorisation"] != "cholesky"
    assert np.all(np.isfinite(d))
    # the damped least-squares solution: J d ≈ r on the range of J
    np.testing.assert_allclose(J @ d, r, rtol=1e-5)


@pytest.mark.parametrize("solver", ["dense", "woodbury", "nystrom"])
def test_gauss_newton_direction_rejects_bad_input_on_every_solver(solver):
    rng = np.random.default_rng(4)
    J, r = rng.standard_normal((5, 9)), rng.standard_normal(5)
    for damping in (0.0, -1e-3):
        with pytest.raises(ValueError, match="damping"):
            gauss_newton_direction(J, r, damping, solver=solver)
    with pytest.raises(ValueError, match="r must have shape"):
        gauss_newton_direction(J, r[:4], 1e-3, solver=solver)
    J_bad = J.copy()
    J_bad[2, 3] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        gauss_newton_direction(J_bad, r, 1e-3, solver=solver)
    assert np.isnan(J_bad[2, 3])  # inputs are not mutated


def test_spring_with_zero_momentum_equals_engd_woodbury(xp):
    model = make_model(xp)
    engd, spring = ENGD(damping=1e-4), SPRING(damping=1e-4, momentum=0.0)
    p1 = p2 = model.params
    for _ in range(3):
        p1, i1 = engd.step(p1, model, None)
        p2, i2 = spring.step(p2, model, None)
        assert i1["lr"] == i2["lr"]
        np.testing.assert_allclose(to_numpy(p1), to_numpy(p2), rtol=1e-10, atol=1e-12)


def test_spring_momentum_recursion_and_bias_correction():
    xp_np = pytest.importorskip("array_api_compat.numpy")
    model = make_model(xp_np)
    lam, mu = 1e-3, 0.8
    opt = SPRING(damping=lam, momentum=mu, lr=0.3)
    params, phi = model.params, np.zeros(30)
    for k in range(1, 4):
        J, r = model.jacobian(params, None), model.residuals(params, None)
        phi = mu * phi + J.T @ np.linalg.solve(J @ J.T + lam * np.eye(J.shape[0]), r - mu * J @ phi)
        expected = params - 0.3 * phi / np.sqrt(1 - mu ** (2 * k))
        params, info = opt.step(params, model, None)
        np.testing.assert_allclose(params, expected, rtol=1e-10)


def test_spring_norm_cap():
    xp_np = pytest.importorskip("array_api_compat.numpy")
    model = make_model(xp_np)
    opt = SPRING(damping=1e-3, momentum=0.0, lr=10.0, norm_cap=1e-4)
    p, info = opt.step(model.params, model, None)
    assert np.linalg.norm(p - model.params) == pytest.approx(1e-2, rel=1e-10)  # √C


def test_fngd_direction_is_damped_fisher_ngd(xp):
    model = make_model(xp, n=15, p=8, loss="mean")
    lam = 1e-2
    opt = FNGD(damping=lam, lr=1.0)
    p1, info = opt.step(model.params, model, None)
    assert info["refreshed"]
    U = to_numpy(model.jacobian(model.params, None))  # rows: per-sample gradients
    N = U.shape[0]
    F = U.T @ U / N
    g = U.mean(axis=0)
    expected = np.linalg.solve(F + lam * np.eye(8), g)
    np.testing.assert_allclose(to_numpy(model.params) - to_numpy(p1), expected, rtol=1e-8)


def test_fngd_reuses_coefficients_between_refreshes(xp):
    model = make_model(xp, n=15, p=8, loss="mean")
    opt = FNGD(damping=1e-2, lr=0.5, refresh_every=3, refresh_tol=None)  # the count alone
    p = model.params
    refreshed, alphas = [], []
    for k in range(6):
        before = p
        p, info = opt.step(p, model, None)
        refreshed.append(info["refreshed"])
        alphas.append(to_numpy(opt.alpha).copy())
        if k == 1:  # a reuse step: new per-sample gradients, the old weights
            U = to_numpy(model.jacobian(before, None))
            np.testing.assert_allclose(to_numpy(before) - to_numpy(p), 0.5 * U.T @ alphas[0], rtol=1e-10)
    assert refreshed == [True, False, False, True, False, False]
    np.testing.assert_array_equal(alphas[0], alphas[2])
    assert not np.array_equal(alphas[2], alphas[3])


def _fngd_drift_reference(J, alpha, lam, kind):
    """The drift of weights ``alpha`` at per-sample gradients ``J`` (float64 NumPy)."""
    N = J.shape[0]
    d = J.T @ alpha
    if kind == "residual":
        return np.linalg.norm(J @ d + lam * N * alpha - 1.0) / np.sqrt(N)
    return abs((d @ d + lam * N * alpha @ alpha) / alpha.sum() - 1.0)


@pytest.mark.parametrize("drift", ["projected", "residual"])
def test_fngd_refreshes_stale_weights_when_the_gram_drifts(xp, drift):
    # the batch (a target scale) changes the per-sample gradients, so the
    # Gram matrix of the second step is far from the first one's: the stale
    # weights are refreshed although refresh_every would reuse them
    model = make_model(xp, n=15, p=8, loss="mean")
    lam = 1e-2
    opt = FNGD(damping=lam, lr=0.05, refresh_every=100, drift=drift)
    p1, info1 = opt.step(model.params, model, None)
    assert info1["refreshed"] and info1["drift"] is None
    alpha1 = to_numpy(opt.alpha).copy()
    p2, info2 = opt.step(p1, model, -3.0)
    J = to_numpy(model.jacobian(p1, -3.0))
    expected = _fngd_drift_reference(J, alpha1, lam, drift)
    assert expected > 1.0  # the case is a real drift, far beyond the default threshold 0.3
    assert info2["drift"] == pytest.approx(expected, rel=1e-8)
    assert info2["refreshed"]
    fresh = np.linalg.solve(J @ J.T + lam * 15 * np.eye(15), np.ones(15))
    np.testing.assert_allclose(to_numpy(opt.alpha), fresh, rtol=1e-8)
    np.testing.assert_allclose(to_numpy(p1) - to_numpy(p2), 0.05 * J.T @ fresh, rtol=1e-8)
    # the same batch a short step later: little drift, the weights are reused
    p3, info3 = opt.step(p2, model, -3.0)
    J2 = to_numpy(model.jacobian(p2, -3.0))
    assert not info3["refreshed"]
    assert info3["drift"] == pytest.approx(_fngd_drift_reference(J2, fresh, lam, drift), rel=1e-6)
    assert info3["drift"] < 0.3
    np.testing.assert_allclose(to_numpy(p2) - to_numpy(p3), 0.05 * J2.T @ fresh, rtol=1e-8)


class _JacobianOnly(TanhRegression):
    """The tanh regression without vjp/jvp: FNGD forms J on reuse steps."""

    vjp = jvp = None


class _WritesIntoArguments(TanhRegression):
    """A model whose vjp and jvp zero their vector argument after use."""

    def vjp(self, p, batch, u):
        out = super().vjp(p, batch, u)
        u[...] = 0.0
        return out

    def jvp(self, p, batch, v):
        out = super().jvp(p, batch, v)
        v[...] = 0.0
        return out


@pytest.mark.parametrize("drift", ["projected", "residual"])
def test_fngd_reuse_step_without_forming_the_jacobian_agrees(drift):
    # reuse steps take Jᵀα from model.vjp (and J Jᵀα from model.jvp): the
    # same steps and drifts as with J formed, and a model writing into its
    # arguments does not reach the cached weights or the step
    xp_np = pytest.importorskip("array_api_compat.numpy")
    base = make_model(xp_np, n=15, p=8, loss="mean")
    runs = {}
    for cls in (TanhRegression, _JacobianOnly, _WritesIntoArguments):
        model = cls(base.X, base.y, base.params, "mean")
        opt, p, drifts = FNGD(damping=0.1, lr=0.3, refresh_every=4, drift=drift), model.params, []
        for _ in range(4):
            p, info = opt.step(p, model, None)
            drifts.append(info["drift"])
        runs[cls.__name__] = (p, drifts, to_numpy(opt.alpha))
    ref_p, ref_drifts, ref_alpha = runs["TanhRegression"]
    assert ref_drifts[0] is None and all(d is not None for d in ref_drifts[1:])
    for name in ("_JacobianOnly", "_WritesIntoArguments"):
        p, drifts, alpha = runs[name]
        np.testing.assert_allclose(p, ref_p, rtol=1e-12, err_msg=name)
        np.testing.assert_allclose(drifts[1:], ref_drifts[1:], rtol=1e-8, err_msg=name)
        np.testing.assert_array_equal(alpha, ref_alpha, err_msg=name)


def test_fngd_refresh_tol_none_measures_no_drift():
    xp_np = pytest.importorskip("array_api_compat.numpy")
    model = make_model(xp_np, n=15, p=8, loss="mean")
    opt = FNGD(damping=1e-2, lr=0.5, refresh_every=100, refresh_tol=None)
    p, _ = opt.step(model.params, model, None)
    _, info = opt.step(p, model, -3.0)  # the drift that refreshes above is not looked at
    assert not info["refreshed"] and info["drift"] is None


@pytest.mark.parametrize("check", [False, True])
def test_fngd_reuse_step_with_a_nan_vjp(xp, check):
    # NaN from the model's vjp is the model's fault, with or without the
    # drift check (whose ρ it makes NaN): no step, naming model.vjp, the
    # state unchanged (the faults contract of test_faults_optim.py)
    base = make_model(xp, n=15, p=8, loss="mean")
    model = FaultyModel(base, "vjp", "nan", at=1)
    opt = FNGD(damping=1e-2, lr=0.05, refresh_every=5, refresh_tol=0.3 if check else None)
    p1, _ = opt.step(base.params, model, None)
    alpha1 = to_numpy(opt.alpha).copy()
    p2, info = opt.step(p1, model, None)
    assert model.calls == 1
    assert not info["step_taken"] and info["reason"] == "nonfinite" and "model.vjp" in info["message"]
    np.testing.assert_array_equal(to_numpy(p2), to_numpy(p1))
    assert opt.steps == 1 and opt.state_dict()["cache_uses"] == [1]
    np.testing.assert_array_equal(to_numpy(opt.alpha), alpha1)


class Quadratic:
    """f(θ) = ½ θᵀHθ − bᵀθ with an explicit (possibly indefinite) H."""

    loss = "mean"

    def __init__(self, xp, H, b):
        self.H, self.b = from_numpy(xp, H), from_numpy(xp, b)
        self.params = from_numpy(xp, np.zeros(len(b)))
        self.xp = xp

    def residuals(self, p, batch):
        return self.xp.reshape(self.loss_and_grad(p, batch)[0], (1,))

    def loss_and_grad(self, p, batch):
        Hp = self.H @ p
        return 0.5 * self.xp.vecdot(p, Hp) - self.xp.vecdot(self.b, p), Hp - self.b

    def hvp(self, p, batch, v):
        return self.H @ v


@pytest.mark.parametrize("method,terms,tol", [("lanczos", 30, 1e-8), ("series", 200, 1e-3)])
def test_saddle_free_newton_step_on_indefinite_quadratic(xp, method, terms, tol):
    rng = np.random.default_rng(5)
    Q, _ = np.linalg.qr(rng.standard_normal((30, 30)))
    eigs = np.linspace(0.3, 1.0, 30) * np.where(np.arange(30) % 3 == 0, -1.0, 1.0)
    H = (Q * eigs) @ Q.T
    b = rng.standard_normal(30)
    lam = 0.1
    model = Quadratic(xp, H, b)
    opt = SaddleFreeNewton(damping=lam, terms=terms, method=method, accelerate=False, adapt_damping=False)
    p, info = opt.step(model.params, model, None)
    assert info["hvps"] >= terms
    absH = (Q * np.abs(eigs)) @ Q.T
    expected = -np.linalg.solve(absH + lam * np.eye(30), -b)  # g = −b at θ = 0
    np.testing.assert_allclose(to_numpy(p), expected, rtol=tol, atol=tol * np.abs(expected).max())


class Quartic:
    """f(θ) = ¼ Σ θᵢ⁴ − bᵀθ: ∇²f = diag(3θ²), nearly zero near the origin (a
    plateau), so a damping fitted to it makes the first steps far too long."""

    loss = "mean"

    def __init__(self, xp, b, start):
        self.b, self.params, self.xp = from_numpy(xp, b), from_numpy(xp, start), xp

    def residuals(self, p, batch):
        return self.xp.reshape(self.loss_and_grad(p, batch)[0], (1,))

    def loss_and_grad(self, p, batch):
        return 0.25 * self.xp.sum(p**4) - self.xp.vecdot(self.b, p), p**3 - self.b

    def hvp(self, p, batch, v):
        return 3.0 * p**2 * v


def test_saddle_free_newton_recovers_from_a_damping_far_too_small(xp):
    # λ₀ = 1e-6 ≪ |H| ~ 1e-5..1e-3 away from the start: the first step is ~10⁵ long and
    # rejected.  Each rejection must shorten the next step at least twofold (λ/0.9 alone took
    # ~100 rejected steps), so that a step is accepted and the loss falls within 12 steps.
    b, start = np.array([1.0, 0.5, -0.7]), 1e-3 * np.array([1.0, -2.0, 3.0])
    model = Quartic(xp, b, start)
    opt, p = SaddleFreeNewton(damping=1e-6, method="lanczos", terms=3), model.params
    f0 = 0.25 * np.sum(start**4) - b @ start
    lengths, taken = [], []
    for _ in range(12):
        before = to_numpy(p).copy()
        p, info = opt.step(p, model, None)
        # the step this damping gives, in closed form (H diagonal; 3 Lanczos steps are exact)
        g, absH = before**3 - b, 3.0 * before**2
        lengths.append(np.linalg.norm(g / (absH + info["damping"])))
        taken.append(info["step_taken"])
        if info["step_taken"]:
            break
    assert taken[0] is False and taken[-1] is True, taken
    assert all(later <= 0.5 * earlier for earlier, later in zip(lengths, lengths[1:])), lengths
    pn = to_numpy(p)
    assert 0.25 * np.sum(pn**4) - b @ pn < f0 - 0.1


def test_saddle_free_newton_damping_falls_fast_where_the_model_is_exact(xp):
    # On a quadratic the quadratic model is exact (ρ = 1): a damping 200× the largest curvature
    # must come down within 8 steps (Nielsen's factor ⅓ per step; 0.9 per step left it at 43 %)
    # so that the steps become Newton steps and the loss reaches its minimum.
    rng = np.random.default_rng(11)
    Q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    H = (Q * np.linspace(0.5, 2.0, 6)) @ Q.T
    b = rng.standard_normal(6)
    model = Quadratic(xp, H, b)
    opt, p = SaddleFreeNewton(damping=400.0, method="lanczos", terms=6), model.params
    f = lambda q: 0.5 * q @ H @ q - b @ q  # noqa: E731
    f_min = f(np.linalg.solve(H, b))
    gap0 = f(to_numpy(p)) - f_min
    for _ in range(8):
        p, info = opt.step(p, model, None)
        assert info["step_taken"] and info["rho"] == pytest.approx(1.0, abs=1e-8)
    assert opt.damping < 0.1  # 400/3⁸ ≈ 0.06, far below the smallest curvature 0.5 (0.9⁸ would leave 172)
    assert f(to_numpy(p)) - f_min <= 1e-3 * gap0


def _sfn_trace(model, method, steps=6, **kw):
    """Iterates, ρ, dampings and ``info["hvps"]`` of SFN steps; the model's HVP calls per step."""
    from faults import CallCounter

    opt, p, out = SaddleFreeNewton(method=method, **kw), model.params, []
    for _ in range(steps):
        counter = CallCounter(model)
        p, info = opt.step(p, counter, None)
        out.append((to_numpy(p), info.get("rho"), info["damping"], info["step_taken"], info["hvps"],
                    counter.calls.get("hvp", 0), counter.calls.get("loss_and_grad", 0)))
    return out


def _sfn_elsewhere(monkeypatch):
    """A solver whose last product is not along its result (here at g): the step
    must then compute H s itself."""
    import natgrad.optim.sfn as sfn_module

    real = sfn_module.saddle_free_solve

    def solve(hvp, g, **kw):
        res = real(hvp, g, **kw)
        hvp(g)
        return res

    monkeypatch.setattr(sfn_module, "saddle_free_solve", solve)


def _quartic(xp):
    """An 8-parameter plateau on which SFN with λ₀ = 1e-2 rejects its first 3 steps, then accepts."""
    rng = np.random.default_rng(3)
    return Quartic(xp, rng.standard_normal(8), 1e-3 * rng.standard_normal(8))


@pytest.mark.parametrize("method,terms", [("lanczos", 3), ("series", 8)])
def test_saddle_free_newton_takes_H_s_from_the_solvers_check_product(xp, monkeypatch, method, terms):
    # The damping adaptation's model needs H s.  The solver's last product checks its result
    # at x/‖g‖, a multiple of s, so H s costs no product of its own: a Lanczos step with k
    # steps makes k + 2 HVPs (k + 1 Lanczos, 1 check), not k + 3, and 2 gradients.  The steps
    # must be those of a separate product for H s (forced by a solver whose last product is
    # elsewhere), to rounding — accepted and rejected steps alike.
    kw = {"terms": terms, "damping": 1e-2}
    model = _quartic(xp)
    reused = _sfn_trace(model, method, **kw)
    _sfn_elsewhere(monkeypatch)
    separate = _sfn_trace(model, method, **kw)
    assert {r[3] for r in reused} == {True, False}, [r[3] for r in reused]  # both branches of ρ
    for a, b in zip(reused, separate):
        np.testing.assert_allclose(a[0], b[0], rtol=1e-12, atol=1e-14)
        assert a[1] == pytest.approx(b[1], rel=1e-9) and a[2] == pytest.approx(b[2], rel=1e-12)
        assert a[3] == b[3]
        assert a[4] == a[5] and b[4] == b[5] - 1 == a[4] + 1  # info["hvps"] counts what the model did
        assert a[6] == b[6] == 2
        if method == "lanczos":
            assert a[5] == terms + 2


def test_saddle_free_newton_keeps_the_solvers_vector_from_an_hvp_that_writes_into_it():
    # An hvp that scales its argument in place after using it: the vector kept for H s must be
    # the one the product was taken at, else H s (and ρ, and the damping) would be off by the factor.
    xp = pytest.importorskip("array_api_compat.numpy")
    model = _quartic(xp)

    class Scaling:
        loss = model.loss
        params = model.params
        residuals, loss_and_grad = staticmethod(model.residuals), staticmethod(model.loss_and_grad)

        def hvp(self, p, batch, v):
            Hv = model.hvp(p, batch, v)
            v *= 2.0
            return Hv

    kw = {"terms": 3, "damping": 1e-2}
    for a, b in zip(_sfn_trace(model, "lanczos", **kw), _sfn_trace(Scaling(), "lanczos", **kw)):
        np.testing.assert_array_equal(a[0], b[0])
        assert a[1] == b[1] and a[2] == b[2] and a[4] == b[4]


def test_rk4_is_fourth_order_on_a_quadratic(xp):
    rng = np.random.default_rng(6)
    Q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    eigs = np.linspace(0.5, 2.0, 6)
    H = (Q * eigs) @ Q.T
    b = rng.standard_normal(6)
    model = Quadratic(xp, H, b)
    theta_star = np.linalg.solve(H, b)
    T = 1.0
    exact = theta_star + Q @ (np.exp(-eigs * T) * (Q.T @ (0.0 - theta_star)))
    errors = {}
    for method in ("euler", "heun", "rk4"):
        errors[method] = []
        for h in (0.1, 0.05):
            opt, p = GradientFlow(lr=h, method=method), model.params
            for _ in range(round(T / h)):
                p, _ = opt.step(p, model, None)
            errors[method].append(np.linalg.norm(to_numpy(p) - exact))
    order = {m: np.log2(e[0] / e[1]) for m, e in errors.items()}
    assert order["euler"] == pytest.approx(1.0, abs=0.15)
    assert order["heun"] == pytest.approx(2.0, abs=0.15)
    assert order["rk4"] == pytest.approx(4.0, abs=0.2)


def test_ab2_is_second_order_after_the_start():
    xp_np = pytest.importorskip("array_api_compat.numpy")
    H = np.diag([0.5, 1.0, 2.0])
    b = np.ones(3)
    model = Quadratic(xp_np, H, b)
    exact = np.linalg.solve(H, b) * (1 - np.exp(-np.diag(H) * 1.0))
    errs = []
    for h in (0.02, 0.01):
        opt, p = GradientFlow(lr=h, method="ab2"), model.params
        for _ in range(round(1.0 / h)):
            p, _ = opt.step(p, model, None)
        errs.append(np.linalg.norm(p - exact))
    assert np.log2(errs[0] / errs[1]) == pytest.approx(2.0, abs=0.3)


def _rotated_quadratic(xp, eigs, seed=6):
    """``Quadratic`` with Hessian ``Q diag(eigs) Qᵀ`` and the exact gradient flow from θ₀ = 0."""
    rng = np.random.default_rng(seed)
    n = len(eigs)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    H = (Q * eigs) @ Q.T
    b = rng.standard_normal(n)
    star = np.linalg.solve(H, b)

    def flow(t):  # θ(t) = θ* + Q e^{−Λt} Qᵀ (θ₀ − θ*)
        return star + Q @ (np.exp(-np.asarray(eigs) * t) * (Q.T @ (0.0 - star)))

    return Quadratic(xp, H, b), H, b, flow


def test_bs3_steps_are_third_order_and_the_estimate_second(xp):
    """One bs3 step against the exact flow: the step taken (weights b) has local
    error O(h⁴), the error estimate (b − b̂) is O(h³) and larger than that error."""
    model, _, _, flow = _rotated_quadratic(xp, np.linspace(0.5, 2.0, 6))
    true, estimate = [], []
    for h in (0.05, 0.025):
        # atol 1e3: every try accepted, and err·atol recovers ‖e‖_rms (rtol's share is 1e-15 of it)
        opt = GradientFlow(lr=h, method="bs3", rtol=1e-12, atol=1e3)
        p, info = opt.step(model.params, model, None)
        assert info["step_taken"] and info["rejections"] == 0 and info["lr"] == h
        assert info["gradient_evaluations"] == 4 and info["h_next"] == 5 * h  # err ≈ 0: the largest growth
        true.append(np.linalg.norm(to_numpy(p) - flow(h)))
        estimate.append(info["error"] * 1e3 * np.sqrt(6))
    assert np.log2(true[0] / true[1]) == pytest.approx(4.0, abs=0.15)
    assert np.log2(estimate[0] / estimate[1]) == pytest.approx(3.0, abs=0.2)
    assert true[1] < 0.5 * estimate[1]  # the estimate bounds the error of the step taken


def test_bs3_global_error_follows_the_tolerance(xp):
    """Integrated to t ≈ 2 from a small first step: the relative error against
    the exact flow at the time reached is within a small multiple of rtol and
    falls with it; the number of steps grows like rtol^(-1/3)."""
    model, _, _, flow = _rotated_quadratic(xp, np.linspace(0.5, 2.0, 6))
    errors, steps = [], []
    for rtol in (1e-3, 1e-4):
        opt, p, t, n = GradientFlow(lr=0.01, method="bs3", rtol=rtol, atol=0.0), model.params, 0.0, 0
        while t < 2.0:
            p, info = opt.step(p, model, None)
            t, n = t + info["lr"], n + 1
        exact = flow(t)
        errors.append(np.linalg.norm(to_numpy(p) - exact) / np.linalg.norm(exact))
        steps.append(n)
    for rtol, err in zip((1e-3, 1e-4), errors):
        assert err <= 3 * rtol, (rtol, err)
    for a, b in zip(errors, errors[1:]):
        assert 5 < a / b < 20, errors
    for a, b in zip(steps, steps[1:]):
        assert 1.6 < b / a < 2.8, steps  # 10^(1/3) ≈ 2.15


def test_bs3_shrinks_the_step_where_euler_diverges(xp):
    """Curvatures 5 … 100: Euler with lr 0.1 (hμ = 10 > 2) blows up; bs3 from the
    same lr rejects, shrinks h to the stability limit (hμ ≈ 2.5) and decreases
    the loss to a floor set by the tolerance: at the limit the stiffest
    component neither grows nor decays, and the controller holds it where its
    error estimate is 0.9³ of the tolerance (a smaller rtol, a lower floor)."""
    model, H, b, _ = _rotated_quadratic(xp, np.array([5.0, 10.0, 30.0, 100.0]))
    star = np.linalg.solve(H, b)

    def gap(p):
        d = to_numpy(p) - star
        return 0.5 * d @ H @ d

    gap0 = gap(model.params)
    euler, p = GradientFlow(lr=0.1), model.params
    for _ in range(20):
        p, _ = euler.step(p, model, None)
    assert gap(p) > 1e10 * gap0
    floors = []
    for rtol in (1e-2, 1e-3):
        opt, p = GradientFlow(lr=0.1, method="bs3", rtol=rtol, atol=1e-8), model.params
        p, info = opt.step(p, model, None)
        assert info["step_taken"] and info["rejections"] >= 1 and info["lr"] < 0.1
        assert info["gradient_evaluations"] == 1 + 3 * (info["rejections"] + 1)  # k₁ computed once per call
        hs = []
        for _ in range(100):
            p, info = opt.step(p, model, None)
            hs.append(info["lr"])
        assert max(hs[40:]) * 100 < 3.0 and min(hs[40:]) * 100 > 2.0  # near bs3's limit 2.51/μ_max
        assert info["error"] == pytest.approx(0.9**3, rel=0.02)  # the controller's fixed point
        floors.append(gap(p))
    assert floors[0] < 1e-2 * gap0
    assert floors[1] < floors[0] / 20


def test_bs3_fsal_reuses_the_last_stage_only_at_its_point(xp):
    """With fsal=True the 4th stage is the next step's 1st on the same batch: the
    same trajectory as without, 3 gradients a step instead of 4; from any other
    params the stored stage is not used."""
    model, _, _, _ = _rotated_quadratic(xp, np.linspace(0.5, 2.0, 6))
    plain, fsal = GradientFlow(lr=0.3, method="bs3"), GradientFlow(lr=0.3, method="bs3", fsal=True)
    p, q = model.params, model.params
    for k in range(4):
        p, info_p = plain.step(p, model, None)
        q, info_q = fsal.step(q, model, None)
        np.testing.assert_array_equal(to_numpy(p), to_numpy(q))
        assert info_p["gradient_evaluations"] == 4 and info_p["fsal"] is False
        assert info_q["gradient_evaluations"] == (4 if k == 0 else 3) and info_q["fsal"] is (k > 0)
        assert info_q["loss"] == pytest.approx(info_p["loss"], rel=1e-14)
    other = q + 0.25  # params the stored stage does not belong to
    expected, _ = GradientFlow(lr=fsal.h, method="bs3").step(other, model, None)
    r, info = fsal.step(other, model, None)
    assert info["fsal"] is False and info["gradient_evaluations"] == 1 + 3 * (info["rejections"] + 1)
    np.testing.assert_array_equal(to_numpy(r), to_numpy(expected))


def test_bs3_state_round_trip_keeps_h_and_the_fsal_stage(xp):
    model, _, _, _ = _rotated_quadratic(xp, np.array([1.0, 3.0, 10.0, 30.0, 100.0]))
    opt, p = GradientFlow(lr=0.1, method="bs3", fsal=True), model.params
    for _ in range(3):
        p, _ = opt.step(p, model, None)
    state = opt.state_dict()
    assert set(state) == {"optimizer", "steps", "previous_grad", "h", "fsal_grad", "fsal_point", "fsal_loss"}
    assert state["h"] == opt.h != 0.1 and state["steps"] == 3 and isinstance(state["fsal_loss"], float)
    skeleton, arrays = io.split_arrays(state)
    fresh = GradientFlow(lr=0.1, method="bs3", fsal=True)
    fresh.load_state_dict(io.join_arrays(json.loads(json.dumps(skeleton)), arrays))
    a, b_ = p, from_numpy(xp, to_numpy(p))  # the same params, and an equal copy (the checkpoint's)
    for _ in range(3):
        a, info_a = opt.step(a, model, None)
        b_, info_b = fresh.step(b_, model, None)
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b_))
        assert info_a["fsal"] and info_b["fsal"]  # the equal copy is recognised (one host sync)
    with pytest.raises(ValueError, match=r"unknown entries \['fsal_grad', 'fsal_loss', 'fsal_point', 'h'\]"):
        GradientFlow(method="euler").load_state_dict(state)
    with pytest.raises(ValueError, match=r"state\['h'\] must be a finite positive"):
        fresh.load_state_dict({**state, "h": 0.0})


def test_bs3_refusals_change_only_what_is_documented(xp):
    """All tries over the tolerance: no step, only h shrinks (0.2 per try);
    a try leaving the region where the model is finite is retried shorter."""
    model, _, _, _ = _rotated_quadratic(xp, np.linspace(0.5, 2.0, 6))
    opt = GradientFlow(lr=0.5, method="bs3", rtol=1e-300, atol=0.0)  # no error is small enough
    p, info = opt.step(model.params, model, None)
    assert p is model.params and info["step_taken"] is False and info["reason"] == "rejected"
    assert info["rejections"] == 12 and info["gradient_evaluations"] == 1 + 3 * 12 and info["lr"] == 0.0
    assert opt.steps == 0 and opt.h == pytest.approx(0.5 * 0.2**12, rel=1e-12)
    assert "12 tries" in info["message"]

    class Cliff:  # NaN gradients beyond ‖θ‖ = 2: the model is finite only near the start
        loss = "mean"

        def __init__(self, inner):
            self.inner, self.params = inner, inner.params

        def loss_and_grad(self, p, batch):
            f, g = self.inner.loss_and_grad(p, batch)
            far = backend.to_float(xp.linalg.vector_norm(p)) > 2.0
            return f, g * float("nan") if far else g

    opt = GradientFlow(lr=50.0, method="bs3")
    p, info = opt.step(model.params, Cliff(model), None)
    assert info["step_taken"] and info["rejections"] >= 1 and info["lr"] <= 50.0 * 0.2
    assert np.all(np.isfinite(to_numpy(p)))


def test_line_search_takes_no_step_at_a_minimum():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((5, 8))
    theta = rng.standard_normal(8)
    model = TanhRegression(X, np.tanh(X @ theta), theta, "squared")  # zero residual at θ
    p, info = ENGD(damping=1e-6).step(model.params, model, None)
    assert info["step_taken"] is False and info["lr"] == 0.0
    assert "no step" in info["message"]
    np.testing.assert_array_equal(p, theta)


def test_fit_records_history_and_stops_on_callback():
    xp_np = pytest.importorskip("array_api_compat.numpy")
    model = make_model(xp_np)
    seen = []
    params, hist = fit(
        ENGD(damping=1e-6), model, None, 10, callback=lambda s, p, i: seen.append(s) or s == 4,
        progress=False, metric=lambda p: float(np.linalg.norm(p)),
    )
    assert hist["step"] == [1, 2, 3, 4] and seen == [1, 2, 3, 4]
    assert len(hist["loss"]) == 4 and all(t >= 0 for t in hist["step_time"])
    assert hist["metric_step"][0] == 0 and len(hist["metric"]) >= 2
    assert hist["loss"][-1] < hist["loss"][0]
    batches = iter([None] * 3)
    _, hist = fit(Adam(lr=0.01), model, batches, 3, progress=False)
    assert hist["step"] == [1, 2, 3]
    with pytest.raises(ValueError, match="steps must be positive"):
        fit(Adam(), model, None, 0)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="damping must be a finite positive"):
        ENGD(damping=0.0)
    with pytest.raises(ValueError, match="damping must be a finite positive"):
        SPRING(damping=-1.0, momentum=0.5)
    with pytest.raises(ValueError, match=r"momentum must lie in \[0, 1\)"):
        SPRING(damping=1e-3, momentum=1.0)
    with pytest.raises(ValueError, match="solver must be one of"):
        ENGD(damping=1e-3, solver="qr")
    with pytest.raises(ValueError, match="method must be one of"):
        GradientFlow(lr=0.1, method="rk45")
    with pytest.raises(ValueError, match="method must be one of"):
        SaddleFreeNewton(damping=0.1, method="exact")
    with pytest.raises(ValueError, match="terms must be positive"):
        SaddleFreeNewton(damping=0.1, terms=0)
    with pytest.raises(ValueError, match="refresh_every must be positive"):
        FNGD(damping=0.1, refresh_every=0)
    with pytest.raises(ValueError, match="refresh_tol"):
        FNGD(refresh_tol=0.0)
    with pytest.raises(ValueError, match="drift"):
        FNGD(drift="cosine")
    with pytest.raises(ValueError, match="lr must be a finite positive"):
        GradientFlow(lr=-0.1)
    with pytest.raises(TypeError, match="damping must be a real number"):
        ENGD(damping="big")


def test_model_mismatches_are_named():
    xp_np = pytest.importorskip("array_api_compat.numpy")
    squared = make_model(xp_np)
    mean = make_model(xp_np, loss="mean")
    with pytest.raises(ValueError, match="FNGD needs a model whose outputs are per-sample losses"):
        FNGD(damping=0.1).step(squared.params, squared, None)
    with pytest.raises(ValueError, match="ENGD needs a model whose outputs are residuals"):
        ENGD(damping=0.1).step(mean.params, mean, None)

    class NoHvp:
        loss = "squared"
        params = squared.params
        residuals = squared.residuals
        loss_and_grad = squared.loss_and_grad

    with pytest.raises(TypeError, match=r"model must provide hvp\(\) for SaddleFreeNewton"):
        SaddleFreeNewton(damping=0.1).step(squared.params, NoHvp(), None)
    with pytest.raises(TypeError, match=r"model must provide jacobian\(\)"):
        ENGD(damping=0.1).step(squared.params, NoHvp(), None)


class RowSubset(TanhRegression):
    """The tanh regression restricted to the rows named by the batch."""

    def residuals(self, p, batch):
        return super().residuals(p, None)[batch]

    def jacobian(self, p, batch):
        return super().jacobian(p, None)[batch, :]


def test_fngd_keeps_weights_per_batch_key():
    xp_np = pytest.importorskip("array_api_compat.numpy")
    base = make_model(xp_np, n=20, p=6, loss="mean")
    model = RowSubset(base.X, base.y, base.params, "mean")
    batches = [np.arange(0, 10), np.arange(10, 20)]
    opt = FNGD(damping=1e-2, lr=0.2, refresh_every=2, refresh_tol=None)  # the count alone
    p, refreshed = model.params, []
    for epoch in range(3):
        for key, rows in enumerate(batches):
            before = p
            p, info = opt.step(p, model, rows, batch_key=key)
            refreshed.append(info["refreshed"])
            U = model.jacobian(before, rows)
            # the weights used are those of THIS batch: fresh ones on a refresh
            if info["refreshed"]:
                expected = np.linalg.solve(U @ U.T + 1e-2 * 10 * np.eye(10), np.ones(10))
                np.testing.assert_allclose(opt.alpha, expected, rtol=1e-10)
            np.testing.assert_allclose(before - p, 0.2 * U.T @ opt.alpha, rtol=1e-10)
    assert refreshed == [True, True, False, False, True, True]
    full = make_model(xp_np, n=20, p=6, loss="mean")
    assert loss_np(full, p) < loss_np(full, full.params)
