"""Issue 18: every optimiser and ``fit`` under model faults, on every backend.

A model method (residuals, Jacobian, JVP/VJP, gradient, HVP) goes wrong at
its call 1, 2 or the last of a step: NaN, Inf, a wrong shape, a user's
exception, or a scale of 1e150.  The contract (``tests/faults.py``):

* NaN/Inf: the step is not taken — params come back unchanged (the same
  object), ``step_taken=False``, ``reason="nonfinite"``, the message names the
  model's method and the step — and the optimiser state is unchanged: the
  next healthy step equals the one a fresh twin takes;
* a wrong shape raises :class:`~natgrad.validation.CallableOutputError`
  naming ``model.<method>`` and the step, state unchanged;
* the user's own exception passes through, state unchanged;
* 1e150: whatever happens, no foreign exception, no warning, finite params;
* never a floating-point warning, never an exception from a library underneath.

``fit`` stops on a non-finite loss, on divergence and on a run of steps not
taken, and says why in ``history["stopped"]``/``history["reason"]``.
"""

from __future__ import annotations

import numpy as np
import pytest

from helpers import from_numpy, to_numpy
from natgrad.adapters.callables import CallableModel
from natgrad.optim import ENGD, Adam, GradientFlow, SaddleFreeNewton, fit
from natgrad.validation import CallableOutputError
from test_optim import make_model
from test_optim_state import CONFIGS, same
from tests.faults import CallCounter, FaultyModel, InjectedFault, assert_finite, outcome

KINDS = ("nan", "inf", "shape", "raise", "huge")
#: optimisers for which every call of the model in a step is a stage of the update
STAGED = ("flow-", "adam")
#: methods with an array output whose shape the optimiser checks
SHAPED = ("residuals", "jacobian", "jvp", "vjp", "loss_and_grad", "hvp")


def callable_model(xp, kind, **kw):
    """The tanh regression of test_optim behind the CallableModel adapter."""
    m = make_model(xp, loss=kind, **kw)
    return CallableModel(residuals=m.residuals, jacobian=m.jacobian, jvp=m.jvp, vjp=m.vjp,
                         loss_and_grad=m.loss_and_grad, hvp=m.hvp, params=m.params, loss=kind)


def _one_case(name, factory, saved, params, model, method, kind, at, clean):
    """Step 2 with ``method`` faulty from its call ``at`` of the step; check the contract."""
    opt = factory()
    opt.load_state_dict(saved)
    faulty = FaultyModel(model, method, kind, at)
    where = f"{name}: {kind} at {method} call {at}"
    # a residual vector and a Jacobian that disagree in length: either may be named
    names = ("model.residuals", "model.jacobian") if method in ("residuals", "jacobian") else (f"model.{method}",)
    result = outcome(lambda: opt.step(params, faulty, None), *names, "model's")
    if result.raised:
        err = result.error
        if kind == "raise":
            assert isinstance(err, InjectedFault), where
        else:
            assert kind == "shape", f"{where}: raised {type(err).__name__}: {err}"
            assert isinstance(err, CallableOutputError), where
            assert any(n in str(err) for n in names) and "step 2" in str(err), f"{where}: {err}"
        same(opt.state_dict(), saved, where)
    else:
        new, info = result.value
        assert_finite(new, f"{where}: params")
        # (SaddleFreeNewton's second gradient call only reads the loss at the trial point)
        unused = name.startswith("sfn") and method == "loss_and_grad" and at > 1
        if kind == "shape" and method in SHAPED and faulty.fired and not unused:
            raise AssertionError(f"{where}: a wrong shape was not refused ({info})")
        essential = at == 1 or name.startswith(STAGED)
        if kind in ("nan", "inf") and essential and faulty.fired:
            assert info["step_taken"] is False and info["reason"] == "nonfinite", f"{where}: {info}"
            assert f"model.{method}" in info["message"] and "step 2" in info["message"], f"{where}: {info}"
        if info.get("reason") == "nonfinite":
            assert new is params and info["lr"] == 0.0, where
            same(opt.state_dict(), saved, where)
        else:
            return  # a legitimate step (a fault in a trial point of the line search, 1e150)
    # the optimiser is exactly as it was: its next healthy step is the twin's
    np.testing.assert_array_equal(to_numpy(opt.step(params, model, None)[0]), to_numpy(clean), err_msg=where)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_every_optimiser_is_honest_under_model_faults(xp, name):
    factory, loss = CONFIGS[name]
    model = callable_model(xp, loss)
    first = factory()
    params, _ = first.step(model.params, model, None)  # a state worth keeping (momentum, moments, ...)
    saved = first.state_dict()
    twin, counter = factory(), CallCounter(model)
    twin.load_state_dict(saved)
    clean, _ = twin.step(params, counter, None)
    cases = 0
    for method, count in counter.calls.items():
        for at in sorted({1, 2, count} & set(range(1, count + 1))):
            for kind in KINDS:
                if name == "engd-cg" and method == "residuals" and kind == "shape":
                    continue  # r of the wrong length meets the user's own vjp first: the user's error
                cases += 1
                _one_case(name, factory, saved, params, model, method, kind, at, clean)
    assert cases >= 5


