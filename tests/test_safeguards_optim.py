"""Safeguards of natgrad.optim that no other test caught when removed
(mutation testing: each was disabled in turn, the optimiser tests run on
NumPy, and where none failed a test was added here).  Each test names the
safeguard it guards (file:line at the time of writing) and what happened
without it."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import from_numpy, to_numpy
from natgrad import backend
from natgrad.optim import ENGD, FNGD, SPRING, Adam, SaddleFreeNewton, _common, gauss_newton_direction
from natgrad.validation import CallableOutputError


class Linear:
    """r(θ) = tanh(Aθ) − y, a duck-typed model (no adapter in between: the
    optimiser's own output checks are what is tested)."""

    loss = "squared"

    def __init__(self, xp, n=6, p=9, seed=0):
        rng = np.random.default_rng(seed)
        self.xp = xp
        self.A_np = rng.standard_normal((n, p)) / np.sqrt(p)
        self.y_np = rng.uniform(-0.8, 0.8, n)
        self.A, self.y = from_numpy(xp, self.A_np), from_numpy(xp, self.y_np)
        self.params = from_numpy(xp, 0.3 * rng.standard_normal(p))

    def residuals(self, p, batch):
        return self.xp.tanh(self.A @ p) - self.y

    def jacobian(self, p, batch):
        t = self.xp.tanh(self.A @ p)
        return (1.0 - t * t)[:, None] * self.A

    def reference_loss(self, p):
        """½‖r‖² in float64 NumPy."""
        r = np.tanh(self.A_np @ np.asarray(p, dtype=np.float64)) - self.y_np
        return 0.5 * float(r @ r)


def _state(opt):
    """The state as NumPy/plain data (for comparisons)."""
    return {k: (to_numpy(v) if backend.is_array(v) else v) for k, v in opt.state_dict().items()}


def _same_state(a, b):
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], np.ndarray) or isinstance(b[k], np.ndarray):
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        else:
            assert a[k] == b[k], k


# ---------------------------------------------------------------------------
# _common.grid_line_search / take_step
# ---------------------------------------------------------------------------


class ShortAlong(Linear):
    """``losses_along`` that skips the first step size of every chunk (a model
    bug): its losses belong to the step sizes after the ones asked for."""

    def losses_along(self, params, direction, etas, batch):
        xp = self.xp
        return [0.5 * xp.sum(self.residuals(params - eta * direction, batch) ** 2) for eta in etas[1:]]


def test_losses_along_with_a_wrong_count_is_refused(xp):
    # Guards _common.py:144 (losses_along must return one loss per step size).
    # Removed: each loss was paired with the step size before its own; ENGD took
    # the step lr=1.0 after 3 evaluations and reported loss_after 0.2217 (the
    # loss at lr=0.5), while the loss at the new params is 0.00956.
    model = ShortAlong(xp)
    opt = ENGD(damping=1e-6)
    with pytest.raises(CallableOutputError, match=r"model\.losses_along at ENGD step 1 returned 3 values for 4 step sizes"):
        opt.step(model.params, model, None)
    assert opt.steps == 0


class NaNAway(Linear):
    """Finite residuals at the starting point, NaN at every other point (a model
    that leaves its domain along any step)."""

    def residuals(self, p, batch):
        r = super().residuals(p, batch)
        if bool(self.xp.all(p == self.params)):
            return r
        return r * float("nan")


@pytest.mark.parametrize("make", [lambda: ENGD(damping=1e-6), lambda: SPRING(damping=1e-6, momentum=0.5)],
                         ids=["engd", "spring"])
def test_a_line_search_whose_every_loss_is_nan_is_a_nonfinite_rejection(xp, make):
    # Guards _common.py:163 (every loss of the grid NaN -> eta and loss None) and
    # _common.py:609 (take_step turns that into a rejection with finite=False).
    # Removed (either): it became a "no_decrease" step with finite=True, so the
    # optimiser committed its state: ENGD's steps went 0 -> 1 and SPRING stored
    # φ and steps=1 from a step whose every trial loss was NaN.
    model = NaNAway(xp)
    opt = make()
    before = _state(opt)
    new, info = opt.step(model.params, model, None)
    assert new is model.params
    assert info["step_taken"] is False and info["reason"] == "nonfinite" and info["lr"] == 0.0
    assert "every step size of the line search" in info["message"] and "step 1" in info["message"]
    assert info["line_search_evaluations"] == len(_common.LINE_SEARCH_GRID)
    assert info["loss"] == pytest.approx(model.reference_loss(to_numpy(model.params)), rel=1e-12)
    _same_state(_state(opt), before)


