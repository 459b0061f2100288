"""Optimiser state as data, atomic steps, keyword defaults and the rule that a
non-finite step is not taken, for every optimiser on every backend."""

from __future__ import annotations

import inspect
import json
import re
from collections import Counter

import numpy as np
import pytest

from helpers import from_numpy, to_numpy
from natgrad import backend
from natgrad.adapters.callables import CallableModel
from natgrad.backend import io
from natgrad.optim import ENGD, FNGD, SPRING, Adam, GradientFlow, SaddleFreeNewton, _common
from test_optim import OPTIMISERS, Quadratic, make_model

#: every optimiser configuration: (factory, the model's loss convention)
CONFIGS = {name: (factory, "squared") for name, factory in OPTIMISERS.items()}
CONFIGS["fngd"] = (lambda: FNGD(damping=1e-2, lr=0.3), "mean")
CONFIGS["fngd-reuse-momentum"] = (lambda: FNGD(damping=1e-2, lr=0.3, refresh_every=2, momentum=0.3), "mean")

CLASSES = (ENGD, SPRING, FNGD, SaddleFreeNewton, GradientFlow, Adam)
MODEL_METHODS = ("residuals", "jacobian", "jvp", "vjp", "loss_and_grad", "hvp")


def batch_of(step):
    """Target scales that differ by step, so each step sees another batch."""
    return 1.0 + 0.05 * (step % 3)


class Probe:
    """A model wrapper that counts the calls of each model method and, when
    told, raises ``exc`` at call ``at`` of ``fault`` or poisons its output."""

    def __init__(self, model, fault=None, at=0, exc=RuntimeError, poison=None):
        self._model, self.loss, self.params = model, model.loss, model.params
        self.fault, self.at, self.exc, self.poison = fault, at, exc, poison
        self.calls = Counter()

    def __getattr__(self, name):
        fn = getattr(self._model, name)
        if name not in MODEL_METHODS:
            return fn

        def wrapped(*args):
            self.calls[name] += 1
            if name == self.fault and self.calls[name] == self.at:
                raise self.exc(f"injected into {name} call {self.at}")
            out = fn(*args)
            if name == self.poison:
                out = _poisoned(out)
            return out

        return wrapped


def _poisoned(out):
    """The output with NaN in it (the gradient of a (loss, grad) pair)."""
    if isinstance(out, tuple):
        return out[0], _poisoned(out[1])
    return out * float("nan")


def same(a, b, where="state"):
    """Equal state values: arrays equal to the bit, the rest by ==."""
    if backend.is_array(a) or backend.is_array(b):
        assert backend.is_array(a) and backend.is_array(b), where
        assert backend.namespace(a) is backend.namespace(b), where
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b), err_msg=where)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{where}[{i}]")
    else:
        assert a == b and type(a) is type(b), f"{where}: {a!r} != {b!r}"


def run(opt, model, params, first, count):
    for step in range(first, first + count):
        params, info = opt.step(params, model, batch_of(step))
    return params


def started(xp, name, steps):
    """The configuration's factory and model, an optimiser and the params after ``steps`` steps."""
    factory, kind = CONFIGS[name]
    model = make_model(xp, loss=kind)
    opt = factory()
    return factory, model, opt, run(opt, model, model.params, 1, steps)


# ---------------------------------------------------------------------------
# keyword hyper-parameters with documented defaults
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_hyper_parameter_is_a_documented_keyword(cls):
    doc = inspect.getdoc(cls)
    params = list(inspect.signature(cls).parameters.values())
    assert params, cls
    for p in params:
        assert p.kind is inspect.Parameter.KEYWORD_ONLY, f"{cls.__name__}({p.name}) is not keyword-only"
        assert p.default is not inspect.Parameter.empty, f"{cls.__name__}({p.name}) has no default"
        line = re.search(rf"^{p.name} : (.*)$", doc, re.MULTILINE)
        assert line, f"{cls.__name__} does not document {p.name}"
        documented = "optional" if p.default is None else "default"
        assert documented in line.group(1), f"{cls.__name__}: {line.group(0)!r} does not give its default"
    cls()  # constructible with no arguments at all
    with pytest.raises(TypeError):
        cls(0.1)  # positional hyper-parameters are refused


