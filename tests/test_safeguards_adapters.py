"""Safeguards of natgrad.adapters that survived mutation testing.

Each test was checked to fail with its safeguard removed (the mutation and
what was measured are stated in the test) and to pass with it.  Numerical
results are compared with float64 references computed here; the tolerances
are stated where they are used.
"""

from __future__ import annotations

import numpy as np
import pytest

from natgrad.adapters.callables import CallableModel

A = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
Y = np.array([1.0, 0.0, -1.0])


# ---------------------------------------------------------------------------
# CallableModel
# ---------------------------------------------------------------------------


def test_callable_model_keeps_its_own_copy_of_params():
    # guards callables.py `params = ...asarray(params, copy=True)` in
    # __init__: the model must not share the caller's array.  Removed, the
    # model kept the caller's array and model.params came back as
    # [99.0, 99.0] after the caller overwrote its own vector.
    theta = np.array([0.5, -0.25])
    model = CallableModel(residuals=lambda p, y: A @ p - y, jacobian=lambda p, y: A, params=theta)
    theta[:] = 99.0  # e.g. an optimiser updating the caller's vector in place
    np.testing.assert_array_equal(model.params, [0.5, -0.25])
    # and the loss at the initial parameters is still that of θ₀ (exact: same sums)
    loss, grad = model.loss_and_grad(model.params, Y)
    r = A @ np.array([0.5, -0.25]) - Y
    assert float(loss) == pytest.approx(0.5 * r @ r, rel=1e-15)
    np.testing.assert_allclose(grad, A.T @ r, rtol=1e-15, atol=0)


# ---------------------------------------------------------------------------
# TorchModel
# ---------------------------------------------------------------------------


def _torch_closure_model():
    torch = pytest.importorskip("torch")
    from natgrad.adapters.torch import TorchModel

    # the function closes over a tensor that requires grad (a module's own
    # parameter, say): torch.func's outputs then require grad as well
    scale = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    g = torch.Generator().manual_seed(0)
    X = torch.randn(4, 3, generator=g, dtype=torch.float64)

    def fn(p, X):
        return scale * torch.tanh(X @ p["w"])

    w0 = torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64)
    return torch, TorchModel(fn, {"w": w0}, array_namespace="numpy"), X, w0


def test_torch_numpy_export_when_fn_closes_over_a_tracked_tensor():
    # guards torch.py TorchModel._prepare_export `return x.detach()`: the
    # outputs handed out through DLPack (array_namespace="numpy") are
    # detached first.  Removed, jacobian, jvp, vjp, loss_and_grad, hvp and
    # ggn_vp raised RuntimeError "Can't call numpy() on Tensor that requires
    # grad" for this model (residuals alone passed: _residuals detaches).
    torch, model, X, w0 = _torch_closure_model()
    theta = model.params
    assert isinstance(theta, np.ndarray)
    Xn, w = X.numpy(), w0.numpy()
    # float64 reference: r = 2 tanh(X w), J = 2 (1 − tanh²) X
    t = np.tanh(Xn @ w)
    r_ref = 2.0 * t
    J_ref = (2.0 * (1.0 - t**2))[:, None] * Xn
    v = np.array([1.0, -1.0, 0.5])
    u = np.array([1.0, 0.0, -1.0, 2.0])
    TOL = 1e-13  # same float64 expressions in another order
    J = model.jacobian(theta, X)
    assert isinstance(J, np.ndarray)
    np.testing.assert_allclose(J, J_ref, rtol=0, atol=TOL)
    np.testing.assert_allclose(model.jvp(theta, X, v), J_ref @ v, rtol=0, atol=TOL)
    np.testing.assert_allclose(model.vjp(theta, X, u), J_ref.T @ u, rtol=0, atol=TOL)
    loss, grad = model.loss_and_grad(theta, X)
    assert float(loss) == pytest.approx(0.5 * r_ref @ r_ref, rel=TOL)
    np.testing.assert_allclose(grad, J_ref.T @ r_ref, rtol=0, atol=TOL)
    np.testing.assert_allclose(model.ggn_vp(theta, X, v), J_ref.T @ (J_ref @ v), rtol=0, atol=TOL)
    # exact Hessian of ½‖r‖²: JᵀJ + Σᵢ rᵢ ∇²rᵢ with ∇²rᵢ = −4 tᵢ(1 − tᵢ²) xᵢxᵢᵀ
    H = J_ref.T @ J_ref + (Xn.T * (r_ref * -4.0 * t * (1.0 - t**2))) @ Xn
    np.testing.assert_allclose(model.hvp(theta, X, v), H @ v, rtol=0, atol=TOL)


