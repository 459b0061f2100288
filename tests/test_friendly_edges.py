"""Friendly edges (issue 19): a dtype mismatch between a model and its data is
refused by the adapter with an error naming both dtypes and the array, and a
warning repeated at every optimiser step is shown once per optimiser.

The warning problem: ``r(θ) = Aθ − y`` with ``A`` all ones (3 × 4, rank one)
in float32 and damping 1e-20, far below float32 rounding, so the Cholesky of
``AAᵀ + λI`` breaks down at every step (deterministically: the Gram entries
are exact) and Woodbury falls back to a jittered Cholesky with a
``FactorizationWarning``.
"""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest

from helpers import to_numpy
from natgrad.adapters.callables import CallableModel
from natgrad.linalg import FactorizationWarning, woodbury_solve
from natgrad.optim import ENGD, FNGD, SPRING

# ---------------------------------------------------------------------------
# (a) dtype mismatch between the model and its data
# ---------------------------------------------------------------------------


def _torch_models():
    torch = pytest.importorskip("torch")
    from natgrad.adapters.torch import TorchModel

    torch.manual_seed(0)
    W = torch.randn(3, dtype=torch.float32)
    plain = TorchModel(lambda p, b: b[0] @ p["w"] - b[1], {"w": W})
    net = torch.nn.Linear(3, 1, dtype=torch.float32)
    module = TorchModel.from_module(net, lambda out, b: out[:, 0] - b[1])
    pointwise = TorchModel.from_pointwise(
        [lambda p, x: p["w"] @ x, lambda p, x: p["w"].sum() - x.sum()], {"w": W}
    )
    return torch, {"plain": plain, "module": module, "pointwise": pointwise}


METHODS = ("residuals", "jacobian", "residuals_and_jacobian", "jvp", "vjp", "loss_and_grad", "hvp",
           "ggn_vp", "losses_along")


def _call(model, method, batch, n):
    flat = model.params
    if method in ("jvp", "hvp", "ggn_vp"):
        return getattr(model, method)(flat, batch, flat)
    if method == "vjp":
        return model.vjp(flat, batch, flat.new_ones(n) if hasattr(flat, "new_ones") else np.ones(n))
    if method == "losses_along":
        return model.losses_along(flat, flat, [1.0, 0.5], batch)
    return getattr(model, method)(flat, batch)


@pytest.mark.parametrize("path", ["plain", "module", "pointwise"])
def test_torch_float64_batch_for_float32_model_names_both_dtypes(path):
    torch, models = _torch_models()
    model = models[path]
    X = torch.rand(5, 3, dtype=torch.float64)
    batch = (X, X[:2]) if path == "pointwise" else (X, torch.zeros(5, dtype=torch.float32))
    for method in METHODS:
        with pytest.raises(TypeError) as err:
            _call(model, method, batch, 5)
        msg = str(err.value)
        assert "batch[0] is torch.float64" in msg and "parameters are torch.float32" in msg, (method, msg)
        assert ".to(torch.float32)" in msg and ".double()" in msg
    # the same data in the model's dtype goes through
    good = tuple(x.float() for x in batch)
    r = model.residuals(model.params, good)
    assert r.dtype == torch.float32 and r.shape == ((7,) if path == "pointwise" else (5,))