def test_spring_needs_only_its_damping():
    opt = SPRING(damping=1e-3)
    assert opt.momentum == 0.0633 and opt.lr is None and opt.norm_cap is None
    with pytest.raises(TypeError):
        SPRING(1e-3, 0.9)


# ---------------------------------------------------------------------------
# state_dict / load_state_dict
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CONFIGS))
def test_state_dict_round_trip_continues_bit_for_bit(xp, name):
    factory, model, opt, params = started(xp, name, 3)
    saved = opt.state_dict()
    expected = run(opt, model, params, 4, 3)
    fresh = factory()
    fresh.load_state_dict(saved)
    got = run(fresh, model, params, 4, 3)
    np.testing.assert_array_equal(to_numpy(got), to_numpy(expected))
    same(fresh.state_dict(), opt.state_dict())
    # plain data: arrays of the parameters' library, JSON for the rest
    assert saved["optimizer"] == type(opt).__name__ and saved["steps"] == 3
    skeleton, arrays = io.split_arrays(saved)
    json.dumps(skeleton)
    for key, a in arrays.items():
        assert backend.namespace(a) is xp, key


def test_state_dict_holds_what_changes_in_training():
    xp = pytest.importorskip("array_api_compat.numpy")
    squared, mean = make_model(xp), make_model(xp, loss="mean")
    spring, adam, flow = SPRING(damping=1e-4, momentum=0.5), Adam(lr=0.05), GradientFlow(lr=0.5, method="ab2")
    sfn, fngd = SaddleFreeNewton(damping=0.1, method="lanczos", terms=10), FNGD(momentum=0.5)
    for opt, model in ((spring, squared), (adam, squared), (flow, squared), (sfn, squared), (fngd, mean)):
        run(opt, model, model.params, 1, 2)
    np.testing.assert_array_equal(spring.state_dict()["phi"], spring.phi)
    np.testing.assert_array_equal(adam.state_dict()["v"], adam.v)
    np.testing.assert_array_equal(flow.state_dict()["previous_grad"], flow.previous_grad)
    assert sfn.state_dict()["damping"] == sfn.damping != 0.1  # adapted
    state = fngd.state_dict()
    np.testing.assert_array_equal(state["velocity"], fngd.velocity)
    assert state["cache_keys"] == [None] and state["cache_uses"] == [1]  # refreshed every step
    sfn.reset()
    assert sfn.state_dict() == {"optimizer": "SaddleFreeNewton", "damping": 0.1, "steps": 0}


def test_fngd_batch_keys_round_trip():
    xp = pytest.importorskip("array_api_compat.numpy")
    model = make_model(xp, loss="mean")
    opt = FNGD(refresh_every=3)
    for key in ((0, "a"), 7, "b", None):
        opt.step(model.params, model, None, batch_key=key)
    state = opt.state_dict()
    assert state["cache_keys"] == [[0, "a"], 7, "b", None]
    skeleton, arrays = io.split_arrays(state)
    loaded = io.join_arrays(json.loads(json.dumps(skeleton)), arrays)  # lists come back from JSON
    fresh = FNGD(refresh_every=3)
    fresh.load_state_dict(loaded)
    _, info = fresh.step(model.params, model, None, batch_key=(0, "a"))
    assert info["refreshed"] is False  # the cached weights of key (0, "a") were found
    opt.step(model.params, model, None, batch_key=object())
    with pytest.raises(TypeError, match="batch_key .* cannot be saved"):
        opt.state_dict()


