"""FNGD's reuse step through the adapters' fused products
(``residuals_and_vjp``, ``residuals_vjp_and_gram``): the same steps as
through ``residuals``/``vjp``/``jvp``, a refresh when the batch size
changes, and the faults contract of ``test_faults_optim.py`` for the fused
method.  Reference: the same model with the fused methods hidden
(float64; the same sums in another order, rtol 1e-10)."""

from __future__ import annotations

import numpy as np
import pytest

from natgrad.optim import FNGD
from natgrad.validation import CallableOutputError
from tests.faults import FaultyModel, InjectedFault, outcome
from tests.test_adapters_fused import N, jax_models, torch_models

HIDDEN = ("residuals_and_vjp", "residuals_vjp_and_gram")


class Unfused:
    """The model with its fused products hidden: FNGD falls back to residuals, vjp and jvp."""

    def __init__(self, model):
        self._model = model

    def __getattr__(self, name):
        if name in HIDDEN:
            raise AttributeError(name)
        return getattr(self._model, name)


def _run(model, batch, steps=5, **kw):
    opt, p, infos = FNGD(damping=0.1, lr=0.3, refresh_every=4, **kw), model.params, []
    for _ in range(steps):
        p, info = opt.step(p, model, batch)
        infos.append(info)
    return p, infos, opt


@pytest.mark.parametrize("drift", ["residual", "projected", None])
@pytest.mark.parametrize("make", [torch_models, jax_models], ids=["torch", "jax"])
def test_fused_reuse_steps_equal_the_unfused_ones(make, drift):
    model, batch, *_ = make("pointwise")
    kw = {"refresh_tol": None} if drift is None else {"drift": drift, "refresh_tol": 1e300}  # measure, never act
    p, infos, opt = _run(model, batch, **kw)
    p_ref, infos_ref, opt_ref = _run(Unfused(model), batch, **kw)
    assert [i["refreshed"] for i in infos] == [True, False, False, False, True]
    np.testing.assert_allclose(np.asarray(p), np.asarray(p_ref), rtol=1e-10, atol=0)
    for info, ref in zip(infos, infos_ref):
        assert info["loss"] == pytest.approx(ref["loss"], rel=1e-12)
        if ref["drift"] is None:
            assert info["drift"] is None
        else:
            assert info["drift"] == pytest.approx(ref["drift"], rel=1e-8) and info["drift"] > 1e-6  # a real drift


class Calls:
    def __init__(self, model):
        self._model, self.names = model, []

    def __getattr__(self, name):
        attr = getattr(self._model, name)
        if not callable(attr) or name.startswith("_"):
            return attr

        def counted(*args):
            self.names.append(name)
            return attr(*args)

        return counted


def test_the_fused_path_is_one_model_call():
    model, batch, *_ = torch_models("generic")
    calls = Calls(model)
    opt = FNGD(damping=0.1, refresh_every=10, refresh_tol=1e300)
    p, _ = opt.step(model.params, calls, batch)
    calls.names.clear()
    opt.step(p, calls, batch)
    assert calls.names == ["residuals_vjp_and_gram"]


def test_a_batch_of_another_size_refreshes_through_the_fused_path():
    torch = pytest.importorskip("torch")
    model, (X, y), *_ = torch_models("generic")
    opt = FNGD(damping=0.1, lr=0.3, refresh_every=10, refresh_tol=1e300)
    p, _ = opt.step(model.params, model, (X, y))
    smaller = (X[: N - 2], y[: N - 2])
    p2, info = opt.step(p, model, smaller)  # the same (default) key, N - 2 samples: α has the wrong length
    assert info["refreshed"] and info["step_taken"]
    want, _ = FNGD(damping=0.1, lr=0.3).step(p, model, smaller)
    torch.testing.assert_close(p2, want, rtol=1e-12, atol=0)
    assert opt.state_dict()["cache_alphas"][0].shape == (N - 2,)


class UserValueError(ValueError):
    pass


class RaisesValueError:
    """The model whose fused product raises the user's own ValueError (the batch size is unchanged)."""

    def __init__(self, model):
        self._model = model

    def __getattr__(self, name):
        return getattr(self._model, name)

    def residuals_vjp_and_gram(self, p, batch, u):
        raise UserValueError("the user's own failure")


def test_a_value_error_of_the_model_is_not_taken_for_a_batch_change():
    model, batch, *_ = torch_models("generic")
    opt = FNGD(damping=0.1, refresh_every=10, refresh_tol=1e300)
    p, _ = opt.step(model.params, model, batch)
    saved = opt.state_dict()
    with pytest.raises(UserValueError):
        opt.step(p, RaisesValueError(model), batch)
    assert opt.state_dict()["steps"] == saved["steps"] == 1


@pytest.mark.parametrize("kind", ["nan", "inf", "shape", "raise"])
@pytest.mark.parametrize("part", [0, 1, 2])
def test_faults_in_the_fused_product(kind, part):
    model, batch, *_ = torch_models("generic")
    opt = FNGD(damping=0.1, lr=0.3, refresh_every=10, refresh_tol=1e300)
    p, _ = opt.step(model.params, model, batch)
    saved = {k: (np.asarray(v).copy() if hasattr(v, "shape") else v) for k, v in opt.state_dict().items()}
    faulty = FaultyModel(model, "residuals_vjp_and_gram", kind, 1, part=part)
    result = outcome(lambda: opt.step(p, faulty, batch), "model.residuals_vjp_and_gram", "model's")
    assert faulty.calls == 1
    if kind == "raise":
        assert result.raised and isinstance(result.error, InjectedFault)
    elif kind == "shape":
        assert result.raised and isinstance(result.error, CallableOutputError)
        assert "model.residuals_vjp_and_gram" in str(result.error) and "step 2" in str(result.error)
    else:
        new, info = result.value
        assert info["step_taken"] is False and info["reason"] == "nonfinite", info
        assert "model.residuals_vjp_and_gram" in info["message"] and "step 2" in info["message"], info
        assert new is p
    state = opt.state_dict()
    assert state["steps"] == 1 and state["cache_uses"] == saved["cache_uses"]
    np.testing.assert_array_equal(np.asarray(state["alpha"]), saved["alpha"])
    # the next healthy step is a reuse step
    _, info = opt.step(p, model, batch)
    assert info["step_taken"] and not info["refreshed"]
