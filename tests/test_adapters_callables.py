"""natgrad.adapters.callables: exact derivations from what is given, finite
differences only when asked, and errors naming what is missing.

The model is a small nonlinear least-squares problem r(θ) = tanh(Aθ) − y on
NumPy with a closed-form Jacobian; exact derivations agree to 1e-13, central
differences (step eps^(1/3)) to 1e-6.
"""

from __future__ import annotations

import numpy as np
import pytest

from natgrad.adapters.callables import CallableModel
from natgrad.validation import CallableOutputError

rng = np.random.default_rng(0)
A = rng.standard_normal((5, 3))
Y = rng.standard_normal(5)
THETA = rng.standard_normal(3)


def r(p, b):
    return np.tanh(A @ p) - Y


def J(p, b):
    return (1 - np.tanh(A @ p) ** 2)[:, None] * A


def jvp(p, b, v):
    return J(p, b) @ v


def vjp(p, b, u):
    return J(p, b).T @ u


def hessian(p, loss="squared"):
    t = np.tanh(A @ p)
    d1, d2 = 1 - t**2, -2 * t * (1 - t**2)
    res = t - Y
    if loss == "squared":
        return (A.T * d1**2) @ A + (A.T * (res * d2)) @ A
    return (A.T * (d2 / len(Y))) @ A


@pytest.mark.parametrize(
    "given",
    [dict(jacobian=J), dict(vjp=vjp), dict(jvp=jvp), dict(jvp=jvp, vjp=vjp)],
    ids=["jacobian", "vjp", "jvp", "jvp+vjp"],
)
@pytest.mark.parametrize("loss", ["squared", "mean"])
def test_exact_derivations(given, loss):
    model = CallableModel(residuals=r, params=THETA, loss=loss, **given)
    v, u = rng.standard_normal(3), rng.standard_normal(5)
    Jref = J(THETA, None)
    np.testing.assert_allclose(model.jacobian(THETA, None), Jref, rtol=0, atol=1e-13)
    np.testing.assert_allclose(model.jvp(THETA, None, v), Jref @ v, rtol=0, atol=1e-13)
    np.testing.assert_allclose(model.vjp(THETA, None, u), Jref.T @ u, rtol=0, atol=1e-13)
    G = Jref.T @ Jref / (5 if loss == "mean" else 1)
    np.testing.assert_allclose(model.ggn_vp(THETA, None, v), G @ v, rtol=0, atol=1e-13)
    loss_value, g = model.loss_and_grad(THETA, None)
    res = r(THETA, None)
    if loss == "squared":
        assert loss_value == pytest.approx(0.5 * res @ res, rel=1e-14)
        np.testing.assert_allclose(g, Jref.T @ res, rtol=0, atol=1e-13)
    else:
        assert loss_value == pytest.approx(res.mean(), rel=1e-14)
        np.testing.assert_allclose(g, Jref.mean(0), rtol=0, atol=1e-13)
    with pytest.raises(NotImplementedError, match="hvp="):
        model.hvp(THETA, None, v)


@pytest.mark.parametrize("loss", ["squared", "mean"])
def test_finite_differences_only_when_asked(loss):
    v = rng.standard_normal(3)
    with pytest.raises(NotImplementedError, match="jacobian"):
        CallableModel(residuals=r, params=THETA).jacobian(THETA, None)
    fd = CallableModel(residuals=r, params=THETA, loss=loss, finite_differences=True)
    np.testing.assert_allclose(fd.jacobian(THETA, None), J(THETA, None), rtol=0, atol=1e-8)
    np.testing.assert_allclose(fd.jvp(THETA, None, v), J(THETA, None) @ v, rtol=0, atol=1e-8)
    np.testing.assert_allclose(fd.hvp(THETA, None, v), hessian(THETA, loss) @ v, rtol=0, atol=1e-6)
    exact_hvp = CallableModel(residuals=r, jacobian=J, hvp=lambda p, b, w: hessian(p, loss) @ w, loss=loss)
    np.testing.assert_allclose(exact_hvp.hvp(THETA, None, v), hessian(THETA, loss) @ v, rtol=0, atol=1e-14)


def test_given_functions_win_and_params():
    calls = []
    model = CallableModel(
        residuals=r, jacobian=J, ggn_vp=lambda p, b, v: calls.append("ggn") or 2.0 * v,
        loss_and_grad=lambda p, b: (calls.append("lag") or 1.0, np.zeros(3)), params=THETA,
    )
    model.ggn_vp(THETA, None, np.ones(3))
    model.loss_and_grad(THETA, None)
    assert calls == ["ggn", "lag"]
    p = model.params
    p[0] = 99.0
    assert model.params[0] == THETA[0]
    assert model.flatten(THETA) is THETA and model.unflatten(THETA) is THETA