def _bad_states():
    """(optimiser, a state to corrupt, corruption, error type, message)."""
    xp = pytest.importorskip("array_api_compat.numpy")
    model, mean = make_model(xp), make_model(xp, loss="mean")
    spring, adam = SPRING(), Adam()
    sfn, fngd = SaddleFreeNewton(damping=0.1, method="lanczos", terms=5), FNGD()
    for opt, m in ((spring, model), (adam, model), (sfn, model), (fngd, mean)):
        run(opt, m, m.params, 1, 2)

    def put(key, value):
        return lambda s: {**s, key: value}

    return [
        (adam, spring.state_dict(), lambda s: s, ValueError, r"state\['optimizer'\] is 'SPRING'"),
        (spring, spring.state_dict(), lambda s: {k: v for k, v in s.items() if k != "phi"}, ValueError,
         r"missing entries \['phi'\]"),
        (spring, spring.state_dict(), put("extra", 1), ValueError, r"unknown entries \['extra'\]"),
        (spring, spring.state_dict(), put("phi", np.ones((3, 3))), ValueError,
         r"state\['phi'\] must be a 1-D array or None, got \(3, 3\)"),
        (spring, spring.state_dict(), put("phi", [1.0, 2.0]), ValueError, r"state\['phi'\] must be a 1-D array"),
        (spring, spring.state_dict(), put("steps", -1), ValueError, r"state\['steps'\] must be an int ≥ 0"),
        (spring, spring.state_dict(), put("steps", 2.0), ValueError, r"state\['steps'\] must be an int"),
        (adam, adam.state_dict(), put("v", np.ones(5)), ValueError, "the state vectors differ in shape"),
        (sfn, sfn.state_dict(), put("damping", 0.0), ValueError, r"state\['damping'\] must be a finite positive"),
        (fngd, fngd.state_dict(), put("cache_uses", [1, 2]), ValueError, "must have one length"),
        (fngd, fngd.state_dict(), put("cache_alphas", [None]), ValueError, "must hold 1-D arrays"),
        (fngd, fngd.state_dict(), put("cache_keys", [{"a": 1}]), ValueError, r"state\['cache_keys\[0\]'\]"),
        (spring, spring.state_dict(), lambda s: [("phi", None)], TypeError, "state must be a dict"),
    ]


def test_load_state_dict_names_the_bad_entry_and_changes_nothing():
    for opt, state, corrupt, error, message in _bad_states():
        before = opt.state_dict()
        with pytest.raises(error, match=message):
            opt.load_state_dict(corrupt(state))
        same(opt.state_dict(), before)


def test_a_state_of_the_wrong_length_is_refused_at_the_step():
    xp = pytest.importorskip("array_api_compat.numpy")
    model = make_model(xp)
    for opt, key in ((SPRING(), "phi"), (Adam(), "m"), (GradientFlow(method="ab2"), "previous_grad")):
        small = make_model(xp, p=5)
        run(opt, small, small.params, 1, 2)
        with pytest.raises(ValueError, match=rf"state '{key}' has shape \(5,\) but params have shape \(30,\)"):
            opt.step(model.params, model, None)
        opt.reset()
        opt.step(model.params, model, None)  # afresh after reset()


# ---------------------------------------------------------------------------
# atomic steps: an exception anywhere in a step changes nothing
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CONFIGS))
def test_an_exception_in_a_step_leaves_the_optimiser_unchanged(xp, name):
    factory, model, opt, params = started(xp, name, 2)
    # a twin counts the calls of one clean step and gives its result
    twin = factory()
    twin.load_state_dict(opt.state_dict())
    probe = Probe(model)
    clean, _ = twin.step(params, probe, batch_of(3))
    injected = 0
    for method, count in probe.calls.items():
        # the first call, the second (the first of the line search for ENGD/SPRING)
        # and the last (the line search's last evaluation, the series' last HVP)
        for at in sorted({1, 2, count} & set(range(1, count + 1))):
            for exc in (RuntimeError, KeyboardInterrupt):
                before = opt.state_dict()
                with pytest.raises(exc, match="injected"):
                    opt.step(params, Probe(model, method, at, exc), batch_of(3))
                same(opt.state_dict(), before, f"{name}: {exc.__name__} at {method} call {at}")
                injected += 1
    assert injected >= 2
    # and the optimiser still takes exactly the step it would have taken
    after, _ = opt.step(params, model, batch_of(3))
    np.testing.assert_array_equal(to_numpy(after), to_numpy(clean))