# ---------------------------------------------------------------------------
# a sample-space factorisation error that is not NaN/Inf is a bug, raised
# ---------------------------------------------------------------------------


class Empty(Linear):
    """A model with no residuals at all (an empty batch)."""

    def residuals(self, p, batch):
        return self.xp.zeros((0,), dtype=p.dtype)

    def jacobian(self, p, batch):
        return self.xp.zeros((0, p.shape[0]), dtype=p.dtype)


@pytest.mark.parametrize("make", [lambda: ENGD(damping=1e-6), lambda: SPRING(damping=1e-6, momentum=0.5)],
                         ids=["engd", "spring"])
def test_an_empty_batch_raises_instead_of_being_called_an_overflow(xp, make):
    # Guards _common.py:537 (factor_rejection raises again any ValueError that is
    # neither NaN/Inf in J nor an overflow).  Removed: an empty batch (N = 0) came
    # back as a step not taken "because its Gram matrix overflows", which is false.
    model = Empty(xp)
    opt = make()
    with pytest.raises(ValueError, match="at least one row|non-empty"):
        opt.step(model.params, model, None)
    assert opt.steps == 0


def test_gauss_newton_direction_refuses_an_empty_jacobian_on_every_solver(xp):
    # Guards engd.py:136 (J must be a non-empty 2-D array).  Removed: solver="dense"
    # returned the zero direction for a (0, P) Jacobian, silently.
    J = from_numpy(xp, np.zeros((0, 4)))
    r = from_numpy(xp, np.zeros(0))
    for solver in ("woodbury", "dense", "nystrom"):
        with pytest.raises(ValueError, match=r"J must be a non-empty 2-D array, got shape \(0, 4\)"):
            gauss_newton_direction(J, r, 1e-3, solver=solver)


# ---------------------------------------------------------------------------
# state dicts
# ---------------------------------------------------------------------------


def test_a_state_with_vectors_of_two_libraries_is_refused():
    # Guards _common.py:791 (the state's vectors share one library and device).
    # Removed: Adam accepted m from NumPy and v from array_api_strict; its next
    # step raised array_api_strict's TypeError "Expected Array or Python scalar;
    # got <class 'numpy.ndarray'>" inside the update.
    strict = pytest.importorskip("array_api_strict")
    xp = pytest.importorskip("array_api_compat.numpy")

    class Grad(Linear):
        def loss_and_grad(self, p, batch):
            r, J = self.residuals(p, batch), self.jacobian(p, batch)
            return 0.5 * self.xp.vecdot(r, r), self.xp.matrix_transpose(J) @ r

    model = Grad(xp)
    opt = Adam(lr=1e-2)
    opt.step(model.params, model, None)
    state = opt.state_dict()
    before = _state(opt)
    mixed = {**state, "v": strict.asarray(to_numpy(state["v"]))}
    with pytest.raises(TypeError, match="array_api_strict"):
        opt.load_state_dict(mixed)
    _same_state(_state(opt), before)


def _refuse_cache_state(keys, uses, match, seed):
    """FNGD.load_state_dict refuses a cache of two α vectors with these keys
    and use counts, naming the entry, and keeps its state."""
    rng = np.random.default_rng(seed)
    opt = FNGD(damping=1e-2)
    state = {**opt.state_dict(), "cache_keys": keys, "cache_alphas": [rng.standard_normal(4), rng.standard_normal(4)],
             "cache_uses": uses}
    before = _state(opt)
    with pytest.raises(ValueError, match=match):
        opt.load_state_dict(state)
    _same_state(_state(opt), before)


def test_a_string_where_a_list_belongs_is_refused():
    # Guards _common.py:678 (a list entry of the state must be a list).  Removed:
    # FNGD accepted cache_keys="ab" as the two keys 'a' and 'b' (a str iterates
    # over its characters) next to two cached weight vectors.
    _refuse_cache_state("ab", [1, 1], r"FNGD\.load_state_dict: state\['cache_keys'\] must be a list, got str", 7)


# ---------------------------------------------------------------------------
# Adam
# ---------------------------------------------------------------------------


