"""The PyTorch and JAX faces over natgrad's optimisers: the same steps as the
flat-vector API, state that round-trips, atomic steps and clear errors."""

from __future__ import annotations

import io

import numpy as np
import pytest

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
jnp = jax.numpy

from natgrad.adapters.jax import JaxModel  # noqa: E402
from natgrad.adapters.torch import TorchModel  # noqa: E402
from natgrad.frameworks.jax import functional  # noqa: E402
from natgrad.frameworks.torch import Optimizer  # noqa: E402
from natgrad.optim import ENGD, FNGD, SPRING, Adam, GradientFlow, SaddleFreeNewton  # noqa: E402


def _net(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(2, 6), torch.nn.Tanh(), torch.nn.Linear(6, 1)).double()


def _data(n: int = 24, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, 2, dtype=torch.float64, generator=g)
    return X, torch.sin(3.0 * X.sum(1))


def _flat(net: torch.nn.Module) -> np.ndarray:
    return torch.cat([p.detach().reshape(-1) for p in net.parameters()]).numpy().copy()


def _flat_api_run(make_opt, steps: int, loss: str) -> np.ndarray:
    """The reference: the same optimiser on natgrad's flat-vector API."""
    net, (X, y) = _net(), _data()
    if loss == "mean":
        model = TorchModel.from_module(net, lambda out, batch: 0.5 * (out[:, 0] - batch[1]) ** 2, loss="mean")
    else:
        model = TorchModel.from_module(net, lambda out, batch: out[:, 0] - batch[1])
    params, opt = model.params, make_opt()
    for _ in range(steps):
        params, info = opt.step(params, model, (X, y))
    return params.detach().numpy()


def _face_run(make_opt, steps: int, loss: str) -> np.ndarray:
    net, (X, y) = _net(), _data()
    opt = Optimizer(net.parameters(), make_opt(), loss=loss)
    if loss == "mean":
        def closure():
            return 0.5 * (net(X)[:, 0] - y) ** 2
    else:
        def closure():
            return net(X)[:, 0] - y
    for _ in range(steps):
        opt.step(closure)
    return _flat(net)


@pytest.mark.parametrize(
    "make_opt, loss",
    [
        (lambda: ENGD(damping=1e-6), "squared"),
        (lambda: ENGD(damping=1e-6, solver="dense"), "squared"),
        (lambda: SPRING(damping=1e-4), "squared"),
        (lambda: FNGD(damping=1e-2), "mean"),
        (lambda: Adam(lr=1e-2), "squared"),
        (lambda: GradientFlow(lr=0.05, method="rk4"), "squared"),
        (lambda: SaddleFreeNewton(damping=1e-1, terms=8), "squared"),
    ],
    ids=["engd-woodbury", "engd-dense", "spring", "fngd", "adam", "flow-rk4", "sfn"],
)
def test_torch_face_takes_the_flat_api_steps(make_opt, loss):
    """Three steps through ``opt.step(closure)`` give the flat API's parameters."""
    reference = _flat_api_run(make_opt, 3, loss)
    face = _face_run(make_opt, 3, loss)
    start = _flat(_net())
    assert np.linalg.norm(reference - start) > 1e-3  # the steps moved the parameters
    np.testing.assert_allclose(face, reference, rtol=1e-9, atol=1e-11)


def test_torch_face_state_dict_round_trips_through_torch_save():
    X, y = _data()
    net = _net()
    opt = Optimizer(net.parameters(), SPRING(damping=1e-4))

    def closure():
        return net(X)[:, 0] - y

    for _ in range(2):
        opt.step(closure)
    buffer = io.BytesIO()
    torch.save({"model": net.state_dict(), "opt": opt.state_dict()}, buffer)
    for _ in range(2):
        opt.step(closure)
    uninterrupted = _flat(net)

    buffer.seek(0)
    saved = torch.load(buffer)
    net2 = _net(seed=5)  # other weights: the load must bring everything back
    net2.load_state_dict(saved["model"])
    opt2 = Optimizer(net2.parameters(), SPRING(damping=1e-4))
    opt2.load_state_dict(saved["opt"])
    assert opt2.optimizer.steps == 2

    def closure2():
        return net2(X)[:, 0] - y

    for _ in range(2):
        opt2.step(closure2)
    np.testing.assert_array_equal(_flat(net2), uninterrupted)


def test_torch_face_step_is_atomic_when_the_closure_raises():
    X, y = _data()
    net = _net()
    opt = Optimizer(net.parameters(), SPRING(damping=1e-4))
    calls = {"n": 0, "fail_at": None}

    def closure():
        calls["n"] += 1
        if calls["n"] == calls["fail_at"]:
            raise KeyError("user failure")
        return net(X)[:, 0] - y

    opt.step(closure)
    calls["fail_at"] = calls["n"] + 2  # in the second step's line search, after its Jacobian
    before, state = _flat(net), {k: (v.clone() if torch.is_tensor(v) else v) for k, v in opt.optimizer.state_dict().items()}
    with pytest.raises(KeyError):
        opt.step(closure)
    np.testing.assert_array_equal(_flat(net), before)
    after = opt.optimizer.state_dict()
    assert after["steps"] == state["steps"]
    assert torch.equal(after["phi"], state["phi"])