# ---------------------------------------------------------------------------
# a step whose loss, direction or new parameters are not finite is not taken
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CONFIGS))
def test_a_nonfinite_step_is_not_taken(xp, name):
    factory, model, opt, params = started(xp, name, 2)
    probe = Probe(model)
    factory().step(params, probe, None)
    rejected = 0
    for method in probe.calls:
        before = opt.state_dict()
        new, info = opt.step(params, Probe(model, poison=method), None)
        assert info["step_taken"] is False, (name, method, info)
        assert "NaN/Inf" in info["message"] and info["lr"] == 0.0
        assert new is params
        same(opt.state_dict(), before, f"{name}: NaN from {method}")
        rejected += 1
    assert rejected >= 1


def test_an_overflowing_update_is_not_taken():
    # finite loss and direction (about 1e10), a step size that carries θ past the
    # largest float: the new parameters would be Inf
    y = np.full(3, 1e10)
    model = CallableModel(residuals=lambda p, b: p - y, jacobian=lambda p, b: np.eye(3),
                          loss_and_grad=lambda p, b: (0.5 * np.sum((p - y) ** 2), p - y), params=np.zeros(3))
    for opt in (GradientFlow(lr=1e300), ENGD(line_search=False, lr=1e300)):
        p0 = model.params
        with np.errstate(over="ignore"):  # NumPy's overflow warning is not what is tested
            new, info = opt.step(p0, model, None)
        assert info["step_taken"] is False and "the updated params" in info["message"], info
        assert new is p0 and opt.state_dict()["steps"] == 0


def test_adaptive_damping_grows_when_the_loss_overflows():
    xp = pytest.importorskip("array_api_compat.numpy")
    H, b = np.diag([1.0, -0.5, 2.0]), np.ones(3)

    class Overflow(Quadratic):
        def loss_and_grad(self, p, batch):  # finite at 0, Inf elsewhere
            loss, g = super().loss_and_grad(p, batch)
            return (loss if np.all(p == 0) else np.inf), g

    model = Overflow(xp, H, b)
    opt, p0 = SaddleFreeNewton(damping=0.5, method="lanczos", terms=3), model.params
    new, info = opt.step(p0, model, None)
    assert info["step_taken"] is False and info["rho"] == 0.0
    # the next step at most a tenth as long (the loss overflowed): λ ≥ ‖g‖/(0.1‖s‖), s = (|H| + λI)⁻¹b
    s = b / (np.abs(np.diag(H)) + 0.5)
    assert opt.damping == pytest.approx(np.linalg.norm(b) / (0.1 * np.linalg.norm(s)), rel=1e-12)
    assert new is p0


# ---------------------------------------------------------------------------
# settings as arguments; HVP counts from the solver's stats
# ---------------------------------------------------------------------------


def test_take_step_uses_the_settings_it_is_given(xp):
    model = make_model(xp)
    params = model.params
    d = from_numpy(xp, np.linspace(-1.0, 1.0, 30) * 0.1)
    loss0 = 0.5 * float(np.sum(to_numpy(model.residuals(params, None)) ** 2))
    new, info, finite = _common.take_step(params, d, model, None, loss0, "squared", lr=0.25, line_search=False)
    assert finite and info["lr"] == 0.25 and info["step_taken"]
    np.testing.assert_array_equal(to_numpy(new), to_numpy(params) - 0.25 * to_numpy(d))
    new, info, finite = _common.take_step(params, d, model, None, loss0, "squared", lr=0.5, line_search=True)
    grid = [0.5 * 2.0**-k for k in range(31)]  # lr scales the grid
    losses = [0.5 * float(np.sum(to_numpy(model.residuals(params - eta * d, None)) ** 2)) for eta in grid]
    assert info["step_taken"] and info["lr"] == grid[int(np.argmin(losses))]
    assert info["line_search_evaluations"] <= 31  # stops early in the linear regime (test_line_search.py)


@pytest.mark.parametrize("method,adapt", [("series", False), ("lanczos", False), ("series", True)])
def test_saddle_free_newton_counts_every_hvp(xp, method, adapt):
    probe = Probe(make_model(xp))  # the shapes of the other tests: JAX reuses their compiled ops
    opt = SaddleFreeNewton(damping=0.2, terms=6, method=method, adapt_damping=adapt)
    _, info = opt.step(probe.params, probe, None)
    assert info["hvps"] == probe.calls["hvp"] >= 6
