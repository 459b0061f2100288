"""natgrad.optim.fit: history, checkpoints, resume and Ctrl-C; and the checkpoint
files of natgrad.backend.io."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from helpers import from_numpy, to_numpy
from natgrad import backend
from natgrad.backend import io
from natgrad.optim import ENGD, SPRING, Adam, GradientFlow, fit
from test_optim import make_model
from test_optim_state import CONFIGS, Probe, batch_of

#: the backends on which resuming must be bit-identical (CPU float64)
RESUME_BACKENDS = ("numpy", "torch", "jax", "array_api_strict")


def _model_for(xp, kind):
    return make_model(xp, loss=kind)


def _fit(factory, model, steps, **kw):
    return fit(factory(), model, batch_of, steps, progress=False, **kw)


def leftovers(folder, name="run.npz"):
    """Files in ``folder`` other than the checkpoint (temporary files left behind)."""
    return sorted(f for f in os.listdir(folder) if f != name)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_resumed_run_equals_the_uninterrupted_one(xp, backend_name, name, tmp_path):
    if backend_name not in RESUME_BACKENDS:
        pytest.skip("bit-identity is promised on CPU backends")
    factory, kind = CONFIGS[name]
    model = _model_for(xp, kind)
    path = tmp_path / "run.npz"
    straight, hist = _fit(factory, model, 10)
    _, first = _fit(factory, model, 5, checkpoint=path)
    assert first["step"] == [1, 2, 3, 4, 5]
    resumed, joined = _fit(factory, model, 10, checkpoint=path, resume=True)
    np.testing.assert_array_equal(to_numpy(resumed), to_numpy(straight))
    assert joined["step"] == list(range(1, 11))
    assert joined["loss"] == hist["loss"] and joined["lr"] == hist["lr"]
    assert joined["elapsed"] == sorted(joined["elapsed"])  # time accumulates over the runs
    assert joined["interrupted"] is False
    assert leftovers(tmp_path) == []


class Interrupting(Probe):
    """Raises KeyboardInterrupt once, at call ``at`` of ``method``."""

    def __init__(self, model, method, at):
        super().__init__(model, method, at, KeyboardInterrupt)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_ctrl_c_returns_the_finished_steps_and_leaves_a_valid_checkpoint(xp, backend_name, name, tmp_path):
    if backend_name not in ("numpy", "torch"):
        pytest.skip("numpy and torch cover the Ctrl-C path; resume covers the rest")
    factory, kind = CONFIGS[name]
    model = _model_for(xp, kind)
    # the calls made by the end of each step, and the parameters after each step
    probe, calls, after = Probe(model), {}, {}

    def note(step, params, info):
        calls[step], after[step] = dict(probe.calls), to_numpy(params)

    straight, _ = fit(factory(), probe, batch_of, 10, progress=False, callback=note)
    method = max(probe.calls, key=probe.calls.get)  # the residuals of a line search, the HVPs, ...
    in_step_4 = calls[4][method] - calls[3][method]
    at = calls[3][method] + max(1, in_step_4 // 2)  # inside step 4 (in its line search, for ENGD)
    path = tmp_path / "run.npz"
    params, hist = fit(factory(), Interrupting(model, method, at), batch_of, 10, progress=False,
                       checkpoint=path, checkpoint_every=2)
    assert hist["interrupted"] is True
    assert hist["step"] == [1, 2, 3]
    np.testing.assert_array_equal(to_numpy(params), after[3])
    arrays, meta = io.load_checkpoint(path)
    assert meta["step"] == 3 and meta["history"]["step"] == [1, 2, 3]
    np.testing.assert_array_equal(arrays["params"], after[3])
    resumed, joined = fit(factory(), model, batch_of, 10, progress=False, checkpoint=path, resume=True)
    np.testing.assert_array_equal(to_numpy(resumed), to_numpy(straight))
    assert joined["step"] == list(range(1, 11)) and joined["interrupted"] is False


def test_ctrl_c_in_the_callback_or_metric_keeps_the_recorded_steps(tmp_path):
    xp = pytest.importorskip("array_api_compat.numpy")
    model = make_model(xp)

    def callback(step, params, info):
        if step == 4:
            raise KeyboardInterrupt

    params, hist = fit(ENGD(), model, None, 10, progress=False, callback=callback, checkpoint=tmp_path / "a.npz")
    assert hist["step"] == [1, 2, 3, 4] and hist["interrupted"] is True
    assert io.load_checkpoint(tmp_path / "a.npz")[1]["step"] == 4

    def metric(params):
        metric.calls += 1
        if metric.calls == 4:  # step 0, 1, 2 recorded; interrupted evaluating step 3's
            raise KeyboardInterrupt
        return 1.0

    metric.calls = 0
    _, hist = fit(ENGD(), model, None, 10, progress=False, metric=metric)
    assert hist["step"] == [1, 2, 3] and hist["metric_step"] == [0, 1, 2]
    assert len(hist["metric"]) == len(hist["metric_elapsed"]) == 3


def test_checkpoints_are_written_every_k_steps_and_at_the_end(tmp_path):
    xp = pytest.importorskip("array_api_compat.numpy")
    model = make_model(xp)
    path = tmp_path / "run.npz"
    seen = []

    def callback(step, params, info):
        seen.append(io.load_checkpoint(path)[1]["step"] if path.exists() else None)

    fit(Adam(lr=0.01), model, None, 7, progress=False, callback=callback, checkpoint=path, checkpoint_every=3)
    assert seen == [None, None, 3, 3, 3, 6, 6]
    arrays, meta = io.load_checkpoint(path)
    assert meta["step"] == 7 and meta["optimizer"] == "Adam" and meta["format"] == "natgrad.optim.fit checkpoint"
    assert sorted(arrays) == ["params", "state.m", "state.v"]
    # the file is a plain npz with JSON: readable without natgrad and without pickles
    with np.load(path, allow_pickle=False) as raw:
        assert json.loads(raw["__metadata__"].tobytes())["state"]["steps"] == 7
    # stopped early by the callback: saved at the stop
    fit(Adam(lr=0.01), model, None, 50, progress=False, callback=lambda s, p, i: s == 5, checkpoint=path)
    assert io.load_checkpoint(path)[1]["step"] == 5


def test_resume_without_a_file_starts_afresh_and_with_one_uses_it(tmp_path):
    xp = pytest.importorskip("array_api_compat.numpy")
    model = make_model(xp)
    path = tmp_path / "run.npz"
    start = model.params * 0.5
    p1, h1 = fit(GradientFlow(lr=0.5), model, None, 4, progress=False, params=start, checkpoint=path, resume=True)
    assert h1["step"] == [1, 2, 3, 4] and path.exists()
    direct, _ = fit(GradientFlow(lr=0.5), model, None, 4, progress=False, params=start)
    np.testing.assert_array_equal(p1, direct)
    # with the file: its parameters win over params=, the steps are numbered on
    p2, h2 = fit(GradientFlow(lr=0.5), model, None, 6, progress=False, params=model.params, checkpoint=path,
                 resume=True)
    assert h2["step"] == [1, 2, 3, 4, 5, 6]
    direct6, _ = fit(GradientFlow(lr=0.5), model, None, 6, progress=False, params=start)
    np.testing.assert_array_equal(p2, direct6)
    # already at the last step: nothing runs, the model is not called
    probe = Probe(model)
    p3, h3 = fit(GradientFlow(lr=0.5), probe, None, 6, progress=False, checkpoint=path, resume=True)
    assert sum(probe.calls.values()) == 0 and h3["step"] == h2["step"]
    np.testing.assert_array_equal(p3, p2)
    # params= without resume: a new history from step 1
    _, h4 = fit(GradientFlow(lr=0.5), model, None, 2, progress=False, params=p3)
    assert h4["step"] == [1, 2]


def test_a_metric_is_recorded_across_a_resume(tmp_path):
    xp = pytest.importorskip("array_api_compat.numpy")
    model = make_model(xp)
    path = tmp_path / "run.npz"
    norm = lambda p: float(np.linalg.norm(p))  # noqa: E731
    fit(ENGD(), model, None, 4, progress=False, metric=norm, metric_every=2, checkpoint=path)
    _, hist = fit(ENGD(), model, None, 8, progress=False, metric=norm, metric_every=2, checkpoint=path,
                  resume=True)
    assert hist["metric_step"] == [0, 2, 4, 6, 8]


def test_fit_checks_its_arguments_before_the_first_step(tmp_path):
    xp = pytest.importorskip("array_api_compat.numpy")
    model = Probe(make_model(xp))
    bad = [
        (dict(checkpoint=tmp_path / "missing" / "run.npz"), FileNotFoundError, "does not exist"),
        (dict(checkpoint=tmp_path), IsADirectoryError, "must name a file"),
        (dict(checkpoint=3), TypeError, "checkpoint must be a file path"),
        (dict(checkpoint=tmp_path / "a.npz", checkpoint_every=0), ValueError, "checkpoint_every must be positive"),
        (dict(checkpoint=tmp_path / "a.npz", checkpoint_every=2.5), TypeError, "checkpoint_every must be an int"),
        (dict(resume=True), ValueError, "resume=True needs checkpoint="),
        (dict(metric_every=0), ValueError, "metric_every must be positive"),
        (dict(time_budget=-1.0), ValueError, "time_budget must be a finite positive"),
        (dict(callback=3), TypeError, "callback must be callable"),
    ]
    for kwargs, error, message in bad:
        with pytest.raises(error, match=message):
            fit(ENGD(), model, None, 3, progress=False, **kwargs)
    with pytest.raises(TypeError, match="checkpoint needs an optimizer with state_dict"):
        fit(_NoState(), model, None, 3, progress=False, checkpoint=tmp_path / "a.npz")
    assert sum(model.calls.values()) == 0 and os.listdir(tmp_path) == []


class _NoState:
    def step(self, params, model, batch):
        return params, {"loss": 0.0}


def test_resuming_into_another_optimiser_or_model_is_refused(tmp_path):
    xp = pytest.importorskip("array_api_compat.numpy")
    model = make_model(xp)
    path = tmp_path / "run.npz"
    fit(SPRING(), model, None, 2, progress=False, checkpoint=path)
    with pytest.raises(ValueError, match=r"does not fit this optimizer: .*state\['optimizer'\] is 'SPRING'"):
        fit(Adam(), model, None, 4, progress=False, checkpoint=path, resume=True)
    with pytest.raises(ValueError, match=r"holds params .*\(30,\).* but the model's are .*\(12,\)"):
        fit(SPRING(), make_model(xp, p=12), None, 4, progress=False, checkpoint=path, resume=True)
    path.write_text("not a checkpoint")
    with pytest.raises(io.CheckpointError, match="not a readable natgrad checkpoint"):
        fit(SPRING(), model, None, 4, progress=False, checkpoint=path, resume=True)


def test_time_budget_counts_the_whole_run(tmp_path):
    xp = pytest.importorskip("array_api_compat.numpy")
    model = make_model(xp)
    path = tmp_path / "run.npz"
    _, h = fit(Adam(), model, None, 3, progress=False, checkpoint=path)
    # a budget the first run already used up: the resumed run takes no step
    _, h2 = fit(Adam(), model, None, 100, progress=False, checkpoint=path, resume=True,
                time_budget=h["elapsed"][-1] / 2)
    assert h2["step"] == [1, 2, 3]


# ---------------------------------------------------------------------------
# natgrad.backend.io
# ---------------------------------------------------------------------------


def test_checkpoint_round_trip_in_the_namespace_of_like(xp, tmp_path):
    rng = np.random.default_rng(3)
    a, k = rng.standard_normal(5), np.arange(4, dtype=np.int64)
    path = tmp_path / "c.npz"
    like = from_numpy(xp, np.zeros(2))
    io.save_checkpoint(path, {"a": from_numpy(xp, a), "k": from_numpy(xp, k)}, {"note": "x", "nan": float("nan")})
    arrays, meta = io.load_checkpoint(path, like=like)
    np.testing.assert_array_equal(to_numpy(arrays["a"]), a)
    np.testing.assert_array_equal(to_numpy(arrays["k"]), k)
    assert to_numpy(arrays["k"]).dtype == np.int64
    assert meta["note"] == "x" and np.isnan(meta["nan"])
    assert backend.namespace(arrays["a"]) is backend.namespace(like)


def test_a_failed_write_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "run.npz"
    io.save_checkpoint(path, {"x": np.ones(3)}, {"step": 1})

    for exc in (OSError("disk full"), KeyboardInterrupt()):
        def broken(f, **arrays):
            f.write(b"PK partial")
            raise exc

        monkeypatch.setattr(io.numpy, "savez", broken)
        with pytest.raises(type(exc)):
            io.save_checkpoint(path, {"x": np.zeros(3)}, {"step": 2})
        monkeypatch.undo()
        arrays, meta = io.load_checkpoint(path)
        assert meta == {"step": 1} and np.array_equal(arrays["x"], np.ones(3))
        assert leftovers(tmp_path) == []


def test_load_checkpoint_refuses_pickles_and_foreign_files(tmp_path):
    pickled = tmp_path / "p.npz"
    np.savez(pickled, obj=np.array([{"a": 1}], dtype=object), __metadata__=np.frombuffer(b"{}", np.uint8))
    with pytest.raises(io.CheckpointError, match="npz without pickles"):
        io.load_checkpoint(pickled)
    plain = tmp_path / "plain.npz"
    np.savez(plain, x=np.ones(2))
    with pytest.raises(io.CheckpointError, match="no '__metadata__' entry"):
        io.load_checkpoint(plain)
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        io.load_checkpoint(tmp_path / "none.npz")
    with pytest.raises(ValueError, match="reserved name"):
        io.save_checkpoint(tmp_path / "r.npz", {"__metadata__": np.ones(1)}, {})
    with pytest.raises(TypeError, match=r"arrays\['x'\] must be an array"):
        io.save_checkpoint(tmp_path / "r.npz", {"x": [1.0]}, {})


def test_split_and_join_arrays_round_trip():
    tree = {"steps": 3, "m": np.ones(2), "cache": [np.zeros(1), None, [np.arange(2.0)]], "key": ("a", 1)}
    skeleton, arrays = io.split_arrays(tree, "state")
    assert sorted(arrays) == ["state.cache.0", "state.cache.2.0", "state.m"]
    back = io.join_arrays(json.loads(json.dumps(skeleton)), arrays)
    assert back["steps"] == 3 and back["key"] == ["a", 1] and back["cache"][1] is None
    np.testing.assert_array_equal(back["cache"][2][0], np.arange(2.0))
    with pytest.raises(TypeError, match="keys must be str"):
        io.split_arrays({1: 2})
    with pytest.raises(TypeError, match="only arrays, numbers"):
        io.split_arrays({"f": object()})
    with pytest.raises(io.CheckpointError, match="no array 'state.m'"):
        io.join_arrays(skeleton, {})


def test_progress_bar_shows_the_true_total_and_the_name(tmp_path, capsys):
    """The bar counts to ``steps`` (a resumed run from its checkpoint's step),
    labelled by ``desc`` or else the optimiser's class name."""
    pytest.importorskip("tqdm")
    model = make_model(np, loss="squared")
    fit(GradientFlow(lr=0.1), model, None, 7, desc="ENGD-W (test)")
    err = capsys.readouterr().err
    assert "ENGD-W (test)" in err and "0/7" in err and "7/7" in err
    assert "GradientFlow" not in err
    path = tmp_path / "run.npz"
    fit(GradientFlow(lr=0.1), model, None, 3, progress=False, checkpoint=path)
    fit(GradientFlow(lr=0.1), model, None, 9, checkpoint=path, resume=True)
    err = capsys.readouterr().err
    assert "GradientFlow" in err and "3/9" in err and "9/9" in err and "0/9" not in err
    with pytest.raises(TypeError, match="desc must be a string"):
        fit(GradientFlow(lr=0.1), model, None, 2, progress=False, desc=3)