class Tilted:
    """f(θ) = c·Σθ: finite loss, constant gradient c (Adam's normalised step is
    about lr per entry, whatever c)."""

    loss = "mean"

    def __init__(self, xp, c, p0):
        self.xp, self.c, self.params = xp, c, p0

    def residuals(self, p, batch):
        return self.xp.reshape(self.loss_and_grad(p, batch)[0], (1,))

    def loss_and_grad(self, p, batch):
        return self.xp.sum(self.c * p), self.c * self.xp.ones_like(p)


def test_adam_refuses_an_update_that_overflows(xp):
    # Guards adam.py:124-126 (the new params must be finite).  Removed: Adam
    # returned params of -Inf with step_taken=True and committed m, v and steps=1.
    p0 = from_numpy(xp, -1.0e308 * np.linspace(1.0, 1.5, 4))
    model = Tilted(xp, 1e-10, p0)
    opt = Adam(lr=1e308, eps=1e-12)  # the step is about lr·(1 − 1/100) per entry: past the largest float
    with np.errstate(over="ignore"):  # NumPy's overflow warning is not what is tested
        new, info = opt.step(p0, model, None)
    assert new is p0
    assert info["step_taken"] is False and info["reason"] == "nonfinite" and info["lr"] == 0.0
    assert "the updated params (an overflow)" in info["message"]
    assert info["loss"] == pytest.approx(float(np.sum(1e-10 * to_numpy(p0))), rel=1e-12)
    assert opt.state_dict() == {"optimizer": "Adam", "m": None, "v": None, "steps": 0}


def test_adam_refuses_a_gradient_whose_square_overflows(xp):
    # A finite gradient entry of 1e200 squares to Inf in the second moment v;
    # β₂·Inf stays Inf, so that coordinate would never move again, while the
    # step itself (m / √v = 0 there) looked finite and was taken: Adam stored
    # v = [inf, ...] and NumPy warned of an overflow.  Such a step is refused
    # and changes no state; the next, with a sane gradient, is taken.
    p0 = from_numpy(xp, np.linspace(1.0, 1.5, 3))
    opt = Adam(lr=0.1)
    new, info = opt.step(p0, Tilted(xp, 1e200, p0), None)
    assert new is p0 and info["step_taken"] is False and info["reason"] == "nonfinite"
    assert "1e+200 squares past the largest" in info["message"] and "second moment" in info["message"]
    assert opt.state_dict() == {"optimizer": "Adam", "m": None, "v": None, "steps": 0}
    new, info = opt.step(p0, Tilted(xp, 2.0, p0), None)
    assert info["step_taken"] is True
    # the first step of Adam moves each entry by lr·sign(g) (up to ε)
    np.testing.assert_allclose(to_numpy(new), to_numpy(p0) - 0.1, rtol=0, atol=1e-9)
    assert np.all(np.isfinite(to_numpy(opt.state_dict()["v"])))
    # an empty parameter vector has no largest gradient entry: still a step
    empty = from_numpy(xp, np.zeros(0))
    _, info = Adam(lr=0.1).step(empty, Tilted(xp, 2.0, empty), None)
    assert info["step_taken"] is True


# ---------------------------------------------------------------------------
# ENGD / SPRING
# ---------------------------------------------------------------------------


class NaNProducts(Linear):
    """Finite residuals; its Jacobian-vector products are NaN."""

    def jvp(self, p, batch, v):
        return self.jacobian(p, batch) @ v * float("nan")

    def vjp(self, p, batch, u):
        return self.xp.matrix_transpose(self.jacobian(p, batch)) @ u


def test_engd_direction_raises_when_cg_meets_nan(xp):
    # Guards engd.py:302-303 (direction() raises when CG met NaN/Inf; step()
    # turns the same into a rejection).  Removed: direction() returned d = None
    # as if it were a direction.
    model = NaNProducts(xp)
    with pytest.raises(ValueError, match="CG on JJᵀ \\+ λI met NaN or Inf"):
        ENGD(damping=1e-6, solver="cg").direction(model.params, model, None)


class Solved(Linear):
    """Residuals exactly zero at the starting point: y = tanh(A θ₀)."""

    def __init__(self, xp):
        super().__init__(xp)
        self.y = self.xp.tanh(self.A @ self.params)