def test_torch_float32_batch_for_float64_model_and_single_and_dict_batches():
    torch = pytest.importorskip("torch")
    from natgrad.adapters.torch import TorchModel

    X64 = torch.rand(4, 3, dtype=torch.float64)
    model = TorchModel(lambda p, b: (b["x"] if isinstance(b, dict) else b) @ p, torch.ones(3, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"^batch is torch\.float32 but the model's parameters are torch\.float64"):
        model.residuals(model.params, X64.float())
    with pytest.raises(TypeError, match=r"^batch\['x'\] is torch\.float32 .* torch\.float64"):
        model.jacobian(model.params, {"x": X64.float()})
    assert torch.equal(model.residuals(model.params, {"x": X64}), X64.sum(1))


def test_torch_integer_and_bool_batch_parts_pass():
    torch = pytest.importorskip("torch")
    from natgrad.adapters.torch import TorchModel

    torch.manual_seed(1)
    net = torch.nn.Linear(3, 4, dtype=torch.float32)
    X = torch.rand(6, 3, dtype=torch.float32)
    labels = torch.tensor([0, 1, 2, 3, 1, 0])
    mask = torch.tensor([True, False, True, True, False, True])

    def per_sample(out, b):
        return torch.nn.functional.cross_entropy(out, b[1], reduction="none") * b[2]

    model = TorchModel.from_module(net, per_sample, loss="mean")
    J = model.jacobian(model.params, (X, labels, mask))
    assert J.dtype == torch.float32 and J.shape == (6, 16)
    # the masked samples have zero gradient rows, the others do not
    assert torch.all(J[~mask] == 0) and torch.all(J[mask].abs().sum(1) > 0)


def test_jax_float64_batch_for_float32_params_names_both_dtypes():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    from natgrad.adapters.jax import JaxModel

    params = {"w": jnp.asarray([0.5, -1.0, 2.0], dtype=jnp.float32)}
    plain = JaxModel(lambda p, b: b[0] @ p["w"] - b[1], params)
    pointwise = JaxModel.from_pointwise([lambda p, x: p["w"] @ x], params)
    X = np.random.default_rng(0).standard_normal((5, 3))
    y = jnp.zeros(5, dtype=jnp.float32)
    for model, batch, name in [
        (plain, (jnp.asarray(X), y), "batch[0]"),
        (plain, (X, y), "batch[0]"),  # NumPy float64 stays float64 under x64
        (plain, {"x": jnp.asarray(X, dtype=jnp.float32), "y": jnp.zeros(5)}, "batch['y']"),
        (pointwise, jnp.asarray(X), "batch"),
    ]:
        for method in METHODS:
            if model is pointwise and method == "vjp":
                continue
            with pytest.raises(TypeError) as err:
                _call(model, method, batch, 5)
            msg = str(err.value)
            assert f"{name} is float64 but the model's parameters are float32" in msg, (method, msg)
            assert "jnp.float32" in msg
    # float32 data and integer labels pass; the outputs stay float32
    r = plain.residuals(plain.params, (jnp.asarray(X, dtype=jnp.float32), jnp.arange(5)))
    assert r.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(r), X.astype(np.float32) @ [0.5, -1.0, 2.0] - np.arange(5), rtol=1e-6)
    # a weakly typed scalar (a Python float) does not promote, so it passes too
    r = plain.residuals(plain.params, (jnp.asarray(X, dtype=jnp.float32), jnp.asarray(1.5)))
    assert r.dtype == jnp.float32


def test_callable_model_output_dtype_mismatch_names_both_dtypes():
    A = np.ones((3, 2))
    model = CallableModel(residuals=lambda p, b: (A @ p).astype(np.float32), params=np.zeros(2))
    with pytest.raises(TypeError, match=r"residuals \(call 1\) returned dtype float32 for an input of dtype float64"):
        model.residuals(model.params, None)


# ---------------------------------------------------------------------------
# (b) a repeated warning is shown once per optimiser
# ---------------------------------------------------------------------------


def _rank_one_model(xp):
    A = xp.ones((3, 4), dtype=xp.float32)
    y = xp.asarray([2.0, 2.0, 2.0], dtype=xp.float32)
    return CallableModel(residuals=lambda p, b: A @ p - y, jacobian=lambda p, b: A,
                         params=xp.zeros(4, dtype=xp.float32))


def _run(opt, model, steps=5):
    params, infos = model.params, []
    for _ in range(steps):
        params, info = opt.step(params, model, None)
        infos.append(info)
    return params, infos


def _factorization(record):
    return [w for w in record if issubclass(w.category, FactorizationWarning)]


