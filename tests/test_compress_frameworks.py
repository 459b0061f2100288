"""Compressing PyTorch modules and JAX parameter pytrees (natgrad.adapters.{torch,jax}.compress).

The networks are small tanh MLPs with trained-looking weights, built so that
compression has something to find: a kernel-like hidden layer (shuffled
rows and columns, plus noise) and, for the W - W0 mode, a random
initialisation plus low-rank updates.  The output budget is checked on
held-out inputs the search never saw; storage is recounted from what the
compressed module or pytree actually holds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from faults import outcome
from test_compress import LEAF, dense_of_layout, lowrank_noise, shuffled_kernel

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
jnp = jax.numpy

from natgrad.adapters.jax import CompressedArray  # noqa: E402
from natgrad.adapters.jax import compress as jax_compress  # noqa: E402
from natgrad.adapters.torch import CompressedLinear, TorchModel  # noqa: E402
from natgrad.adapters.torch import compress as torch_compress  # noqa: E402
from natgrad.hmatrix import BlockLayout  # noqa: E402

WIDTH = 64


def trained_weights(seed: int = 0) -> list[np.ndarray]:
    """(out, in) weights of a 2 -> 64 -> 64 -> 1 network: a kernel-like hidden layer."""
    rng = np.random.default_rng(seed)
    return [lowrank_noise(WIDTH, 2, 2, 0.01, seed=seed) * 2.0,
            shuffled_kernel(WIDTH, WIDTH, seed=seed + 1, noise=1e-3, scale=0.1) * (4.0 / WIDTH),
            rng.standard_normal((1, WIDTH)) / math.sqrt(WIDTH)]


def biases(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed + 10)
    return [rng.standard_normal(WIDTH) * 0.3, rng.standard_normal(WIDTH) * 0.1, rng.standard_normal(1) * 0.1]


def torch_net(weights, bs, dtype=torch.float64) -> torch.nn.Module:
    net = torch.nn.Sequential(torch.nn.Linear(2, WIDTH), torch.nn.Tanh(), torch.nn.Linear(WIDTH, WIDTH),
                              torch.nn.Tanh(), torch.nn.Linear(WIDTH, 1)).to(dtype)
    with torch.no_grad():
        for lin, W, b in zip([net[0], net[2], net[4]], weights, bs):
            lin.weight.copy_(torch.as_tensor(W))
            lin.bias.copy_(torch.as_tensor(b))
    return net


def inputs(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1.0, 1.0, (n, 2))


def rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def module_bytes(layer: CompressedLinear) -> int:
    """What a CompressedLinear holds for its weight: factors, permutations, a persistent W0."""
    total = sum(f.numel() * f.element_size() for f in layer.factors())
    total += sum(len(p) * 8 for p in (layer.layout.row_perm, layer.layout.col_perm) if p is not None)
    if layer.reference is not None and "reference" in layer.state_dict():
        total += layer.reference.numel() * layer.reference.element_size()
    return total


def state(net: torch.nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


# -- PyTorch ---------------------------------------------------------------------------------


def test_torch_output_budget_holds_on_held_out_points():
    net = torch_net(trained_weights(), biases())
    before = state(net)
    probe, held_out = torch.as_tensor(inputs(256, 1)), torch.as_tensor(inputs(1000, 2))
    eps = 1e-2
    small, report = torch_compress(net, eps=eps, budget="output", probe=probe, leaf_size=LEAF)
    assert report.output_error <= 0.9 * eps
    with torch.no_grad():
        assert rel(small(held_out), net(held_out)) <= eps  # points the search never saw
    assert report.compression_ratio < 0.6
    assert [layer.kind for layer in report.layers][1] == "hmatrix"  # the kernel-like layer
    # storage: what the module holds is what the report says
    layers = [m for m in small.modules() if isinstance(m, CompressedLinear)]
    assert [module_bytes(m) for m in layers] == [layer.nbytes for layer in report.layers]
    # the input module is untouched
    assert all(type(net[i]) is torch.nn.Linear for i in (0, 2, 4))
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    assert str(report).count("\n") == 5  # header, 3 layers, total, budget line


def test_torch_update_mode_with_stored_and_regenerated_reference():
    def init(seed):
        torch.manual_seed(seed)
        return torch.nn.Sequential(torch.nn.Linear(3, WIDTH), torch.nn.Tanh(), torch.nn.Linear(WIDTH, WIDTH),
                                   torch.nn.Tanh(), torch.nn.Linear(WIDTH, 2))

    net0 = init(7)
    net = init(7)
    with torch.no_grad():  # "training": low-rank updates of every layer
        for i, lin in enumerate([net[0], net[2], net[4]]):
            m, n = lin.weight.shape
            lin.weight += 0.05 * torch.as_tensor(lowrank_noise(m, n, 2, 1e-6, seed=i))
    eps = 1e-3
    regen, r_regen = torch_compress(net, eps=eps, reference=lambda: init(7), method="svd")
    stored, r_stored = torch_compress(net, eps=eps, reference=net0, method="svd")
    plain, r_plain = torch_compress(net, eps=eps)
    for layer in r_regen.layers:
        assert layer.update and layer.error <= eps and layer.ranks[0] <= 2
    assert r_regen.compression_ratio < 0.15 and r_plain.compression_ratio > 0.9  # W itself does not compress
    for a, b, lin in zip(r_regen.layers, r_stored.layers, [net[0], net[2], net[4]]):
        assert b.nbytes == a.nbytes + lin.weight.numel() * 8
    # a regenerated reference is not saved with the module, a stored one is
    assert not any(k.endswith("reference") for k in regen.state_dict())
    assert sum(k.endswith("reference") for k in stored.state_dict()) == 3
    got = [m for m in stored.modules() if isinstance(m, CompressedLinear)]
    assert [module_bytes(m) for m in got] == [layer.nbytes for layer in r_stored.layers]
    x = torch.as_tensor(inputs(50, 3) @ np.ones((2, 3)) / 2)
    with torch.no_grad():
        y = net(x)
        for small in (regen, stored):
            assert rel(small(x), y) <= 10 * eps


def test_torch_fine_tuning_trains_the_factors():
    net = torch_net(trained_weights(seed=3), biases(seed=3))
    X = torch.as_tensor(inputs(128, 4))
    with torch.no_grad():
        target = 1.3 * net(X)  # a new task: the weights, not only the biases, must move
    small, report = torch_compress(net, eps=0.3, method="hmatrix", trainable=True, leaf_size=LEAF)
    hidden = small[2]
    assert hidden.kind == "hmatrix" and any(k == "lowrank" for k, *_ in hidden.layout.blocks)
    params = dict(small.named_parameters())
    assert all(p.requires_grad for p in params.values()) and len(params) > 6
    loss0 = torch.mean((small(X) - target) ** 2)
    loss0.backward()
    for name, p in params.items():  # gradients reach every factor
        assert p.grad is not None and torch.all(torch.isfinite(p.grad)), name
    assert all(float(p.grad.norm()) > 0 for name, p in params.items() if name.startswith("2.factor"))
    # plain gradient descent (torch.optim's first use imports torch._dynamo: seconds)
    for _ in range(20):
        loss = torch.mean((small(X) - target) ** 2)
        grads = torch.autograd.grad(loss, list(small.parameters()))
        with torch.no_grad():
            for p, g in zip(small.parameters(), grads):
                p -= 0.1 * g
    assert float(loss.detach()) < 0.1 * float(loss0.detach())
    # product="weight" (form Ŵ, multiply densely) gives the same outputs and gradients
    x = torch.as_tensor(inputs(16, 5))
    grads = {}
    for product in ("blocks", "weight"):
        for m in small.modules():
            if isinstance(m, CompressedLinear):
                m.product = product
        small.zero_grad()
        out = small(x)
        torch.sum(out ** 2).backward()
        grads[product] = (out.detach(), [p.grad.clone() for p in small.parameters()])
    torch.testing.assert_close(grads["blocks"][0], grads["weight"][0], rtol=1e-12, atol=1e-12)
    for a, b in zip(grads["blocks"][1], grads["weight"][1]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    small.apply(lambda m: None)  # nn.Module.apply is not shadowed
    # .weight is the dense Ŵ of the trained factors, for code that reads it
    with torch.no_grad():
        h = torch.tanh(small[0](X))
        np.testing.assert_allclose(torch.nn.functional.linear(h, hidden.weight, hidden.bias).numpy(),
                                   hidden(h).numpy(), rtol=1e-12, atol=1e-12)
    assert all(type(m) is torch.nn.Linear for m in (net[0], net[2], net[4]))  # input untouched


def test_torch_compressed_network_works_with_natgrad_models():
    """The compressed module's factors are parameters natgrad's TorchModel can train."""
    from torch.func import functional_call

    from natgrad.optim import ENGD

    net = torch_net(trained_weights(seed=5), biases(seed=5))
    X = torch.as_tensor(inputs(64, 6))
    with torch.no_grad():
        y = net(X)[:, 0]
    small, _ = torch_compress(net, eps=0.3, method="svd", trainable=True)
    params = {k: v.detach().clone() for k, v in small.named_parameters()}

    def fn(p, batch):
        return functional_call(small, p, (batch[0],))[:, 0] - batch[1]

    model = TorchModel(fn, params)
    opt = ENGD(damping=1e-6)
    theta = model.params
    loss0 = 0.5 * float(torch.sum(model.residuals(theta, (X, y)) ** 2))
    for _ in range(3):
        theta, info = opt.step(theta, model, (X, y))
    assert info["loss"] < 0.5 * loss0


def test_torch_float32_module():
    net = torch_net(trained_weights(seed=6), biases(seed=6), dtype=torch.float32)
    probe, held_out = torch.as_tensor(inputs(256, 7), dtype=torch.float32), torch.as_tensor(inputs(500, 8),
                                                                                            dtype=torch.float32)
    small, report = torch_compress(net, eps=2e-2, budget="output", probe=probe, leaf_size=LEAF)
    assert all(f.dtype == torch.float32 for m in small.modules() if isinstance(m, CompressedLinear)
               for f in m.factors())
    with torch.no_grad():
        assert rel(small(held_out), net(held_out)) <= 2e-2
    assert report.compression_ratio < 0.8


def test_torch_bad_inputs():
    net = torch_net(trained_weights(), biases())
    bad = torch_net(trained_weights(), biases())
    with torch.no_grad():
        bad[2].weight[3, 4] = float("nan")
    res = outcome(lambda: torch_compress(bad, eps=0.1), "'2'")
    assert res.raised and "NaN" in str(res.error)
    assert outcome(lambda: torch_compress(net, eps=0.1, budget="output"), "probe").raised
    assert outcome(lambda: torch_compress(net, eps=1.5), "eps").raised
    assert outcome(lambda: torch_compress(net, eps=0.1, method="qr"), "method").raised
    assert outcome(lambda: torch_compress(net, eps=0.1, product="sparse"), "product").raised
    with pytest.raises(TypeError, match="module"):
        torch_compress(lambda x: x, eps=0.1)
    with pytest.raises(TypeError, match="reference"):
        torch_compress(net, eps=0.1, reference=3)
    with pytest.raises(TypeError, match="reference"):
        torch_compress(net, eps=0.1, reference=lambda: 3)
    other = torch.nn.Sequential(torch.nn.Linear(2, 8))
    assert outcome(lambda: torch_compress(net, eps=0.1, reference=other), "reference").raised
    assert outcome(lambda: torch_compress(torch.nn.Tanh(), eps=0.1), "nn.Linear").raised
    # select: only the hidden layer
    small, report = torch_compress(net, eps=0.1, select=lambda name, m: name == "2")
    assert [layer.name for layer in report.layers] == ["2"] and type(small[0]) is torch.nn.Linear


# -- JAX -------------------------------------------------------------------------------------


def jax_params(seed: int = 0) -> dict:
    """The same network with (in, out) weights, as JAX code usually writes ``x @ W``."""
    Ws, bs = trained_weights(seed), biases(seed)
    return {f"W{i}": jnp.asarray(W.T) for i, W in enumerate(Ws)} | {f"b{i}": jnp.asarray(b) for i, b in enumerate(bs)}


def forward(p, x):
    h = jnp.tanh(x @ p["W0"] + p["b0"])
    h = jnp.tanh(h @ p["W1"] + p["b1"])
    return h @ p["W2"] + p["b2"]


def test_jax_output_budget_holds_on_held_out_points():
    params = jax_params()
    probe, held_out = jnp.asarray(inputs(256, 1)), jnp.asarray(inputs(256, 2))
    eps = 1e-2
    small, report = jax_compress(params, eps=eps, budget="output", forward=forward, probe=probe, leaf_size=LEAF)
    assert report.output_error <= 0.9 * eps
    assert rel(forward(small, held_out), forward(params, held_out)) <= eps
    assert rel(jax.jit(forward)(small, held_out), forward(small, held_out)) <= 1e-12  # jit runs it too
    assert report.compression_ratio < 0.6
    by_name = {layer.name: layer for layer in report.layers}
    # W2 (64 x 1) is a vector: the default selection leaves it alone
    assert set(by_name) == {"['W0']", "['W1']"} and by_name["['W1']"].kind == "hmatrix"
    assert not isinstance(small["W2"], CompressedArray)
    for name, layer in by_name.items():
        leaf = small[name[2:-2]]
        assert isinstance(leaf, CompressedArray) and leaf.shape == params[name[2:-2]].shape
        held = sum(f.size * 8 for f in leaf.factors)
        held += sum(len(p) * 8 for p in (leaf.layout.row_perm, leaf.layout.col_perm) if p is not None)
        assert held == layer.nbytes  # storage: what the pytree holds
        # the leaf's matrix, reconstructed in NumPy from its own factors (no JAX compilation)
        W, Wc = np.asarray(params[name[2:-2]]), dense_of_layout(leaf.layout, leaf.factors)
        assert abs(rel(Wc, W) - layer.error) <= 1e-12
    assert all(np.array_equal(np.asarray(params[k]), np.asarray(jax_params()[k])) for k in params)


def test_jax_compressed_array_products():
    """x @ W, W @ v, W.T and a NumPy left operand agree with the dense matrix,
    on a small hand-made H-matrix-like layout with permutations."""
    rng = np.random.default_rng(0)
    layout = BlockLayout((5, 4), (("dense", 0, 2, 0, 2, 0), ("lowrank", 0, 2, 2, 2, 1),
                                  ("lowrank", 2, 3, 0, 4, 2)), (3, 0, 4, 1, 2), (2, 3, 0, 1))
    factors = [rng.standard_normal((2, 2)), rng.standard_normal((2, 1)), rng.standard_normal((2, 1)),
               rng.standard_normal((3, 2)), rng.standard_normal((4, 2))]
    Ap = np.zeros((5, 4))
    Ap[0:2, 0:2] = factors[0]
    Ap[0:2, 2:4] = factors[1] @ factors[2].T
    Ap[2:5, 0:4] = factors[3] @ factors[4].T
    D = np.zeros((5, 4))
    D[np.ix_(layout.row_perm, layout.col_perm)] = Ap  # A[p_r[i], p_c[j]] = A_p[i, j]
    W0 = rng.standard_normal((5, 4))
    W = CompressedArray(layout, [jnp.asarray(f) for f in factors], jnp.asarray(W0), "hmatrix")
    D = D + W0
    v, x = rng.standard_normal((4, 3)), rng.standard_normal((2, 5))
    np.testing.assert_allclose(dense_of_layout(layout, factors) + W0, D, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(np.asarray(W @ jnp.asarray(v)), D @ v, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(np.asarray(W @ jnp.asarray(v[:, 0])), D @ v[:, 0], rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(np.asarray(jnp.asarray(x) @ W), x @ D, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(np.asarray(x @ W), x @ D, rtol=1e-13, atol=1e-13)  # a NumPy left operand
    np.testing.assert_allclose(np.asarray(W.T @ jnp.asarray(x.T)), D.T @ x.T, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(np.asarray(jnp.asarray(v.T) @ W.T), v.T @ D.T, rtol=1e-13, atol=1e-13)
    assert W.shape == (5, 4) and W.T.shape == (4, 5) and W.dtype == jnp.float64
    leaves, treedef = jax.tree_util.tree_flatten(W)
    assert len(leaves) == 6 and jax.tree_util.tree_unflatten(treedef, leaves).layout == layout
    with pytest.raises(ValueError, match="x must have"):
        jnp.ones((2, 3)) @ W


def test_jax_update_mode_and_fine_tuning():
    def init():  # an initialisation regenerated from its seed
        rng = np.random.default_rng(3)
        return {"W0": jnp.asarray(rng.standard_normal((2, WIDTH))),
                "W1": jnp.asarray(rng.standard_normal((WIDTH, WIDTH)) / 8)}

    params = init()
    update = 0.05 * jnp.asarray(lowrank_noise(WIDTH, WIDTH, 2, 1e-6))
    params = {"W0": params["W0"], "W1": params["W1"] + update}

    def f(p, x):
        return jnp.tanh(x @ p["W0"]) @ p["W1"]

    eps = 1e-3
    small, report = jax_compress(params, eps=eps, reference=init, select=lambda path, leaf: path == "['W1']")
    (layer,) = report.layers
    assert layer.update and layer.kind == "svd" and layer.ranks[0] <= 3 and layer.error <= eps
    assert layer.nbytes == layer.ranks[0] * 2 * WIDTH * 8  # the regenerated W0 costs nothing
    _, stored = jax_compress(params, eps=eps, reference=init(), select=lambda path, leaf: path == "['W1']")
    assert stored.layers[0].kind == "dense"  # a stored W0 counts: then dense is smaller
    assert not isinstance(small["W0"], CompressedArray)
    # fine-tuning: gradients flow into the factors, not into W0
    X = jnp.asarray(inputs(64, 9))
    target = f({"W0": params["W0"], "W1": params["W1"] + update}, X)  # more of the same update

    def loss(p):
        return jnp.mean((f(p, X) - target) ** 2)

    value_and_grad = jax.jit(jax.value_and_grad(loss))  # the compressed leaves pass through jit
    l0, g = value_and_grad(small)
    assert float(jnp.linalg.norm(g["W1"].factors[0])) > 0 and float(jnp.max(jnp.abs(g["W1"].reference))) == 0.0
    p = small
    for _ in range(30):
        value, g = value_and_grad(p)
        p = jax.tree_util.tree_map(lambda a, b: a - 0.5 * b, p, g)
    assert float(value_and_grad(p)[0]) < 0.5 * float(l0)


def test_jax_bad_inputs():
    params = jax_params()
    bad = dict(params, W1=params["W1"].at[2, 3].set(jnp.nan))
    res = outcome(lambda: jax_compress(bad, eps=0.1), "W1")
    assert res.raised and "NaN" in str(res.error)
    assert outcome(lambda: jax_compress(params, eps=0.1, budget="output"), "forward").raised
    assert outcome(lambda: jax_compress({"b": jnp.ones(3)}, eps=0.1), "2-D").raised
    assert outcome(lambda: jax_compress(params, eps=0.1, reference={"W0": jnp.ones((2, 2))}), "reference").raised
    assert outcome(lambda: jax_compress(params, eps=0.1, select=lambda p, leaf: p == "['b0']"), "2-D").raised
    assert outcome(lambda: jax_compress(params, eps=0.0), "eps").raised