def test_spring_norm_cap_at_a_zero_direction(xp):
    # Guards spring.py:155 (the norm cap divides by ‖φ‖ only when it is > 0 and
    # finite).  Removed: at an exact solution (r = 0, so φ = 0) SPRING with lr and
    # norm_cap raised ZeroDivisionError (float division by zero).
    model = Solved(xp)
    opt = SPRING(damping=1e-6, momentum=0.5, lr=0.5, norm_cap=1.0)
    new, info = opt.step(model.params, model, None)
    assert info["loss"] == 0.0 and info["direction_norm"] == 0.0
    assert info["step_taken"] is True and info["lr"] == 0.5
    np.testing.assert_array_equal(to_numpy(new), to_numpy(model.params))
    assert opt.steps == 1


# ---------------------------------------------------------------------------
# SaddleFreeNewton
# ---------------------------------------------------------------------------


def _indefinite(seed=4, n=6):
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    eigs = np.array([2.0, -1.0, 0.5, 1.5, -0.3, 0.8])[:n]
    return (Q * eigs) @ Q.T, rng.standard_normal(n)


class Quad:
    """f(θ) = ½ θᵀHθ − bᵀθ from p0; ``trial`` optionally replaces
    the loss at any point other than p0 (the adaptation's trial loss)."""

    loss = "mean"

    def __init__(self, xp, H, b, p0, trial=None):
        self.xp, self.H, self.b, self.params, self.trial = xp, from_numpy(xp, H), from_numpy(xp, b), p0, trial

    def residuals(self, p, batch):
        return self.xp.reshape(self.loss_and_grad(p, batch)[0], (1,))

    def loss_and_grad(self, p, batch):
        Hp = self.H @ p
        loss = 0.5 * self.xp.vecdot(p, Hp) - self.xp.vecdot(self.b, p)
        if self.trial is not None and not bool(self.xp.all(p == self.params)):
            loss = self.trial(loss)
        return loss, Hp - self.b

    def hvp(self, p, batch, v):
        return self.H @ v


def test_sfn_refuses_an_update_that_overflows(xp):
    # Guards sfn.py:214-217 (the new params must be finite).  Removed: the
    # adaptation evaluated the loss at params of -Inf (NumPy: "invalid value
    # encountered in matmul" from the model) instead of a clean rejection.
    p0 = from_numpy(xp, -1e308 * np.linspace(1.0, 1.5, 6))
    model = Quad(xp, np.zeros((6, 6)), -1e-10 * np.ones(6), p0)  # f = 1e-10·Σθ, H = 0
    opt = SaddleFreeNewton(damping=1e-10, lr=1e308, method="lanczos", terms=3)  # |step| = lr·g/λ = 1e308
    with np.errstate(over="ignore"):  # NumPy's overflow warning is not what is tested
        new, info = opt.step(p0, model, None)
    assert new is p0
    assert info["step_taken"] is False and info["reason"] == "nonfinite"
    assert "the updated params (an overflow)" in info["message"]
    assert opt.state_dict() == {"optimizer": "SaddleFreeNewton", "damping": 1e-10, "steps": 0}


def test_sfn_damping_never_drops_below_the_smallest_normal_float(xp):
    # Guards sfn.py:283 (the decreased damping is floored at sys.float_info.min).
    # Removed: a good step (ρ ≈ 1) from λ = 3e-308 left λ = 1e-308, a subnormal.
    H, b = _indefinite()
    model = Quad(xp, H @ H + 0.5 * np.eye(6), b, from_numpy(xp, np.zeros(6)))
    opt = SaddleFreeNewton(damping=3e-308, method="lanczos", terms=6)
    _, info = opt.step(model.params, model, None)
    assert info["step_taken"] is True and info["rho"] > 0.75
    assert opt.damping == np.finfo(np.float64).tiny


def test_sfn_damping_growth_after_a_rejection_stays_finite(xp):
    # Guards sfn.py:291 (the growth lr·‖g‖/(t‖s‖) is capped at the largest float).
    # Removed: a rejected step from λ = 4e307 with a NaN trial loss (t = 0.1, so
    # the growth is about λ/0.1 = 4e308) set the damping to Inf, an invalid
    # state (load_state_dict refuses it).  ‖g‖ ≈ 1e10 and λ ≤ 4e307 keep ‖s‖ and
    # 1/λ normal floats.
    if xp.__name__.startswith("jax"):
        # measured: on JAX (CPU, subnormals flushed to zero) the Lanczos solve at
        # λ ≈ 1e307-1e308 returns x = 0, so ‖s‖ = 0 and the growth is never reached
        pytest.skip("the Lanczos direction underflows to zero on JAX at this damping")
    H, b = _indefinite()
    model = Quad(xp, H, 1e10 * b, from_numpy(xp, np.zeros(6)), trial=lambda loss: loss * float("nan"))
    opt = SaddleFreeNewton(damping=4e307, method="lanczos", terms=3)
    new, info = opt.step(model.params, model, None)
    assert info["step_taken"] is False and info["reason"] == "no_decrease" and new is model.params
    assert opt.damping == np.finfo(np.float64).max
    opt.load_state_dict(opt.state_dict())  # a valid state
    # the next step from there is poor again (ρ < 0.25), and the damping
    # grows by 1/0.9: capped too.  Uncapped it became Inf, and the step
    # after raised "damping must be a finite non-negative number, got inf"
    for _ in range(2):
        new, info = opt.step(model.params, model, None)
        assert info["step_taken"] is False and opt.damping == np.finfo(np.float64).max
    opt.load_state_dict(opt.state_dict())