def test_bad_input_errors():
    with pytest.raises(TypeError, match="jvp must be callable"):
        CallableModel(residuals=r, jvp=3)
    with pytest.raises(ValueError, match="loss must be"):
        CallableModel(residuals=r, loss="sum")
    with pytest.raises(ValueError, match="finite_differences"):
        CallableModel(residuals=r, finite_differences=-1.0)
    with pytest.raises(TypeError, match="params must be"):
        CallableModel(residuals=r, params=[1.0, 2.0])
    model = CallableModel(residuals=r, jacobian=J, params=THETA)
    with pytest.raises(ValueError, match="flat must have shape"):
        model.residuals(np.zeros(4), None)
    with pytest.raises(ValueError, match="u must have shape"):
        CallableModel(residuals=r, jacobian=J).vjp(THETA, None, np.ones(2))
    with pytest.raises(CallableOutputError, match=r"jacobian \(call 1\) returned shape \(5, 2\) .*expected \(any, 3\)"):
        CallableModel(residuals=r, jacobian=lambda p, b: A[:, :2]).jacobian(THETA, None)
    with pytest.raises(CallableOutputError, match=r"residuals \(call 1\) returned shape \(2, 2\)"):
        CallableModel(residuals=lambda p, b: np.ones((2, 2))).residuals(THETA, None)
    with pytest.raises(ValueError, match="params contains NaN"):
        CallableModel(residuals=r, params=np.array([1.0, np.nan]))
    with pytest.raises(NotImplementedError, match="residuals="):
        CallableModel(jacobian=J).residuals(THETA, None)
    with pytest.raises(ValueError, match="params"):
        CallableModel(residuals=r).params


def test_outputs_checked_at_every_call_and_the_error_names_the_call():
    """A fault at a late call is caught where it happens: the third vjp."""
    calls = []

    def flaky_vjp(p, b, u):
        calls.append(1)
        return vjp(p, b, u)[:-1] if len(calls) == 3 else vjp(p, b, u)

    model = CallableModel(residuals=r, jvp=jvp, vjp=flaky_vjp, params=THETA)
    u = rng.standard_normal(5)
    model.vjp(THETA, None, u)
    model.vjp(THETA, None, u)
    with pytest.raises(CallableOutputError, match=r"vjp \(call 3\) returned shape \(2,\) for an input of shape \(3,\)") as err:
        model.vjp(THETA, None, u)
    assert (err.value.name, err.value.call) == ("vjp", 3)
    # N is the batch's to decide, but the number of dimensions is checked
    flat_jvp = CallableModel(residuals=r, jvp=lambda p, b, v: jvp(p, b, v)[:, None])
    with pytest.raises(CallableOutputError, match=r"jvp \(call 1\) returned shape \(5, 1\) .*expected \(any,\)"):
        flat_jvp.jvp(THETA, None, rng.standard_normal(3))
    # the gradient of a given loss_and_grad, and its pair structure
    lag = CallableModel(loss_and_grad=lambda p, b: (0.0, np.zeros(2)), params=THETA)
    with pytest.raises(CallableOutputError, match=r"loss_and_grad \(call 1\) returned shape \(2,\)"):
        lag.loss_and_grad(THETA, None)
    with pytest.raises(TypeError, match=r"loss_and_grad \(call 1\) must return \(loss, gradient\)"):
        CallableModel(loss_and_grad=lambda p, b: np.zeros(3)).loss_and_grad(THETA, None)
    # the dtype of flat, and the same library
    with pytest.raises(TypeError, match=r"vjp \(call 1\) returned dtype float32"):
        CallableModel(vjp=lambda p, b, u: vjp(p, b, u).astype(np.float32)).vjp(THETA, None, np.ones(5))
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match=r"hvp \(call 1\)"):
        CallableModel(hvp=lambda p, b, w: torch.from_numpy(w)).hvp(THETA, None, np.ones(3))


def test_non_finite_outputs_reach_the_caller_as_values():
    """NaN residuals are a loss the optimiser rejects, not an exception here."""
    model = CallableModel(residuals=lambda p, b: np.full(5, np.nan), jacobian=J, params=THETA)
    loss, g = model.loss_and_grad(THETA, None)
    assert np.isnan(loss) and np.isnan(g).all()