def _framework_model(framework):
    """A float64 model ``X @ p["w"]`` with ``w`` of length 3 and an array
    maker ``array(values, dtype_name)`` of the framework."""
    if framework == "torch":
        torch = pytest.importorskip("torch")
        from natgrad.adapters.torch import TorchModel

        def array(values, dtype):
            return torch.tensor(values, dtype=getattr(torch, dtype))

        return TorchModel(lambda p, X: X @ p["w"], {"w": array([0.0] * 3, "float64")}), array
    jnp = pytest.importorskip("jax").numpy
    from natgrad.adapters.jax import JaxModel

    def array(values, dtype):
        return jnp.array(values, dtype=getattr(jnp, dtype))

    return JaxModel(lambda p, X: X @ p["w"], {"w": array([0.0] * 3, "float64")}), array


@pytest.mark.parametrize(("framework", "match"), [
    ("torch", r"structure must have dtype torch\.float64, got torch\.float32"),
    ("jax", "structure leaf 0 must have dtype float64, got float32"),
])
def test_flatten_refuses_a_structure_of_another_dtype(framework, match):
    # guards TorchModel._flatten `if flat.dtype != self.dtype` and
    # JaxModel._flatten `if jnp.dtype(dtype) != self.dtype` (the conftest
    # enables float64 in JAX).  Removed, flatten({"w": float32}) of a float64
    # model returned a float32 vector without a word (the parameters' dtype
    # silently changed).
    model, array = _framework_model(framework)
    with pytest.raises(TypeError, match=match):
        model.flatten({"w": array([1.0] * 3, "float32")})
    flat = model.flatten({"w": array([1.0, 2.0, 3.0], "float64")})
    assert str(flat.dtype).endswith("float64") and flat.tolist() == [1.0, 2.0, 3.0]


# ---------------------------------------------------------------------------
# JaxModel (the conftest enables float64 in JAX)
# ---------------------------------------------------------------------------


def test_jax_params_of_two_dtypes_are_refused():
    # guards jax.py JaxModel.__init__ `if len(dtypes) != 1`.  Removed, a
    # float32 leaf next to a float64 leaf was accepted as a float64 model
    # whose unflatten handed fn "w" rounded to float32, and whose
    # flatten(unflatten(θ)) raised "structure leaf 1 must have dtype float64,
    # got float32".
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    from natgrad.adapters.jax import JaxModel

    params = {"b": jnp.zeros(1, dtype=jnp.float64), "w": jnp.zeros(3, dtype=jnp.float32)}
    with pytest.raises(TypeError, match=r"params must share one dtype, got \['float32', 'float64'\]"):
        JaxModel(lambda p, X: X @ p["w"] + p["b"][0], params)


# ---------------------------------------------------------------------------
# natgrad.adapters.torch.compress and CompressedLinear
# ---------------------------------------------------------------------------


def _torch_lowrank_net(torch, first=None):
    """A 4 -> 16 -> 1 tanh MLP in float64 whose hidden weight has rank 2."""
    g = torch.Generator().manual_seed(0)
    layers = [] if first is None else [first]
    layers += [torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)]
    net = torch.nn.Sequential(*layers).to(torch.float64)
    lin = net[len(layers) - 3]
    with torch.no_grad():
        lin.weight.copy_(torch.randn(16, 2, generator=g, dtype=torch.float64)
                         @ torch.randn(2, 4, generator=g, dtype=torch.float64))
    return net