def test_sfn_a_nan_trial_loss_shortens_the_next_step_tenfold(xp):
    # Guards sfn.py:315 (_backtrack_fraction: t = 0.1 when f(θ + s) is not
    # finite).  The Inf case is covered elsewhere; for NaN, removed: t became 0.5
    # and the damping grew to 2.08 instead of 10.39 (the next step five times as
    # long as documented).
    H, b = _indefinite()
    model = Quad(xp, H, b, from_numpy(xp, np.zeros(6)), trial=lambda loss: loss * float("nan"))
    opt = SaddleFreeNewton(damping=0.5, method="lanczos", terms=6)  # Lanczos exact in 6 steps
    new, info = opt.step(model.params, model, None)
    assert info["step_taken"] is False and info["rho"] == 0.0 and new is model.params
    # float64 reference: s = −(|H| + λI)⁻¹ g at θ = 0 (g = −b), λ ≥ ‖g‖/(0.1‖s‖)
    w, V = np.linalg.eigh(H)
    s = V @ ((V.T @ b) / (np.abs(w) + 0.5))
    expected = max(0.5 / 0.9, np.linalg.norm(b) / (0.1 * np.linalg.norm(s)))
    assert opt.damping == pytest.approx(expected, rel=1e-9)


def test_sfn_a_huge_reduction_ratio_does_not_overflow(xp):
    # Guards sfn.py:282 (ρ ≥ 1 gives the factor ⅓ without computing (2ρ − 1)³).
    # Removed: a trial loss 1e200 below the start (ρ ≈ 2.7e199) raised
    # OverflowError (34, 'Numerical result out of range') from the cube.
    H, b = _indefinite()
    model = Quad(xp, H, b, from_numpy(xp, np.zeros(6)), trial=lambda loss: loss - 1e200)
    opt = SaddleFreeNewton(damping=0.5, method="lanczos", terms=3)
    _, info = opt.step(model.params, model, None)
    assert info["step_taken"] is True and info["rho"] > 1e199
    assert opt.damping == pytest.approx(0.5 / 3.0, rel=1e-15)


# ---------------------------------------------------------------------------
# FNGD
# ---------------------------------------------------------------------------


class PerSample:
    """ℓᵢ(θ) = ½(tanh(xᵢᵀθ) − yᵢ)², rows of the batch given by ``batch`` (a
    number of samples); with ``products`` also ``vjp``/``jvp`` (the reuse step
    without forming J)."""

    loss = "mean"

    def __init__(self, xp, products, n=8, p=9, seed=2):
        rng = np.random.default_rng(seed)
        self.xp = xp
        self.X_np, self.y_np = rng.standard_normal((n, p)) / np.sqrt(p), rng.uniform(-0.8, 0.8, n)
        self.X, self.y = from_numpy(xp, self.X_np), from_numpy(xp, self.y_np)
        self.params = from_numpy(xp, 0.3 * rng.standard_normal(p))
        if products:
            self.vjp = lambda p, batch, u: self.xp.matrix_transpose(self.jacobian(p, batch)) @ u
            self.jvp = lambda p, batch, v: self.jacobian(p, batch) @ v

    def residuals(self, p, batch):
        t = self.xp.tanh(self.X[:batch, :] @ p) - self.y[:batch]
        return 0.5 * t * t

    def jacobian(self, p, batch):
        t = self.xp.tanh(self.X[:batch, :] @ p)
        return ((t - self.y[:batch]) * (1.0 - t * t))[:, None] * self.X[:batch, :]


