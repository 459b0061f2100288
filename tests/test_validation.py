"""natgrad.validation: the argument checks and the user-callable wrapper shared by every layer."""

from __future__ import annotations

import math

import numpy as np
import pytest

from helpers import to_numpy
from natgrad import validation as v


# ---------------------------------------------------------------------------
# scalars
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "check, good, converted",
    [
        (v.finite_real, -3, -3.0),
        (v.nonnegative, 0, 0.0),
        (v.positive, np.float32(0.25), 0.25),
        (v.fraction, 0.0, 0.0),
        (v.positive_int, np.int64(7), 7),
    ],
)
def test_scalar_checks_convert_to_python_numbers(check, good, converted):
    out = check(good, "arg")
    assert out == converted and type(out) is type(converted)


@pytest.mark.parametrize(
    "check, bad, error, words",
    [
        (v.finite_real, math.nan, ValueError, "arg must be finite"),
        (v.finite_real, "1", TypeError, "arg must be a real number, got str"),
        (v.nonnegative, -1e-300, ValueError, "arg must be a finite non-negative number"),
        (v.nonnegative, math.inf, ValueError, "non-negative"),
        (v.positive, 0.0, ValueError, "arg must be a finite positive number, got 0.0"),
        (v.positive, True, TypeError, "got bool"),
        (v.fraction, 1.0, ValueError, "arg must lie in [0, 1)"),
        (v.fraction, -0.1, ValueError, "[0, 1)"),
        (v.positive_int, 3.0, TypeError, "arg must be an int, got float"),
        (v.positive_int, 0, ValueError, "arg must be positive, got 0"),
        (v.positive_int, False, TypeError, "got bool"),
        (v.optional_positive, -2.0, ValueError, "positive"),
        (v.optional_positive_int, -2, ValueError, "positive"),
    ],
)
def test_scalar_checks_name_the_argument(check, bad, error, words):
    with pytest.raises(error) as err:
        check(bad, "arg")
    assert words in str(err.value)


def test_optional_checks_accept_none():
    assert v.optional_positive(None, "lr") is None
    assert v.optional_positive_int(None, "maxiter") is None
    assert v.callable_arg(None, "callback", optional=True) is None


def test_choice_lists_the_options():
    assert v.choice("heun", ("euler", "heun"), "method") == "heun"
    with pytest.raises(ValueError, match=r"method must be one of 'euler', 'heun'; got 'rk5'"):
        v.choice("rk5", ("euler", "heun"), "method")
    with pytest.raises(ValueError, match="got None"):
        v.choice(None, ("euler",), "method")


def test_callable_arg():
    f = lambda x: x  # noqa: E731
    assert v.callable_arg(f, "hvp") is f
    with pytest.raises(TypeError, match="hvp must be callable, got int"):
        v.callable_arg(3, "hvp")
    with pytest.raises(TypeError, match="callback must be callable, got NoneType"):
        v.callable_arg(None, "callback")


# ---------------------------------------------------------------------------
# arrays, on every backend
# ---------------------------------------------------------------------------


def test_array_checks(xp):
    b = xp.asarray([1.0, 2.0, 3.0])
    assert v.array(b, "b") is b
    assert v.vector(b, "g", 3) is b
    assert v.rhs(b, 3) is b
    assert v.rhs(xp.ones((3, 2)), 3) is not None
    assert v.same_shape(xp.zeros(3), b, "x0", "b") is not None
    with pytest.raises(TypeError, match="b must be an array, got list"):
        v.array([1.0], "b")
    with pytest.raises(ValueError, match="g must have shape \\(4,\\), got \\(3,\\)"):
        v.vector(b, "g", 4)
    with pytest.raises(ValueError, match="must be a vector of shape"):
        v.vector(xp.ones((3, 1)), "g")
    with pytest.raises(ValueError, match="must be a vector of shape"):
        v.vector(xp.ones((0,)), "g")
    with pytest.raises(ValueError, match=r"b must have shape \(3,\), got \(3, 2\)"):
        v.rhs(xp.ones((3, 2)), 3, allow_block=False)
    with pytest.raises(ValueError, match="x0 must have the shape of b"):
        v.same_shape(xp.zeros(2), b, "x0", "b")
    bad = xp.asarray([1.0, math.inf, 3.0])
    for check in (lambda: v.finite(bad, "b"), lambda: v.vector(bad, "b"), lambda: v.rhs(bad, 3),
                  lambda: v.same_shape(bad, b, "b", "ref")):
        with pytest.raises(ValueError, match="b contains NaN or Inf"):
            check()


# ---------------------------------------------------------------------------
# the user-callable wrapper, under injected faults at call k
# ---------------------------------------------------------------------------


def _faulty(xp, fault, at):
    """``v -> 2 v`` that misbehaves from call ``at`` on."""
    calls = {"n": 0}

    def fn(u):
        calls["n"] += 1
        y = 2.0 * u
        if calls["n"] < at:
            return y
        if fault == "nan":
            return y * math.nan
        if fault == "inf":
            return y + math.inf
        if fault == "shape":
            return y[:-1]
        if fault == "dtype":
            return xp.astype(y, xp.float32)
        if fault == "list":
            return [1.0, 2.0]
        if fault == "raise":
            raise RuntimeError("user code failed")
        raise AssertionError(fault)

    return fn