def test_torch_compress_leaves_the_probe_unchanged():
    # guards torch_compress.py compress.run `work(probe.clone())`: a module
    # that writes into its input (an in-place ReLU first) must not change the
    # caller's probe.  Removed, compress zeroed the probe's 68 negative
    # entries (of 128) in place.
    torch = pytest.importorskip("torch")
    from natgrad.adapters.torch import compress

    net = _torch_lowrank_net(torch, first=torch.nn.ReLU(inplace=True))
    probe = torch.randn(32, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    before = probe.clone()
    assert bool((probe < 0).any())
    small, report = compress(net, eps=1e-3, budget="output", probe=probe, method="svd")
    assert torch.equal(probe, before)
    assert report.output_error <= 1e-3
    with torch.no_grad():  # the same network, within the budget, on the untouched probe
        out, ref = small(probe.clone()), net(probe.clone())
    assert float(torch.linalg.norm(out - ref) / torch.linalg.norm(ref)) <= 1e-3


def test_torch_compress_returns_the_module_in_its_training_mode():
    # guards torch_compress.py compress.run `finally: work.train(mode)`: the
    # probe is evaluated in eval mode, then the copy's mode is restored.
    # Removed, a network given in training mode came back in eval mode
    # (small.training was False; its Dropout then did nothing).
    torch = pytest.importorskip("torch")
    from natgrad.adapters.torch import CompressedLinear, compress

    net = _torch_lowrank_net(torch)
    net.append(torch.nn.Dropout(0.5))
    probe = torch.randn(32, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for training in (True, False):
        net.train(training)
        small, _ = compress(net, eps=1e-3, budget="output", probe=probe, method="svd")
        kept = [m for m in small.modules() if not isinstance(m, CompressedLinear)]  # container, Tanh, Dropout
        assert len(kept) == 3 and all(m.training is training for m in kept)
        assert net.training is training
        # and the new layers take the mode of the layers they replace (a fresh
        # module starts in training mode: they did, in an eval-mode network)
        new = [m for m in small.modules() if isinstance(m, CompressedLinear)]
        assert len(new) == 2 and all(m.training is training for m in new)


def test_compressed_linear_does_not_share_the_given_bias():
    # guards torch_compress.py CompressedLinear `bias.detach().clone()`: the
    # layer's bias is its own.  Removed, the layer's bias shared the caller's
    # storage (same data_ptr) and one SGD step (lr = 0.1) of the fine-tuned
    # layer changed the caller's bias by 0.4.
    torch = pytest.importorskip("torch")
    from natgrad.adapters.torch import CompressedLinear
    from natgrad.hmatrix import compress_matrix

    g = torch.Generator().manual_seed(0)
    W = torch.randn(5, 2, generator=g, dtype=torch.float64) @ torch.randn(2, 3, generator=g, dtype=torch.float64)
    bias = torch.nn.Parameter(torch.randn(5, generator=g, dtype=torch.float64))
    before = bias.detach().clone()
    layer = CompressedLinear(compress_matrix(W.numpy(), eps=1e-8, method="svd"), bias, trainable=True)
    assert layer.bias.data_ptr() != bias.data_ptr()
    x = torch.randn(4, 3, generator=g, dtype=torch.float64)
    # the layer is x Wᵀ + b to rounding (SVD at eps = 1e-8 of a rank-2 matrix)
    assert float(torch.max(torch.abs(layer(x) - (x @ W.T + bias))).detach()) <= 1e-12
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    layer(x).sum().backward()
    opt.step()
    assert torch.equal(bias.detach(), before)
    assert not torch.equal(layer.bias.detach(), before)


def test_compress_names_the_layer_whose_weight_is_not_finite():
    # guards torch_compress.py compress and jax_compress.py compress
    # `if not np.all(np.isfinite(W))`.  Removed, a NaN/Inf weight was still
    # refused, but later and without the layer's name under
    # budget="output": "evaluate: the network's output with the original
    # weights contains NaN or Inf" (PyTorch and JAX alike).
    torch = pytest.importorskip("torch")
    jax = pytest.importorskip("jax")
    from natgrad.adapters.jax import compress as jax_compress
    from natgrad.adapters.torch import compress as torch_compress

    net = _torch_lowrank_net(torch)
    with torch.no_grad():
        net[0].weight[2, 1] = float("nan")
    probe = torch.randn(8, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with pytest.raises(ValueError, match=r"^layer '0': weight contains NaN or Inf$"):
        torch_compress(net, eps=1e-3, budget="output", probe=probe)

    params = {"W": np.ones((4, 6)), "b": np.zeros(6)}
    params["W"][1, 2] = np.inf
    with pytest.raises(ValueError, match=r"^leaf \['W'\]: contains NaN or Inf$"):
        jax_compress(params, eps=1e-3, budget="output", forward=lambda p, x: x @ p["W"] + p["b"],
                     probe=np.ones((3, 4)))


# ---------------------------------------------------------------------------
# flatten: a transposed leaf has the right size but not the right shape
# ---------------------------------------------------------------------------


def test_torch_flatten_refuses_a_transposed_weight():
    # guards torch.py TorchModel._flatten `tuple(t.shape) != shape`.  A
    # transposed weight has the parameter's size, so without the check
    # flatten returned its entries in the transposed order: a vector of the
    # right length and dtype holding the wrong parameters (measured:
    # [1, 4, 2, 5, 3, 6] for W = [[1, 2, 3], [4, 5, 6]]).
    torch = pytest.importorskip("torch")
    from natgrad.adapters.torch import TorchModel

    W = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=torch.float64)
    model = TorchModel(lambda p, X: (X @ p["w"].T).sum(1), {"w": W})
    with pytest.raises(ValueError, match=r"structure\['w'\] must be a tensor of shape \(2, 3\), got \(3, 2\)"):
        model.flatten({"w": W.T})
    assert model.flatten({"w": W}).tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]


def test_jax_flatten_refuses_a_transposed_leaf():
    # guards jax.py JaxModel._flatten `if np.shape(leaf) != shape`: as for
    # PyTorch, without it a transposed leaf of the right size was raveled in
    # the transposed order (measured: [1, 4, 2, 5, 3, 6]).
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    from natgrad.adapters.jax import JaxModel

    W = jnp.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    model = JaxModel(lambda p, X: (X @ p["w"].T).sum(1), {"w": W})
    with pytest.raises(ValueError, match=r"structure leaf 0 must have shape \(2, 3\), got \(3, 2\)"):
        model.flatten({"w": W.T})
    assert model.flatten({"w": W}).tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]