@pytest.mark.parametrize("method", ["heun", "rk4"])
def test_a_later_stage_with_nan_rejects_the_whole_step(xp, method):
    model = callable_model(xp, "squared")
    opt = GradientFlow(lr=0.5, method=method)
    p0 = model.params
    stages = {"heun": 2, "rk4": 4}[method]
    for stage in range(2, stages + 1):
        faulty = FaultyModel(model, "loss_and_grad", "nan", stage, once=True)
        new, info = outcome(lambda: opt.step(p0, faulty, None)).value
        assert new is p0 and info["step_taken"] is False, info
        assert f"at stage {stage} of {method}" in info["message"], info["message"]
        assert faulty.calls == stages  # every stage ran; the whole step is refused
        assert opt.state_dict()["steps"] == 0
    new, info = opt.step(p0, model, None)
    assert info["step_taken"] and info["gradient_evaluations"] == stages


def test_the_loss_itself_nan_is_named(xp):
    model = callable_model(xp, "squared")
    for opt in (Adam(lr=0.1), GradientFlow(lr=0.1, method="rk4"), SaddleFreeNewton(damping=0.5)):
        faulty = FaultyModel(model, "loss_and_grad", "nan", 1, part=0)
        new, info = outcome(lambda: opt.step(model.params, faulty, None)).value
        assert info["step_taken"] is False and "the model's loss (model.loss_and_grad)" in info["message"], info
        assert opt.state_dict()["steps"] == 0


def test_a_wrong_dtype_from_the_model_is_a_type_error_naming_it(xp):
    model = callable_model(xp, "squared")

    class Float32Jacobian:
        loss = "squared"
        residuals = staticmethod(model.residuals)

        def jacobian(self, p, b):
            return xp.astype(model.jacobian(p, b), xp.float32)

    with pytest.raises(TypeError, match=r"model\.jacobian at ENGD step 1 returned dtype .*float32"):
        ENGD().step(model.params, Float32Jacobian(), None)


def test_the_culprit_is_named_not_an_internal_variable():
    xp = pytest.importorskip("array_api_compat.numpy")
    model = callable_model(xp, "squared")
    opt = ENGD()
    p = model.params
    for _ in range(2):
        p, _ = opt.step(p, model, None)
    for solver in ("woodbury", "dense", "nystrom"):
        opt = ENGD(solver=solver, rank=6)
        opt.load_state_dict({"optimizer": "ENGD", "steps": 2})
        new, info = opt.step(p, FaultyModel(model, "jacobian", "nan"), None)
        assert info["message"].startswith("the model's Jacobian (model.jacobian) has NaN/Inf entries at step 3"), info
        assert "U " not in info["message"] and new is p


def test_an_overflowing_gram_matrix_is_a_rejection():
    xp = pytest.importorskip("array_api_compat.numpy")
    rng = np.random.default_rng(2)
    A, y = rng.standard_normal((5, 8)) * 1e160, rng.standard_normal(5)  # finite J, JJᵀ overflows
    model = CallableModel(residuals=lambda p, b: y - 0 * p[:5], jacobian=lambda p, b: A, params=np.zeros(8))
    for solver in ("woodbury", "dense"):
        opt = ENGD(solver=solver)
        new, info = outcome(lambda: opt.step(model.params, model, None)).value
        assert info["step_taken"] is False and "overflows" in info["message"], info
        assert "the model's Jacobian is too large at step 1" in info["message"] and opt.steps == 0


# ---------------------------------------------------------------------------
# fit stops on divergence and says why
# ---------------------------------------------------------------------------