@pytest.mark.parametrize("products", [False, True], ids=["jacobian", "vjp-jvp"])
def test_fngd_a_batch_of_another_size_refreshes(xp, products):
    # Guards fngd.py:336-337 (vjp path) and fngd.py:345-346 (J path): a reuse
    # step whose batch has another size than the cached α refreshes.  Removed
    # (either): the stale α of length 8 met the 6 per-sample gradients and the
    # step raised NumPy's ValueError "matmul: ... size 8 is different from 6".
    model = PerSample(xp, products)
    opt = FNGD(damping=1e-2, lr=0.5, refresh_every=3)
    params, _ = opt.step(model.params, model, 8)
    new, info = opt.step(params, model, 6)
    assert info["refreshed"] is True and info["step_taken"] is True
    # float64 reference: the fresh damped natural gradient on the 6 samples
    X, y, p = model.X_np[:6], model.y_np[:6], to_numpy(params)
    t = np.tanh(X @ p)
    J = ((t - y) * (1 - t * t))[:, None] * X
    alpha = np.linalg.solve(J @ J.T + 1e-2 * 6 * np.eye(6), np.ones(6))
    np.testing.assert_allclose(to_numpy(new), p - 0.5 * (J.T @ alpha), rtol=1e-10, atol=1e-12)


def test_fngd_velocity_of_another_length_is_refused_at_the_step():
    # Guards fngd.py:243 (the loaded velocity must have the params' shape).
    # Removed: a velocity of shape (1,) broadcast against the direction, the step
    # was taken and the momentum became 0.5·1 + d, garbage.
    xp = pytest.importorskip("array_api_compat.numpy")
    model = PerSample(xp, False)
    opt = FNGD(damping=1e-2, momentum=0.5)
    opt.load_state_dict({**opt.state_dict(), "velocity": np.ones(1)})
    with pytest.raises(ValueError, match=r"FNGD's state 'velocity' has shape \(1,\) but params have shape \(9,\)"):
        opt.step(model.params, model, 8)
    assert opt.steps == 0


def test_fngd_repeated_cache_keys_are_refused():
    # Guards fngd.py:213 (the cache keys of a loaded state are distinct).
    # Removed: the state was accepted with one key 3 (uses 2): the first α was
    # dropped silently.
    _refuse_cache_state([3, 3], [1, 2], r"cache_keys has repeated keys: \[3, 3\]", 11)


# ---------------------------------------------------------------------------
# fit's stopping rules
# ---------------------------------------------------------------------------


class Scripted:
    """An optimiser that reports the given (loss, step_taken) per step and
    moves the parameters by −0.01 when it takes a step."""

    def __init__(self, script):
        self.script, self.k = list(script), 0

    def step(self, params, model, batch):
        loss, taken = self.script[self.k]
        self.k += 1
        info = {"loss": loss, "lr": 0.01 if taken else 0.0, "step_taken": taken}
        if not taken:
            info["message"] = f"scripted rejection {self.k}"
        return (params - 0.01 if taken else params), info


def test_fit_counts_only_consecutive_rejections():
    # Guards fit.py:476 (a step taken resets the count of steps not taken).
    # Removed: fit stopped with "rejected" after 2 rejections that were not
    # consecutive (max_rejections=2, steps 2 and 4 rejected, 3 taken).
    from natgrad.optim import fit

    xp = pytest.importorskip("array_api_compat.numpy")
    model = Linear(xp)
    script = [(1.0, True), (0.9, False), (0.9, True), (0.8, False), (0.8, True), (0.7, True)]
    params, h = fit(Scripted(script), model, None, len(script), progress=False, max_rejections=2)
    assert h["stopped"] == "steps" and h["step"] == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose(to_numpy(params), to_numpy(model.params) - 0.04, rtol=0, atol=1e-15)


def test_fit_divergence_is_not_measured_against_a_first_loss_of_zero():
    # Guards fit.py:470 (divergence compares against a finite, positive first
    # loss).  Removed: a run whose first loss is 0.0 stopped as "diverged" at
    # step 2 on a loss of 1e-12 (anything above 1e6·0).
    from natgrad.optim import fit

    xp = pytest.importorskip("array_api_compat.numpy")
    model = Linear(xp)
    script = [(0.0, True), (1e-12, True), (2e-12, True)]
    _, h = fit(Scripted(script), model, None, len(script), progress=False)
    assert h["stopped"] == "steps" and h["loss"] == [0.0, 1e-12, 2e-12]