# ---------------------------------------------------------------------------
# CallableModel: the arrays handed to a user's function
# ---------------------------------------------------------------------------


def test_callable_model_hands_its_functions_copies_of_the_tangents():
    # guards callables.py _private_args `_private(v) for v in vectors`: a
    # user's jvp/vjp/hvp that writes into its tangent must not change the
    # caller's vector.  Removed (only flat copied), the caller's v and u were
    # doubled in place by the functions below.
    def jvp(p, b, v):
        v *= 2.0  # a careless in-place scaling
        return A @ v / 2.0

    def vjp(p, b, u):
        u *= 2.0
        return A.T @ u / 2.0

    model = CallableModel(residuals=lambda p, y: A @ p - y, jvp=jvp, vjp=vjp, params=np.zeros(2))
    v, u = np.array([1.0, -1.0]), np.array([1.0, 0.0, -1.0])
    Jv, JTu = model.jvp(model.params, Y, v), model.vjp(model.params, Y, u)
    np.testing.assert_array_equal(v, [1.0, -1.0])
    np.testing.assert_array_equal(u, [1.0, 0.0, -1.0])
    np.testing.assert_allclose(Jv, A @ v, rtol=1e-15, atol=0)  # same products: exact up to one rounding
    np.testing.assert_allclose(JTu, A.T @ u, rtol=1e-15, atol=0)
    # and through the derived ggn_vp (jvp, then vjp of its output)
    np.testing.assert_allclose(model.ggn_vp(model.params, Y, v), A.T @ (A @ v), rtol=1e-15, atol=0)
    np.testing.assert_array_equal(v, [1.0, -1.0])


def test_callable_model_accepts_a_tracked_torch_flat_vector():
    # guards callables.py _private `x = base.untracked(x)`: a flat vector
    # that requires grad (parameters_to_vector of a module) is detached
    # before the user's function sees it.  Removed, the function's output was
    # tracked and CallableModel.residuals raised TracedArrayError "the output
    # of residuals (call 1) is a PyTorch tensor that requires grad".
    torch = pytest.importorskip("torch")
    At = torch.as_tensor(A)
    yt = torch.as_tensor(Y)
    model = CallableModel(residuals=lambda p, y: At @ p - y, jacobian=lambda p, y: At,
                          params=torch.zeros(2, dtype=torch.float64))
    theta = torch.tensor([0.5, -0.25], dtype=torch.float64, requires_grad=True)
    r = model.residuals(theta, yt)
    loss, grad = model.loss_and_grad(theta, yt)
    assert not (r.requires_grad or loss.requires_grad or grad.requires_grad)
    r_ref = A @ np.array([0.5, -0.25]) - Y
    np.testing.assert_allclose(r.numpy(), r_ref, rtol=1e-15, atol=0)
    assert float(loss) == pytest.approx(0.5 * r_ref @ r_ref, rel=1e-15)
    np.testing.assert_allclose(grad.numpy(), A.T @ r_ref, rtol=1e-15, atol=1e-15)
    assert theta.requires_grad and theta.grad is None  # the caller's tensor is as it was