@pytest.mark.parametrize("at", [1, 2, 7])
@pytest.mark.parametrize(
    "fault, error, words",
    [
        ("nan", v.NonFiniteOutputError, "returned NaN or Inf"),
        ("inf", v.NonFiniteOutputError, "returned NaN or Inf"),
        ("shape", v.CallableOutputError, "returned shape (3,) for an input of shape (4,)"),
        ("dtype", TypeError, "returned dtype"),
        ("list", TypeError, "must return an array, got list"),
        ("raise", RuntimeError, "user code failed"),
    ],
)
def test_checked_callable_catches_a_fault_at_the_call_it_happens(xp, fault, error, words, at):
    f = v.CheckedCallable(_faulty(xp, fault, at), "hvp")
    u = xp.asarray([1.0, -2.0, 3.0, 0.5])
    for k in range(1, at):
        y = f(u)
        np.testing.assert_allclose(to_numpy(y), 2.0 * to_numpy(u), rtol=0)
        assert f.calls == k
    with pytest.raises(error) as err:
        f(u)
    assert words in str(err.value)
    if fault != "raise":
        assert f"hvp (call {at})" in str(err.value)
    if isinstance(err.value, v.CallableOutputError):
        assert (err.value.name, err.value.call) == ("hvp", at)


def test_checked_callable_never_checks_finiteness_when_told(xp):
    f = v.CheckedCallable(_faulty(xp, "nan", 1), "A", check_finite=False)
    y = f(xp.ones(3))
    assert bool(xp.all(xp.isnan(y)))


def test_checked_callable_checks_finiteness_once_with_first(xp):
    late = v.CheckedCallable(_faulty(xp, "nan", 2), "kernel", check_finite="first")
    late(xp.ones(3))
    assert bool(xp.all(xp.isnan(late(xp.ones(3)))))  # call 2 not checked
    early = v.CheckedCallable(_faulty(xp, "nan", 1), "kernel", check_finite="first")
    with pytest.raises(v.NonFiniteOutputError, match=r"kernel \(call 1\)"):
        early(xp.ones(3))


def test_checked_callable_out_shape_and_cast(xp):
    def kernel(X, Y):
        d = X[:, 0:1] - xp.reshape(Y[:, 0], (1, -1))
        return xp.astype(xp.exp(-(d * d)), xp.float32)

    K = v.CheckedCallable(kernel, "kernel", out_shape=lambda X, Y: (X.shape[0], Y.shape[0]),
                          dtype=xp.float64)
    X = xp.reshape(xp.linspace(0.0, 1.0, 5), (5, 1))
    Y = xp.reshape(xp.linspace(0.0, 2.0, 3), (3, 1))
    out = K(X, Y)
    assert out.dtype == xp.float64 and tuple(out.shape) == (5, 3)
    x, y = np.linspace(0, 1, 5), np.linspace(0, 2, 3)
    np.testing.assert_allclose(to_numpy(out), np.exp(-(x[:, None] - y[None, :]) ** 2), rtol=1e-6)
    wrong = v.CheckedCallable(kernel, "kernel", out_shape=lambda X, Y: (Y.shape[0], X.shape[0]))
    with pytest.raises(v.CallableOutputError, match=r"expected \(3, 5\)"):
        wrong(X, Y)


def test_checked_callable_refuses_another_library(xp, backend_name):
    if backend_name == "numpy":
        pytest.skip("needs a second library")
    f = v.CheckedCallable(lambda u: np.ones(3), "A")
    with pytest.raises(TypeError, match=r"A \(call 1\): output of A is a NumPy array"):
        f(xp.ones(3))


def test_checked_callable_validates_its_own_arguments():
    with pytest.raises(TypeError, match="hvp must be callable"):
        v.CheckedCallable(None, "hvp")
    with pytest.raises(ValueError, match="check_finite"):
        v.CheckedCallable(lambda u: u, "hvp", check_finite="always")


def test_checked_callable_out_shape_with_a_free_axis(xp):
    """``None`` in ``out_shape`` accepts any length there; the other axes and ndim are checked."""
    J = v.CheckedCallable(lambda p, n: xp.ones((n, p.shape[0])), "jacobian",
                          out_shape=lambda p, n: (None, p.shape[0]))
    assert tuple(J(xp.ones(3), 5).shape) == (5, 3)
    assert tuple(J(xp.ones(3), 2).shape) == (2, 3)
    wrong_p = v.CheckedCallable(lambda p, n: xp.ones((n, 2)), "jacobian",
                                out_shape=lambda p, n: (None, p.shape[0]))
    with pytest.raises(v.CallableOutputError, match=r"returned shape \(5, 2\).*\(expected \(any, 3\)\)"):
        wrong_p(xp.ones(3), 5)
    wrong_ndim = v.CheckedCallable(lambda p, n: xp.ones((n,)), "residuals",
                                   out_shape=lambda p, n: (None, p.shape[0]))
    with pytest.raises(v.CallableOutputError, match="expected"):
        wrong_ndim(xp.ones(3), 5)


def test_checked_callable_refuses_a_tracked_torch_output():
    """A user's HVP with a learnable parameter returns a tensor that requires
    grad: refused at that call, naming the callable and the call."""
    torch = pytest.importorskip("torch")
    from natgrad.backend import TracedArrayError

    w = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    calls = {"n": 0}

    def hvp(v):
        calls["n"] += 1
        return v * (w if calls["n"] == 2 else w.detach())

    checked = v.CheckedCallable(hvp, "hvp")
    x = torch.ones(3, dtype=torch.float64)
    assert torch.equal(checked(x), 2.0 * x)
    with pytest.raises(TracedArrayError, match=r"the output of hvp \(call 2\) is a PyTorch tensor that requires grad"):
        checked(x)
