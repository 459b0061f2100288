"""The adapters' fused products ``residuals_and_vjp`` and ``residuals_vjp_and_gram``
(one forward pass on PyTorch; the composition of the other methods on JAX),
against the Jacobian formed by ``jacobian`` and a float64 NumPy reference.

Tolerance: the same sums in another order, 1e-12 relative to their scale.
"""

from __future__ import annotations

import numpy as np
import pytest

TOL = 1e-12
N, SIZES = 9, (3, 5, 4, 1)


def _close(a, ref):
    a = np.asarray(a)
    assert a.shape == ref.shape
    assert np.max(np.abs(a - ref)) <= TOL * max(1.0, np.max(np.abs(ref)))


def _weights(seed):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((b, a)) / np.sqrt(a), 0.3 * rng.standard_normal(b)) for a, b in zip(SIZES[:-1], SIZES[1:])]


def _numpy_losses(layers, X, y):
    h = X
    for W, b in layers[:-1]:
        h = np.tanh(h @ W.T + b)
    W, b = layers[-1]
    return ((h @ W.T + b)[:, 0] - y) ** 2


def _data(seed=3):
    rng = np.random.default_rng(seed)
    return rng.random((N, SIZES[0])), rng.standard_normal(N)


def torch_models(kind):
    torch = pytest.importorskip("torch")
    from natgrad.adapters.torch import TorchModel

    layers = _weights(0)
    params = {f"W{i}": torch.tensor(W) for i, (W, _) in enumerate(layers)}
    params.update({f"b{i}": torch.tensor(b) for i, (_, b) in enumerate(layers)})

    def net(p, x):
        for i in range(len(layers) - 1):
            x = torch.tanh(x @ p[f"W{i}"].T + p[f"b{i}"])
        k = len(layers) - 1
        return x @ p[f"W{k}"].T + p[f"b{k}"]

    X, y = _data()
    if kind == "pointwise":
        def ell(p, xy):
            return (net(p, xy[:-1])[0] - xy[-1]) ** 2

        model = TorchModel.from_pointwise([ell], params, loss="mean")
        return model, torch.tensor(np.column_stack([X, y])), layers, (X, y), torch.tensor

    def losses(p, b):
        return (net(p, b[0])[:, 0] - b[1]) ** 2

    return TorchModel(losses, params, loss="mean"), (torch.tensor(X), torch.tensor(y)), layers, (X, y), torch.tensor


def jax_models(kind):
    pytest.importorskip("jax")
    import jax.numpy as jnp

    from natgrad.adapters.jax import JaxModel

    layers = _weights(0)
    params = [{"W": jnp.asarray(W), "b": jnp.asarray(b)} for W, b in layers]

    def net(p, x):
        for layer in p[:-1]:
            x = jnp.tanh(x @ layer["W"].T + layer["b"])
        return x @ p[-1]["W"].T + p[-1]["b"]

    X, y = _data()
    if kind == "pointwise":
        def ell(p, xy):
            return (net(p, xy[:-1])[0] - xy[-1]) ** 2

        return JaxModel.from_pointwise([ell], params, loss="mean"), jnp.asarray(np.column_stack([X, y])), layers, (X, y), jnp.asarray

    def losses(p, b):
        return (net(p, b[0])[:, 0] - b[1]) ** 2

    return JaxModel(losses, params, loss="mean"), (jnp.asarray(X), jnp.asarray(y)), layers, (X, y), jnp.asarray


@pytest.mark.parametrize("kind", ["generic", "pointwise"])
@pytest.mark.parametrize("make", [torch_models, jax_models], ids=["torch", "jax"])
def test_fused_products_match_the_formed_jacobian(make, kind):
    model, batch, layers, (X, y), asarray = make(kind)
    theta = model.params
    u = np.random.default_rng(7).standard_normal(N)
    J = np.asarray(model.jacobian(theta, batch))
    r_ref = _numpy_losses(layers, X, y)  # the NumPy forward pass: independent of the adapter
    _close(model.residuals(theta, batch), r_ref)
    r, g = model.residuals_and_vjp(theta, batch, asarray(u))
    _close(r, r_ref)
    _close(g, J.T @ u)
    r, g, Jg = model.residuals_vjp_and_gram(theta, batch, asarray(u))
    _close(r, r_ref)
    _close(g, J.T @ u)
    _close(Jg, J @ (J.T @ u))
    assert np.asarray(u).tolist() == np.asarray(asarray(u)).tolist()  # u is an input, not a buffer


@pytest.mark.parametrize("make", [torch_models, jax_models], ids=["torch", "jax"])
def test_fused_products_refuse_a_cotangent_of_another_length(make):
    model, batch, _, _, asarray = make("generic")
    for method in (model.residuals_and_vjp, model.residuals_vjp_and_gram):
        with pytest.raises(ValueError, match=rf"u must have shape \({N},\)"):
            method(model.params, batch, asarray(np.ones(N + 1)))


def test_fused_products_with_array_namespace_numpy():
    torch = pytest.importorskip("torch")
    from natgrad.adapters.torch import TorchModel

    model, batch, layers, (X, y), _ = torch_models("generic")
    exported = TorchModel(model._fn, model.unflatten(model.params), loss="mean", array_namespace="numpy")
    theta = exported.params
    u = np.random.default_rng(8).standard_normal(N)
    r, g, Jg = exported.residuals_vjp_and_gram(theta, batch, u)
    assert all(isinstance(a, np.ndarray) for a in (r, g, Jg))
    J = exported.jacobian(theta, batch)
    _close(r, _numpy_losses(layers, X, y))
    _close(Jg, J @ (J.T @ u))
    assert isinstance(torch.as_tensor(g), torch.Tensor)