def _flow_model(xp):
    """½‖Aθ − y‖² with λ_max(AᵀA) ≈ 6.3: GradientFlow diverges for lr > 0.32."""
    A = np.array([[2.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    y = np.array([1.0, 2.0, 3.0])
    A_, y_ = from_numpy(xp, A), from_numpy(xp, y)

    def loss_and_grad(p, b):
        r = A_ @ p - y_
        return 0.5 * xp.vecdot(r, r), xp.matrix_transpose(A_) @ r

    return CallableModel(residuals=lambda p, b: A_ @ p - y_, jacobian=lambda p, b: A_,
                         loss_and_grad=loss_and_grad, params=from_numpy(xp, np.zeros(2)))


def test_fit_stops_on_a_nonfinite_loss(xp):
    model = _flow_model(xp)
    straight, _ = fit(GradientFlow(lr=0.1), model, None, 4, progress=False)
    faulty = FaultyModel(model, "loss_and_grad", "nan", 5, part=0)
    params, h = outcome(lambda: fit(GradientFlow(lr=0.1), faulty, None, 50, progress=False)).value
    assert h["stopped"] == "nonfinite" and "step 5" in h["reason"], h["reason"]
    assert len(h["step"]) == 5 and np.isnan(h["loss"][-1]) and not h["interrupted"]
    np.testing.assert_array_equal(to_numpy(params), to_numpy(straight))  # the step with NaN was not taken


def test_fit_stops_when_the_loss_diverges(xp):
    model = _flow_model(xp)
    params, h = outcome(lambda: fit(GradientFlow(lr=0.5), model, None, 500, progress=False)).value
    assert h["stopped"] == "diverged" and "divergence=1e+06" in h["reason"], h["reason"]
    assert h["loss"][-1] > 1e6 * h["loss"][0] >= h["loss"][-2]  # stopped at the first loss past the factor
    assert_finite(params)
    _, h = fit(GradientFlow(lr=0.5), model, None, 500, progress=False, divergence=1e3)
    assert h["stopped"] == "diverged" and len(h["step"]) < 20
    # without the rule a diverging run goes on
    _, h = outcome(lambda: fit(GradientFlow(lr=0.5), model, None, 40, progress=False, divergence=None)).value
    assert h["stopped"] == "steps" and h["loss"][-1] > 1e12, h["reason"]
    # a converging run is not stopped
    _, h = fit(GradientFlow(lr=0.1), model, None, 30, progress=False)
    assert h["stopped"] == "steps" and len(h["step"]) == 30


def test_fit_stops_after_a_run_of_steps_not_taken(xp):
    model = callable_model(xp, "squared")
    faulty = FaultyModel(model, "jacobian", "nan", 3)  # from step 3 on, every step is refused
    params, h = outcome(lambda: fit(ENGD(), faulty, None, 100, progress=False, max_rejections=4)).value
    assert h["stopped"] == "rejected" and len(h["step"]) == 6, (h["stopped"], len(h["step"]))
    assert "4 steps in a row were not taken (steps 3 to 6)" in h["reason"]
    assert "the model's Jacobian (model.jacobian)" in h["reason"]
    # a transient fault does not stop the run
    faulty = FaultyModel(model, "jacobian", "nan", 3, once=True)
    _, h = fit(ENGD(), faulty, None, 6, progress=False, max_rejections=2)
    assert h["stopped"] == "steps" and len(h["step"]) == 6


def test_fit_validates_its_new_arguments():
    xp = pytest.importorskip("array_api_compat.numpy")
    model = _flow_model(xp)
    bad = [
        (dict(divergence=1.0), ValueError, "divergence must be above 1"),
        (dict(divergence=0.0), ValueError, "divergence must be"),
        (dict(divergence="big"), TypeError, "divergence"),
        (dict(divergence=float("nan")), ValueError, "divergence"),
        (dict(max_rejections=0), ValueError, "max_rejections must be positive"),
        (dict(max_rejections=2.5), TypeError, "max_rejections must be an int"),
        (dict(params=[0.0, 0.0]), TypeError, "params must be an array"),
        (dict(steps=0), ValueError, "steps must be positive"),
    ]
    for kwargs, error, message in bad:
        kwargs = {"steps": 3, **kwargs}
        with pytest.raises(error, match=message):
            fit(GradientFlow(), model, None, progress=False, **kwargs)


# ---------------------------------------------------------------------------
# the demo refuses bad flags before it trains
# ---------------------------------------------------------------------------


def test_demo_flags_are_checked_before_training(tmp_path, capsys, monkeypatch):
    import os

    from natgrad import demo

    def no_training(*args, **kwargs):
        raise AssertionError("the demo started training with bad flags")

    monkeypatch.setattr(demo, "train", no_training)
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    read_only.chmod(0o500)
    bad = [
        (["--plot", str(tmp_path / "missing" / "plot.png")], "the folder .* does not exist"),
        (["--plot", str(tmp_path)], "is a folder"),
        (["--plot", ""], "--plot must name a file"),
        (["--steps", "0"], "--steps must be a positive integer"),
        (["--steps", "-3"], "--steps must be a positive integer"),
        (["--steps", "soon"], "--steps must be a positive integer"),
        (["--max-seconds", "inf"], "--max-seconds must be a finite positive"),
        (["--max-seconds", "soon"], "--max-seconds: invalid float value"),
        (["--seconds", "60"], "--seconds was replaced by --steps"),
        (["--seed", "-1"], "--seed must be ≥ 0"),
        (["--quick", "--full"], "not allowed with argument"),
    ]
    if not os.access(read_only, os.W_OK):  # root can write anywhere
        bad.append((["--plot", str(read_only / "plot.png")], "is not writable"))
    for argv, message in bad:
        with pytest.raises(SystemExit) as exit_info:
            demo.main(argv)
        assert exit_info.value.code == 2, argv
        err = capsys.readouterr().err
        assert __import__("re").search(message, err), (argv, err)
    # a missing folder is fine with --no-plot; good flags parse
    args = demo.parse_args(["--no-plot", "--plot", str(tmp_path / "missing" / "p.png"), "--steps", "2"])
    assert args.no_plot and args.steps == {"ENGD-W": 2, "SPRING": 2, "Adam": 2}
    assert demo.parse_args(["--plot", str(tmp_path / "p.png")]).plot == str(tmp_path / "p.png")
