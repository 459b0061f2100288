"""Issue 18: the adapters under faults, tracked input and aliasing.

* A framework model (TorchModel, JaxModel) whose data turn NaN at a later
  step: the optimisers refuse the step naming the model's method, ``fit``
  stops and says why.
* Tracked input: a PyTorch parameter vector that requires grad
  (``parameters_to_vector(module.parameters())``) is accepted and detached;
  the user's own ``backward()`` on the module still works afterwards.  A JAX
  tracer (a step or ``fit`` inside ``jax.jit``) raises ``TracedArrayError``
  naming ``params``.
* Aliasing: a user's function that writes into its argument never changes
  the caller's array (CallableModel hands it a copy).
"""

from __future__ import annotations

import numpy as np
import pytest

from helpers import from_numpy, to_numpy
from natgrad.adapters.callables import CallableModel
from natgrad.backend import TracedArrayError
from natgrad.optim import ENGD, FNGD, SPRING, Adam, GradientFlow, SaddleFreeNewton, fit
from test_optim import make_model
from tests.faults import Fault, outcome, writable

N_POINTS, N_IN = 12, 3


def _data(step_with_nan=None):
    """Inputs and targets per step; the targets of ``step_with_nan`` hold a NaN."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((N_POINTS, N_IN)), rng.standard_normal(N_POINTS)

    def batch(step):
        t = y.copy()
        if step == step_with_nan:
            t[3] = np.nan
        return X, t

    return batch


# ---------------------------------------------------------------------------
# PyTorch
# ---------------------------------------------------------------------------


def _torch_net():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    return torch, torch.nn.Sequential(
        torch.nn.Linear(N_IN, 5, dtype=torch.float64), torch.nn.Tanh(), torch.nn.Linear(5, 1, dtype=torch.float64)
    )


def _torch_model(loss="squared"):
    from natgrad.adapters.torch import TorchModel

    torch, net = _torch_net()
    if loss == "squared":
        model = TorchModel.from_module(net, lambda out, b: out[:, 0] - b[1])
    else:
        model = TorchModel.from_module(net, lambda out, b: 0.5 * (out[:, 0] - b[1]) ** 2, loss="mean")
    data = _data(step_with_nan=3)

    def batches(step):
        X, t = data(step)
        return torch.as_tensor(X), torch.as_tensor(t)

    return torch, net, model, batches


@pytest.mark.parametrize("factory,loss", [
    (lambda: ENGD(), "squared"), (lambda: SPRING(momentum=0.5), "squared"), (lambda: FNGD(), "mean"),
    (lambda: Adam(lr=1e-2), "squared"), (lambda: GradientFlow(lr=0.1, method="rk4"), "squared"),
    (lambda: SaddleFreeNewton(damping=1.0, method="lanczos", terms=5), "squared"),
], ids=["engd", "spring", "fngd", "adam", "rk4", "sfn"])
def test_torch_model_with_nan_data_at_step_3(factory, loss):
    torch, _, model, batches = _torch_model(loss)
    opt = factory()
    params, h = outcome(lambda: fit(opt, model, batches, 10, progress=False)).value
    assert h["stopped"] == "nonfinite" and len(h["step"]) == 3, (h["stopped"], h["reason"])
    assert np.all(np.isfinite(to_numpy(params)))
    # the optimiser's own message names the model's method and its step
    _, info = opt.step(params, model, batches(3))
    assert info["step_taken"] is False and "model." in info["message"] and "step 3" in info["message"], info


def test_tracked_torch_parameters_are_detached_and_backward_still_works():
    from natgrad.adapters.torch import TorchModel

    torch, net = _torch_net()
    model = TorchModel.from_module(net, lambda out, b: out[:, 0] - b[1])
    X, t = (torch.as_tensor(a) for a in _data()(1))
    for opt in (ENGD(), Adam(lr=1e-2), SPRING(), GradientFlow(lr=0.1)):
        theta = torch.nn.utils.parameters_to_vector(net.parameters())
        assert theta.requires_grad
        before = theta.detach().clone()
        new, info = opt.step(theta, model, (X, t))
        assert info["step_taken"] and not new.requires_grad
        assert torch.equal(theta.detach(), before)  # the caller's vector is untouched
        # the user's own autograd on the module works afterwards (no in-place error, grads flow)
        net.zero_grad()
        loss = ((net(X)[:, 0] - t) ** 2).mean()
        loss.backward()
        assert all(p.grad is not None and torch.all(torch.isfinite(p.grad)) for p in net.parameters())
        # and through the user's own graph built from the tracked vector
        (theta * theta).sum().backward()
    params, h = fit(ENGD(), model, (X, t), 3, progress=False,
                    params=torch.nn.utils.parameters_to_vector(net.parameters()))
    assert not params.requires_grad and h["stopped"] == "steps"
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(params, net.parameters())
    ((net(X)[:, 0] - t) ** 2).mean().backward()  # the trained module still trains with torch


def test_adapters_accept_tracked_flat_vectors():
    from natgrad.adapters.torch import TorchModel

    torch, net = _torch_net()
    model = TorchModel.from_module(net, lambda out, b: out[:, 0] - b[1])
    X, t = (torch.as_tensor(a) for a in _data()(1))
    theta = torch.nn.utils.parameters_to_vector(net.parameters())
    v = torch.ones_like(theta, requires_grad=True)
    for out in (model.residuals(theta, (X, t)), model.jacobian(theta, (X, t)), model.jvp(theta, (X, t), v),
                model.loss_and_grad(theta, (X, t))[1], model.hvp(theta, (X, t), v)):
        assert not out.requires_grad
    # CallableModel with PyTorch functions and tracked params
    A = torch.randn(4, 3, dtype=torch.float64)
    cm = CallableModel(residuals=lambda p, b: A @ p, jacobian=lambda p, b: A,
                       params=torch.zeros(3, dtype=torch.float64, requires_grad=True))
    assert not cm.params.requires_grad
    new, info = ENGD().step(torch.ones(3, dtype=torch.float64, requires_grad=True), cm, None)
    assert info["step_taken"] and not new.requires_grad


# ---------------------------------------------------------------------------
# JAX
# ---------------------------------------------------------------------------


def _jax_model():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    from natgrad.adapters.jax import JaxModel

    rng = np.random.default_rng(1)
    params = {"W": jnp.asarray(rng.standard_normal((N_IN, 4)) / 2), "v": jnp.asarray(rng.standard_normal(4) / 2)}
    model = JaxModel(lambda p, b: jnp.tanh(b[0] @ p["W"]) @ p["v"] - b[1], params)
    data = _data(step_with_nan=3)
    return jax, jnp, model, lambda step: tuple(jnp.asarray(a) for a in data(step))


@pytest.mark.parametrize("factory", [lambda: ENGD(), lambda: Adam(lr=1e-2), lambda: GradientFlow(method="heun")],
                         ids=["engd", "adam", "heun"])
def test_jax_model_with_nan_data_at_step_3(factory):
    _, _, model, batches = _jax_model()
    params, h = outcome(lambda: fit(factory(), model, batches, 10, progress=False)).value
    assert h["stopped"] == "nonfinite" and len(h["step"]) == 3, (h["stopped"], h["reason"])
    assert np.all(np.isfinite(np.asarray(params)))


def test_jax_tracers_are_refused_naming_params():
    jax, _, model, batches = _jax_model()
    batch = batches(1)
    for opt in (ENGD(), Adam(), GradientFlow(method="rk4"), SaddleFreeNewton()):
        with pytest.raises(TracedArrayError, match="params is a JAX tracer"):
            jax.jit(lambda p: opt.step(p, model, batch)[0])(model.params)
        assert opt.state_dict()["steps"] == 0
    with pytest.raises(TracedArrayError, match="params is a JAX tracer"):
        jax.jit(lambda p: fit(ENGD(), model, batch, 2, params=p, progress=False)[0])(model.params)


# ---------------------------------------------------------------------------
# aliasing: a user's function that writes into its argument
# ---------------------------------------------------------------------------


def test_a_callable_that_writes_into_its_argument_changes_nothing_of_the_caller(xp):
    m = make_model(xp)
    probe = from_numpy(xp, np.zeros(2))
    if not writable(probe):
        pytest.skip("JAX arrays cannot be written into")
    writers = {name: Fault(getattr(m, name), "write") for name in ("residuals", "jacobian", "vjp", "jvp",
                                                                    "loss_and_grad", "hvp")}
    model = CallableModel(**writers, params=m.params)
    p0 = model.params
    expected = to_numpy(p0).copy()
    v = from_numpy(xp, np.linspace(-1.0, 1.0, 30))
    u = from_numpy(xp, np.linspace(1.0, 2.0, 12))
    model.residuals(p0, None), model.jacobian(p0, None), model.loss_and_grad(p0, None)
    model.jvp(p0, None, v), model.vjp(p0, None, u), model.hvp(p0, None, v)
    for opt in (ENGD(), ENGD(solver="cg"), SPRING(), Adam(lr=0.1), GradientFlow(method="rk4"),
                SaddleFreeNewton(damping=1.0, method="lanczos", terms=5)):
        # the function sees zeros, so the step may not be taken: what matters is the caller's array
        new, info = outcome(lambda: opt.step(p0, model, None)).value
        assert np.all(np.isfinite(to_numpy(new)))
    fit(GradientFlow(), model, None, 3, params=p0, progress=False)
    np.testing.assert_array_equal(to_numpy(p0), expected)
    np.testing.assert_array_equal(to_numpy(v), np.linspace(-1.0, 1.0, 30))
    np.testing.assert_array_equal(to_numpy(u), np.linspace(1.0, 2.0, 12))
    np.testing.assert_array_equal(to_numpy(model.params), expected)  # the model's own copy too
    assert all(w.calls > 0 for w in writers.values())
