"""natgrad.adapters.torch against torch.autograd.functional references (float64).

Tolerances: derivatives that are the same sums in another order agree to
1e-12 (relative to their scale); the forward Laplacian against the Hessian
trace to 1e-11.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch.autograd.functional import hvp as ref_hvp  # noqa: E402
from torch.autograd.functional import jacobian as ref_jacobian  # noqa: E402
from torch.func import functional_call, hessian  # noqa: E402

from natgrad.adapters.torch import TorchModel, forward_laplacian, laplacian  # noqa: E402

DT = torch.float64
TOL = 1e-12


def mlp(sizes, seed=0):
    torch.manual_seed(seed)
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[i], sizes[i + 1], dtype=DT))
        if i < len(sizes) - 2:
            layers.append(torch.nn.Tanh())
    return torch.nn.Sequential(*layers)


def make(sizes=(3, 6, 5, 1), n=7, loss="squared", seed=0, **kw):
    net = mlp(sizes, seed)
    params = {k: v.detach().clone() for k, v in net.named_parameters()}
    g = torch.Generator().manual_seed(seed + 1)
    X = torch.rand(n, sizes[0], generator=g, dtype=DT)
    y = torch.rand(n, generator=g, dtype=DT)

    if loss == "squared":
        def fn(p, b):
            return functional_call(net, p, (b[0],))[:, 0] - b[1]
    else:
        def fn(p, b):
            return (functional_call(net, p, (b[0],))[:, 0] - b[1]) ** 2

    model = TorchModel(fn, params, loss=loss, **kw)
    flat_fn = lambda th, b=(X, y): fn(model.unflatten(th), b)  # noqa: E731
    return model, (X, y), flat_fn


def rand(n, seed):
    return torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=DT)


def close(a, b, tol=TOL):
    scale = max(1.0, float(torch.max(torch.abs(b))))
    assert float(torch.max(torch.abs(a - b))) <= tol * scale


@pytest.mark.parametrize("sizes,n", [((3, 6, 5, 1), 7), ((2, 3, 1), 40)])  # reverse (N ≤ P), forward (N > P)
def test_jacobian_matches_autograd(sizes, n):
    model, batch, f = make(sizes, n)
    theta = model.params
    J = model.jacobian(theta, batch)
    assert J.shape == (n, model.n_params)
    close(J, ref_jacobian(f, theta))
    r, J2 = model.residuals_and_jacobian(theta, batch)
    close(r, f(theta))
    close(J2, J, 0.0)


def test_chunked_jacobian_equals_unchunked():
    model, batch, _ = make()
    J = model.jacobian(model.params, batch)
    chunked, _, _ = make(chunk_size=2)
    close(chunked.jacobian(model.params, batch), J)
    fwd, b2, _ = make((2, 3, 1), 40, chunk_size=3)
    close(fwd.jacobian(fwd.params, b2), make((2, 3, 1), 40)[0].jacobian(fwd.params, b2))


def test_jvp_vjp_adjoint_and_against_jacobian():
    model, batch, f = make()
    theta = model.params
    J = ref_jacobian(f, theta)
    v, u = rand(model.n_params, 1), rand(7, 2)
    Jv, JTu = model.jvp(theta, batch, v), model.vjp(theta, batch, u)
    close(Jv, J @ v)
    close(JTu, J.T @ u)
    assert abs(float(Jv @ u - v @ JTu)) <= TOL * float(torch.linalg.norm(J)) * 10


@pytest.mark.parametrize("loss", ["squared", "mean"])
def test_loss_grad_hvp_ggn(loss):
    model, batch, f = make(loss=loss)
    theta = model.params
    L = (lambda th: 0.5 * (f(th) ** 2).sum()) if loss == "squared" else (lambda th: f(th).mean())
    value, g = model.loss_and_grad(theta, batch)
    close(value, L(theta))
    close(g, ref_jacobian(L, theta))
    v, w = rand(model.n_params, 3), rand(model.n_params, 4)
    Hv = model.hvp(theta, batch, v)
    close(Hv, ref_hvp(L, theta, v)[1])
    Hw = model.hvp(theta, batch, w)
    assert abs(float(w @ Hv - v @ Hw)) <= 1e-12 * float(torch.linalg.norm(Hv) * torch.linalg.norm(w))
    J = ref_jacobian(f, theta)
    G = J.T @ J / (7 if loss == "mean" else 1)
    close(model.ggn_vp(theta, batch, v), G @ v)


def test_mean_loss_rows_are_per_sample_gradients():
    model, (X, y), f = make(loss="mean")
    theta = model.params
    J = model.jacobian(theta, (X, y))
    for i in range(X.shape[0]):
        gi = ref_jacobian(lambda th: f(th, (X[i : i + 1], y[i : i + 1]))[0], theta)
        close(J[i], gi)
    close(model.loss_and_grad(theta, (X, y))[1], J.mean(0))


def test_unflatten_flatten_roundtrip_and_params_copy():
    model, _, _ = make()
    theta = model.params
    p = model.unflatten(theta)
    assert set(p) == {"0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"}
    assert p["0.weight"].data_ptr() == theta.data_ptr()  # views, no copy
    close(model.flatten(p), theta, 0.0)
    theta[0] = 123.0
    assert float(model.params[0]) != 123.0


def test_array_namespace_numpy_zero_copy():
    model, batch, _ = make(array_namespace="numpy")
    theta = model.params
    assert isinstance(theta, np.ndarray)
    J = model.jacobian(theta, batch)
    assert isinstance(J, np.ndarray) and J.shape == (7, model.n_params)
    ref, _, _ = make()
    np.testing.assert_allclose(J, ref.jacobian(ref.params, batch).numpy(), rtol=0, atol=1e-14)
    p = model.unflatten(theta)
    assert p["0.weight"].data_ptr() == theta.ctypes.data  # NumPy → torch without a copy
    assert isinstance(model.vjp(theta, batch, np.ones(7)), np.ndarray)


def test_from_module():
    net = mlp((3, 4, 1))
    model = TorchModel.from_module(net, lambda out, b: out[:, 0] - b[1])
    X, y = torch.rand(5, 3, dtype=DT), torch.rand(5, dtype=DT)
    ref = ref_jacobian(lambda th: functional_call(net, model.unflatten(th), (X,))[:, 0] - y, model.params)
    close(model.jacobian(model.params, (X, y)), ref)
    with pytest.raises(TypeError, match="module"):
        TorchModel.from_module(lambda x: x, lambda o, b: o)


# -- forward Laplacian and PINN residuals -------------------------------------


def _fancy(y):
    return (
        torch.sin(y).prod() * torch.exp(y[0]) / (1.0 + (y**2).sum())
        + torch.sigmoid(y @ torch.ones(y.shape[0], dtype=DT))
        - 3.0 * y.mean()
        + torch.nn.functional.softplus(y).sum()
        + y[1] ** 3 * torch.log(2.0 + y[2])
    )


_NET = mlp((3, 8, 8, 1))


@pytest.mark.parametrize("f", [_fancy, lambda y: _NET(y)[0], lambda y: torch.tanh(y) * y])
def test_forward_laplacian_equals_hessian_trace(f):
    x = torch.tensor([0.3, -0.2, 0.5], dtype=DT)
    value, grad, lap = forward_laplacian(f, x)
    close(value, f(x), 1e-14)
    H = torch.func.jacfwd(torch.func.jacrev(f))(x)
    if H.ndim == 2:
        close(grad, torch.func.jacrev(f)(x), 1e-13)
        close(lap, H.trace(), 1e-11)
    else:  # vector output: per component
        close(lap, torch.diagonal(H, dim1=-2, dim2=-1).sum(-1), 1e-11)
    with pytest.raises(ValueError, match="x must"):
        laplacian(f, torch.zeros(2, 3, dtype=DT))


def _pinn(lap):
    net = mlp((2, 8, 8, 1), seed=3)
    params = {k: v.detach().clone() for k, v in net.named_parameters()}

    def u(p, x):
        return functional_call(net, p, (x,))[..., 0]

    if lap == "forward":
        def interior(p, x):
            return -laplacian(lambda y: u(p, y), x) - torch.sin(x).sum()
    else:
        def interior(p, x):
            return -torch.trace(hessian(lambda y: u(p, y))(x)) - torch.sin(x).sum()

    def boundary(p, x):
        return u(p, x) - x.sum()

    g = torch.Generator().manual_seed(5)
    batch = (torch.rand(6, 2, generator=g, dtype=DT), torch.rand(3, 2, generator=g, dtype=DT))
    return params, interior, boundary, batch


def test_pinn_pointwise_jacobian_forward_equals_hessian_laplacian_and_autograd():
    params, interior, boundary, batch = _pinn("forward")
    _, interior_h, _, _ = _pinn("hessian")
    fwd = TorchModel.from_pointwise([interior, boundary], params, chunk_size=4)
    hes = TorchModel.from_pointwise([interior_h, boundary], params)
    theta = fwd.params
    r, J = fwd.residuals_and_jacobian(theta, batch)
    r2, J2 = hes.residuals_and_jacobian(theta, batch)
    close(r, r2, 1e-11)
    close(J, J2, 1e-11)
    close(fwd.residuals(theta, batch), r, 1e-13)

    def ref_r(th):
        p = fwd.unflatten(th)
        ri = torch.stack([interior(p, x) for x in batch[0]]) / math.sqrt(6)
        rb = torch.stack([boundary(p, x) for x in batch[1]]) / math.sqrt(3)
        return torch.cat([ri, rb])

    close(J, ref_jacobian(ref_r, theta), 1e-11)
    # weights as loss weights: residuals scaled by √w_k
    weighted = TorchModel.from_pointwise([interior, boundary], params, weights=[2.0, 0.5])
    rw = weighted.residuals(theta, batch)
    close(rw, torch.cat([r[:6] * math.sqrt(6) * math.sqrt(2.0), r[6:] * math.sqrt(3) * math.sqrt(0.5)]), 1e-13)
    # hvp / vjp of a pointwise model go through the vmapped residual
    v = rand(fwd.n_params, 9)
    close(fwd.ggn_vp(theta, batch, v), J.T @ (J @ v), 1e-11)
    # its jvp is the per-point JVP, vmapped, with the group scales
    close(fwd.jvp(theta, batch, v), J @ v, 1e-11)
    close(weighted.jvp(theta, batch, v), weighted.jacobian(theta, batch) @ v, 1e-11)


def test_pointwise_mean_loss_single_term():
    net = mlp((2, 4, 1))
    params = {k: v.detach().clone() for k, v in net.named_parameters()}
    X = torch.rand(5, 2, dtype=DT)

    def ell(p, x):
        return (functional_call(net, p, (x,))[0] - 1.0) ** 2

    model = TorchModel.from_pointwise([ell], params, loss="mean")
    theta = model.params
    J = model.jacobian(theta, X)  # a single tensor for a single term
    for i in range(5):
        close(J[i], ref_jacobian(lambda th: ell(model.unflatten(th), X[i]), theta))
    loss, g = model.loss_and_grad(theta, X)
    close(loss, torch.stack([ell(params, x) for x in X]).mean())
    close(g, J.mean(0))


# -- bad input -------------------------------------------------------------------


def test_bad_input_errors():
    model, batch, _ = make()
    P = model.n_params
    with pytest.raises(ValueError, match="flat must have shape"):
        model.residuals(torch.zeros(P + 1, dtype=DT), batch)
    with pytest.raises(TypeError, match="flat must have dtype"):
        model.residuals(torch.zeros(P, dtype=torch.float32), batch)
    with pytest.raises(TypeError, match="flat must be a PyTorch array"):
        model.residuals(np.zeros(P), batch)
    with pytest.raises(ValueError, match="v must have shape"):
        model.jvp(model.params, batch, torch.zeros(3, dtype=DT))
    with pytest.raises(ValueError, match="u must have shape"):
        model.vjp(model.params, batch, torch.zeros(3, dtype=DT))
    with pytest.raises(ValueError, match="loss must be"):
        TorchModel(lambda p, b: b, {"w": torch.zeros(2, dtype=DT)}, loss="sum")
    with pytest.raises(TypeError, match="params must be"):
        TorchModel(lambda p, b: b, [torch.zeros(2, dtype=DT)])
    with pytest.raises(TypeError, match=r"params\['w'\]"):
        TorchModel(lambda p, b: b, {"w": torch.zeros(2, dtype=torch.int64)})
    with pytest.raises(TypeError, match="share dtype"):
        TorchModel(lambda p, b: b, {"a": torch.zeros(2, dtype=DT), "b": torch.zeros(2, dtype=torch.float32)})
    with pytest.raises(TypeError, match="fn must be callable"):
        TorchModel(3, {"w": torch.zeros(2, dtype=DT)})
    with pytest.raises(ValueError, match="array_namespace"):
        TorchModel(lambda p, b: b, {"w": torch.zeros(2, dtype=DT)}, array_namespace="dask")
    with pytest.raises(ValueError, match="chunk_size must be positive"):
        TorchModel(lambda p, b: b, {"w": torch.zeros(2, dtype=DT)}, chunk_size=0)
    with pytest.raises(TypeError, match="chunk_size must be an int"):
        TorchModel(lambda p, b: b, {"w": torch.zeros(2, dtype=DT)}, chunk_size=2.5)
    with pytest.raises(ValueError, match="memory_budget must be positive"):
        TorchModel.from_pointwise([lambda p, x: x.sum()], {"w": torch.zeros(2, dtype=DT)}, memory_budget=-1)
    bad = TorchModel(lambda p, b: torch.outer(p["w"], b), {"w": torch.zeros(2, dtype=DT)})
    with pytest.raises(ValueError, match="fn must return a 1-D"):
        bad.residuals(bad.params, torch.ones(3, dtype=DT))
    with pytest.raises(ValueError, match="fn must return a 1-D"):
        bad.jacobian(bad.params, torch.ones(3, dtype=DT))
    with pytest.raises(ValueError, match="structure"):
        model.flatten({"w": torch.zeros(2, dtype=DT)})


def test_bad_pointwise_input_errors():
    p = {"w": torch.ones(2, dtype=DT)}
    with pytest.raises(TypeError, match="terms"):
        TorchModel.from_pointwise([], p)
    with pytest.raises(TypeError, match=r"terms\[1\]"):
        TorchModel.from_pointwise([lambda p, x: x.sum(), 3], p)
    for weights in ("avg", [1.0], [1.0, -1.0], [1.0, float("nan")]):
        with pytest.raises(ValueError, match="weights"):
            TorchModel.from_pointwise([lambda p, x: x.sum(), lambda p, x: x.sum()], p, weights=weights)
    model = TorchModel.from_pointwise([lambda p, x: p["w"] * x.sum()], p)
    X = torch.ones(3, 2, dtype=DT)
    with pytest.raises(ValueError, match=r"terms\[0\] must return a scalar"):
        model.jacobian(model.params, X)
    with pytest.raises(ValueError, match=r"terms\[0\] must return a scalar"):
        model.residuals(model.params, X)
    ok = TorchModel.from_pointwise([lambda p, x: p["w"] @ x, lambda p, x: p["w"].sum()], p)
    with pytest.raises(ValueError, match="batch must be a sequence of 2"):
        ok.jacobian(ok.params, (X,))
    with pytest.raises(ValueError, match=r"batch\[1\]"):
        ok.jacobian(ok.params, (X, torch.ones(0, 2, dtype=DT)))


def _losses_one_by_one(model, theta, d, etas, batch):
    return torch.tensor([float(model.loss_and_grad(theta - e * d, batch)[0]) for e in etas], dtype=DT)


@pytest.mark.parametrize("loss", ["squared", "mean"])
def test_losses_along_batched_fn_and_mean_loss(loss):
    model, batch, _ = make(loss=loss)
    theta, d = model.params, rand(model.n_params, 5)
    etas = [1.0, 0.25, 0.0]
    along = model.losses_along(theta, d, etas, batch)
    assert isinstance(along, list) and len(along) == 3
    close(torch.tensor(along, dtype=DT), _losses_one_by_one(model, theta, d, etas, batch), 1e-13)
    assert along[2] == pytest.approx(float(model.loss_and_grad(theta, batch)[0]), rel=1e-14)
    with pytest.raises(ValueError, match="must have shape"):
        model.losses_along(theta[:3], d, etas, batch)



# -- the round trip into an nn.Module ---------------------------------------------


def test_train_then_load_into_module_gives_the_adapters_residuals():
    """Levenberg-Marquardt steps through the adapter, then the module's own forward.

    Tolerance: 1e-14 relative to max|r|; the module's forward and the
    adapter's functional_call run the same operations on the same values, but
    the module's parameters sit in other memory than the views of the flat
    vector, which BLAS may sum in another order.
    """
    net = mlp((3, 6, 1), seed=7)
    model = TorchModel.from_module(net, lambda out, b: out[:, 0] - b[1])
    g = torch.Generator().manual_seed(8)
    X = torch.rand(20, 3, generator=g, dtype=DT)
    y = torch.sin(X.sum(1))
    theta = model.params
    loss0 = float(model.loss_and_grad(theta, (X, y))[0])
    for _ in range(3):
        r, J = model.residuals_and_jacobian(theta, (X, y))
        theta = theta - torch.linalg.solve(J.T @ J + 0.1 * torch.eye(model.n_params, dtype=DT), J.T @ r)
    loss3 = float(model.loss_and_grad(theta, (X, y))[0])
    assert loss3 < 0.1 * loss0  # the steps trained the model (3.6 → 0.044)
    before = {k: id(v) for k, v in net.named_parameters()}
    assert model.load_into(net, theta) is net
    assert {k: id(v) for k, v in net.named_parameters()} == before  # same parameter objects
    assert all(p.requires_grad for p in net.parameters())
    with torch.no_grad():
        r_module = net(X)[:, 0] - y
    close(r_module, model.residuals(theta, (X, y)), 1e-14)
    assert torch.equal(model.flatten(dict(net.named_parameters())), theta)  # bit-exact back
    assert model.flatten(dict(net.named_parameters())).grad_fn is None


def test_load_into_converts_dtype_and_accepts_numpy():
    net = mlp((2, 3, 1)).to(torch.float32)
    params64 = {k: v.detach().to(DT) for k, v in net.named_parameters()}
    model = TorchModel(lambda p, b: functional_call(net, p, (b,))[:, 0], params64, array_namespace="numpy")
    theta = np.random.default_rng(3).standard_normal(model.n_params)
    model.load_into(net, theta)
    got = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
    assert got.dtype == torch.float32
    assert torch.equal(got, torch.from_numpy(theta).to(torch.float32))  # rounded once, to nearest


def test_load_into_errors_name_the_parameter_and_write_nothing():
    net = mlp((2, 3, 1))
    snapshot = {k: v.detach().clone() for k, v in net.named_parameters()}
    extra = dict(snapshot, extra=torch.zeros(2, dtype=DT))
    model = TorchModel(lambda p, b: b, extra)
    with pytest.raises(ValueError, match="module has no parameter 'extra'"):
        model.load_into(net, torch.ones(model.n_params, dtype=DT))
    reshaped = dict(snapshot)
    reshaped["2.weight"] = torch.zeros(3, 1, dtype=DT)  # (1, 3) in the module, declared first-to-last
    wrong = TorchModel(lambda p, b: b, reshaped)
    with pytest.raises(ValueError, match=r"module parameter '2\.weight' has shape \(1, 3\)"):
        wrong.load_into(net, torch.ones(wrong.n_params, dtype=DT))
    for k, v in net.named_parameters():  # checked before the first write
        assert torch.equal(v.detach(), snapshot[k]), k
    ok = TorchModel.from_module(net, lambda out, b: out[:, 0])
    with pytest.raises(ValueError, match="flat must have shape"):
        ok.load_into(net, torch.ones(ok.n_params + 1, dtype=DT))
    with pytest.raises(TypeError, match="module must be a torch.nn.Module"):
        ok.load_into({"0.weight": None}, ok.params)
    single = TorchModel(lambda p, b: p, torch.zeros(3, dtype=DT))
    with pytest.raises(ValueError, match="single tensor"):
        single.load_into(net, single.params)