def test_factorization_warning_shown_once_per_optimizer(xp):
    model = _rank_one_model(xp)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")  # every occurrence reaches natgrad (no registry de-dup)
        opt = ENGD(damping=1e-20)
        params, infos = _run(opt, model)
        first = _factorization(record)
        assert len(first) == 1, [str(w.message) for w in first]
        assert "shown once per ENGD optimiser" in str(first[0].message)
        # every step's info lists its warning, shown or not
        assert all(len(info["warnings"]) == 1 and info["warnings"][0].startswith("FactorizationWarning: ")
                   for info in infos)
        # the first step solved Aθ = y (its min-norm solution is θ = ½·1; float32 rounding)
        np.testing.assert_allclose(to_numpy(params).astype(np.float64), np.full(4, 0.5), rtol=1e-5)
        # a second optimiser shows its own once
        _run(ENGD(damping=1e-20), model, 3)
        assert len(_factorization(record)) == 2
        # reset() shows it again
        opt.reset()
        _run(opt, model, 2)
        assert len(_factorization(record)) == 3
        # the raw linear algebra still warns at every call
        for _ in range(2):
            woodbury_solve(xp.ones((3, 4), dtype=xp.float32), xp.ones(4, dtype=xp.float32), 1e-20)
        assert len(_factorization(record)) == 5


def test_error_filter_still_raises_before_the_step_commits(xp):
    model = _rank_one_model(xp)
    opt = ENGD(damping=1e-20)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FactorizationWarning)
        for _ in range(2):  # every time, not only the first
            with pytest.raises(FactorizationWarning, match="diagonal jitter"):
                opt.step(model.params, model, None)
    assert opt.steps == 0
    with warnings.catch_warnings():  # "ignore" silences it, and the step is taken
        warnings.simplefilter("ignore", FactorizationWarning)
        with warnings.catch_warnings(record=True) as record:
            _, info = opt.step(model.params, model, None)
    assert record == [] and info["step_taken"] and opt.steps == 1


def test_spring_and_fngd_show_it_once_other_warnings_pass_through():
    model = _rank_one_model(np)
    A = np.ones((3, 4), dtype=np.float32)

    def losses(p, b):
        warnings.warn("the user's own warning", UserWarning)
        return 0.5 * (A @ p - 1.0) ** 2

    mean = CallableModel(residuals=losses, jacobian=lambda p, b: (A @ p - 1.0)[:, None] * A,
                         params=np.full(4, 2.0, dtype=np.float32), loss="mean")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        _run(SPRING(damping=1e-20), model, 4)
        assert len(_factorization(record)) == 1
        _, infos = _run(FNGD(damping=1e-20, lr=0.01, refresh_every=1), mean, 4)
    assert len(_factorization(record)) == 2
    assert all("warnings" in info for info in infos)
    # the user's own warning is not de-duplicated: one per call of the model
    assert len([w for w in record if w.category is UserWarning]) == 4


def test_warnings_hook_is_restored_and_per_thread():
    model = _rank_one_model(np)
    before = warnings.showwarning
    errors = []

    def work():
        try:
            for _ in range(3):
                _, infos = _run(ENGD(damping=1e-20), model, 3)
                assert all(len(info["warnings"]) == 1 for info in infos)
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        inner = warnings.showwarning
        threads = [threading.Thread(target=work) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert warnings.showwarning is inner
    assert errors == []
    # two threads × three optimisers, each shows its warning once
    assert len(_factorization(record)) == 6
    assert warnings.showwarning is before


def test_warning_before_an_exception_in_the_step_is_still_shown():
    A = np.ones((3, 4), dtype=np.float32)
    calls = []

    def residuals(p, b):
        calls.append(1)
        if len(calls) == 2:  # the line search, after the factorisation warned
            raise KeyError("the user's own error")
        return A @ p - 2.0

    model = CallableModel(residuals=residuals, jacobian=lambda p, b: A, params=np.zeros(4, np.float32))
    opt = ENGD(damping=1e-20)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with pytest.raises(KeyError, match="the user's own error"):
            opt.step(model.params, model, None)
    assert len(_factorization(record)) == 1 and opt.steps == 0