def test_torch_face_module_still_trains_with_backward_afterwards():
    """The face leaves no autograd state behind: a plain backward() still works."""
    X, y = _data()
    net = _net()
    Optimizer(net.parameters(), ENGD(damping=1e-6)).step(lambda: net(X)[:, 0] - y)
    loss = ((net(X)[:, 0] - y) ** 2).mean()
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_torch_face_errors_name_the_argument():
    X, y = _data()
    net = _net()
    with pytest.raises(TypeError, match="optimizer must be a natgrad optimiser object"):
        Optimizer(net.parameters(), torch.optim.SGD)
    opt = Optimizer(net.parameters(), ENGD())
    with pytest.raises(TypeError, match="closure"):
        opt.step()
    with pytest.raises(TypeError, match=r"closure \(call 1\) must return a 1-D tensor"):
        opt.step(lambda: net(X))  # (N, 1): a 2-D output
    with pytest.raises(TypeError, match="0-d loss, but this optimiser needs the vector of residuals"):
        opt.step(lambda: ((net(X)[:, 0] - y) ** 2).sum())
    with pytest.raises(ValueError, match="loss"):
        Optimizer(net.parameters(), ENGD(), loss="sum")


def test_torch_face_first_order_methods_accept_a_scalar_loss():
    X, y = _data()
    net_a, net_b = _net(), _net()
    opt_a = Optimizer(net_a.parameters(), Adam(lr=1e-2))
    opt_b = Optimizer(net_b.parameters(), Adam(lr=1e-2))
    for _ in range(3):
        opt_a.step(lambda: net_a(X)[:, 0] - y)
        opt_b.step(lambda: 0.5 * ((net_b(X)[:, 0] - y) ** 2).sum())
    np.testing.assert_allclose(_flat(net_a), _flat(net_b), rtol=1e-12, atol=1e-14)


# -- JAX ---------------------------------------------------------------------------------


def _jax_problem():
    X = jnp.linspace(-1.0, 1.0, 20)
    key = jax.random.PRNGKey(0)
    params = {"w": jax.random.normal(key, (5,)), "c": jnp.zeros(5), "a": jnp.ones(5) * 0.3}

    def residuals(p, batch):
        return jnp.tanh(jnp.outer(batch, p["w"]) + p["c"]) @ p["a"] - jnp.sin(2.0 * batch)

    return JaxModel(residuals, params), params, X


@pytest.mark.parametrize(
    "make_opt", [lambda: ENGD(damping=1e-6), lambda: SPRING(damping=1e-4), lambda: Adam(lr=1e-2)],
    ids=["engd", "spring", "adam"],
)
def test_jax_face_takes_the_flat_api_steps(make_opt):
    model, params, X = _jax_problem()
    flat, opt = model.flatten(params), make_opt()
    for _ in range(3):
        flat, _ = opt.step(flat, model, X)

    tx = functional(make_opt(), model)
    p, state = params, tx.init(params)
    for _ in range(3):
        p, state, info = tx.update(p, state, X)
    assert state["steps"] == 3
    assert float(jnp.linalg.norm(flat - model.flatten(params))) > 1e-3
    np.testing.assert_allclose(np.asarray(model.flatten(p)), np.asarray(flat), rtol=1e-10, atol=1e-12)


def test_jax_face_is_pure():
    """update() changes neither its arguments nor the optimiser passed in; the
    same (params, state) give the same step twice."""
    model, params, X = _jax_problem()
    opt = SPRING(damping=1e-4)
    tx = functional(opt, model)
    state = tx.init(params)
    p1, s1, _ = tx.update(params, state, X)
    p2, s2, _ = tx.update(params, state, X)
    assert opt.steps == 0 and state["steps"] == 0 and s1["steps"] == 1
    np.testing.assert_array_equal(np.asarray(model.flatten(p1)), np.asarray(model.flatten(p2)))
    np.testing.assert_array_equal(np.asarray(s1["phi"]), np.asarray(s2["phi"]))


def test_jax_face_errors():
    model, params, X = _jax_problem()
    with pytest.raises(TypeError, match="optimizer must be a natgrad optimiser object"):
        functional(object(), model)
    with pytest.raises(TypeError, match="model must have flatten"):
        functional(ENGD(), object())
    tx = functional(ENGD(), model)
    with pytest.raises(ValueError, match="another optimiser"):
        tx.update(params, Adam().state_dict(), X)