def test_jax_flatten_refuses_another_tree_structure():
    # guards jax.py JaxModel._flatten `if tree != self._tree`.  Leaves are
    # raveled in the order of the keys, so a structure whose names differ
    # puts values into other parameters' slots.  Removed, flatten of
    # {"weight": w, "zbias": b} for a model of {"bias", "weight"} returned
    # [4, 5, 6, 1, 2, 3], which unflatten read as bias = [4, 5, 6],
    # weight = [1, 2, 3].
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    from natgrad.adapters.jax import JaxModel

    model = JaxModel(lambda p, X: X @ p["weight"] + p["bias"],
                     {"bias": jnp.array([1.0, 2.0, 3.0]), "weight": jnp.array([4.0, 5.0, 6.0])})
    with pytest.raises(ValueError, match="structure must have the tree structure"):
        model.flatten({"weight": jnp.array([4.0, 5.0, 6.0]), "zbias": jnp.array([1.0, 2.0, 3.0])})
    flat = model.flatten({"weight": jnp.array([4.0, 5.0, 6.0]), "bias": jnp.array([1.0, 2.0, 3.0])})
    assert flat.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]


def test_torch_jacobian_of_a_fn_that_uses_torch_func_inside():
    # guards torch.py _saved_bytes `except Exception` (the fallback estimate
    # when the function refuses saved-tensor hooks).  A residual that takes a
    # derivative with torch.func inside (a PINN's u_x) refuses them; with the
    # fallback removed, jacobian raised RuntimeError "torch.func.{grad, vjp,
    # jacrev, hessian} don't yet support saved tensor hooks".
    torch = pytest.importorskip("torch")
    from natgrad.adapters.torch import TorchModel

    def fn(p, X):  # r_i = Σ_j ∂/∂x_j tanh(x_i·w) − 1 = (1 − t_i²) Σ_j w_j − 1
        u = lambda x: torch.tanh(x @ p["w"])  # noqa: E731
        return torch.vmap(torch.func.grad(u))(X).sum(1) - 1.0

    w = np.array([0.3, -0.5, 0.8])
    X = np.array([[0.1, 0.2, -0.3], [0.5, -0.4, 0.6]])
    model = TorchModel(fn, {"w": torch.as_tensor(w)})
    J = model.jacobian(model.params, torch.as_tensor(X))
    # float64 reference: ∂r_i/∂w = −2 t_i (1 − t_i²) (Σ w) x_i + (1 − t_i²) 1
    t = np.tanh(X @ w)
    J_ref = (-2.0 * t * (1.0 - t**2) * w.sum())[:, None] * X + (1.0 - t**2)[:, None]
    np.testing.assert_allclose(J.numpy(), J_ref, rtol=0, atol=1e-14)


def test_plan_compression_refuses_an_output_of_another_shape():
    # guards compression.py plan_compression.output_error `if tuple(out.shape)
    # != tuple(reference_out.shape)`.  An evaluate whose trial outputs have
    # another shape than the first (reference) output would be compared by
    # broadcasting, (6,) against (6, 1) as a 6 × 6 difference; removed,
    # plan_compression returned without an error.
    from natgrad.adapters.compression import plan_compression

    rng = np.random.default_rng(0)
    W = rng.standard_normal((6, 2)) @ rng.standard_normal((2, 5))
    X = rng.standard_normal((5, 4))

    def evaluate(layers):
        out = (W if layers[0] is None else layers[0].to_dense()) @ X
        return out[:, :1] if layers[0] is None else out[:, 0]  # (6, 1) first, (6,) afterwards

    with pytest.raises(ValueError, match=r"evaluate returned shape \(6,\), first \(6, 1\)"):
        plan_compression([W], eps=1e-2, budget="output", evaluate=evaluate, method="svd")
