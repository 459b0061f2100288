"""``python -m natgrad.demo``: a step budget honoured exactly, errors that depend
only on the steps and the seed, the command line refused before training,
and a plot with a marker at every L2 evaluation.

Everything runs on a tiny configuration (a 5→4→1 network, a few points, a
few steps): the demo's code paths are the same at every size.
"""

from __future__ import annotations

import re

import pytest

torch = pytest.importorskip("torch")

from natgrad import demo  # noqa: E402

#: a configuration small enough for a test: 3, 4 and 7 steps
TINY = demo.Config((4,), 16, 8, {"ENGD-W": 3, "SPRING": 4, "Adam": 7}, n_test=64)


@pytest.fixture(scope="module")
def tiny_runs():
    """Two runs of the tiny configuration (the same seed)."""
    return [demo.train(TINY, progress=False, seed=1) for _ in range(2)]


def test_step_budget_is_honoured_exactly(tiny_runs):
    runs, problem = tiny_runs[0]
    assert [r.name for r in runs] == list(demo.METHODS)
    for run in runs:
        n = TINY.steps[run.name]
        assert run.steps == run.planned == n
        assert run.history["step"] == list(range(1, n + 1))  # the warm-up step is not one of them
        assert run.history["stopped"] == "steps" and not run.capped
        assert run.history["metric_step"][0] == 0 and run.history["metric_step"][-1] == n
        assert run.seconds == pytest.approx(sum(run.history["step_time"]))
        assert run.warmup > 0
    # every method starts from the same weights: the same error at step 0
    assert len({run.history["metric"][0] for run in runs}) == 1
    # an override changes the named method only
    override, _ = demo.train(TINY, steps={"Adam": 2}, progress=False, seed=1)
    assert [r.steps for r in override] == [3, 4, 2]


def test_two_runs_print_the_same_errors(tiny_runs):
    (first, _), (second, _) = tiny_runs
    for a, b in zip(first, second):
        assert a.l2 == b.l2, a.name  # bit for bit, whatever the times were
        assert a.history["metric"] == b.history["metric"], a.name
    # and the training did something: the errors moved from their start
    assert all(r.l2 != r.history["metric"][0] for r in first)


def test_budget_validates_overrides():
    assert demo.budget("default") == dict(demo.CONFIGS["default"].steps)
    with pytest.raises(ValueError, match="unknown method 'LBFGS'"):
        demo.budget(TINY, {"LBFGS": 3})
    with pytest.raises(ValueError, match="Adam needs a positive int"):
        demo.budget(TINY, {"Adam": 0})


def test_bad_steps_and_caps_are_refused_before_training(monkeypatch, capsys):
    def no_training(*args, **kwargs):
        raise AssertionError("the demo started training with bad flags")

    monkeypatch.setattr(demo, "train", no_training)
    steps_usage = "--steps must be a positive integer or METHOD=N pairs"
    bad = [
        (["--steps", "0"], steps_usage),
        (["--steps", "-3"], steps_usage),
        (["--steps", "1.5"], steps_usage),
        (["--steps", "many"], steps_usage),
        (["--steps", "ENGD-W=0"], steps_usage),
        (["--steps", "Adam="], steps_usage),
        (["--steps", "LBFGS=3"], steps_usage),
        (["--steps", "ENGD-W=3,Adam"], steps_usage),
        (["--max-seconds", "0"], "--max-seconds must be a finite positive"),
        (["--max-seconds", "nan"], "--max-seconds must be a finite positive"),
        (["--threads", "0"], "--threads must be ≥ 1"),
        (["--seconds", "60"], "--seconds was replaced by --steps"),
    ]
    for argv, message in bad:
        with pytest.raises(SystemExit) as exit_info:
            demo.main([*argv, "--no-plot"])
        assert exit_info.value.code == 2, argv
        err = capsys.readouterr().err
        assert message in err, (argv, err)
    args = demo.parse_args(["--steps", "engd-w=20, Adam=1000", "--no-plot"])
    assert args.steps == {"ENGD-W": 20, "Adam": 1000}
    assert demo.parse_args(["--steps", "7", "--no-plot"]).steps == dict.fromkeys(demo.METHODS, 7)
    assert demo.parse_args(["--no-plot"]).steps is None


def test_plot_has_a_marker_at_every_evaluation(tiny_runs, tmp_path):
    pytest.importorskip("matplotlib")
    runs, _ = tiny_runs[0]
    path = tmp_path / "plot.png"
    fig = demo._plot(runs, str(path), "tiny")
    assert path.stat().st_size > 0
    ax = fig.axes[0]
    lines = ax.get_lines()
    assert len(lines) == len(runs)
    for line, run in zip(lines, runs):
        assert line.get_marker() == "o", run.name
        assert list(line.get_xdata()) == run.history["metric_elapsed"]  # x: optimiser time
        assert list(line.get_ydata()) == run.history["metric"]
    assert "ENGD-W 3, SPRING 4, Adam 7" in ax.get_title()


@pytest.fixture
def tiny_main(monkeypatch):
    """``demo.main`` on the tiny configuration, restoring the threads and environment."""
    monkeypatch.setitem(demo.CONFIGS, "quick", TINY)
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    threads = torch.get_num_threads()
    yield demo.main
    torch.set_num_threads(threads)


def test_main_prints_steps_times_and_errors(tiny_main, tiny_runs, tmp_path, capsys):
    assert tiny_main(["--quick", "--no-progress", "--seed", "1", "--plot", str(tmp_path / "p.png")]) == 0
    out = capsys.readouterr().out
    assert "steps: ENGD-W 3, SPRING 4, Adam 7" in out
    rows = {m.group(1): m.groups()[1:] for m in re.finditer(
        r"^(ENGD-W|SPRING|Adam)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+(\S+)$", out, re.M)}
    assert {name: int(row[0]) for name, row in rows.items()} == TINY.steps
    runs, _ = tiny_runs[0]  # the same configuration and seed
    assert {r.name: f"{r.l2:.3e}" for r in runs} == {name: row[3] for name, row in rows.items()}
    assert "final relative L2 error: " in out and "convergence plot saved" in out


def test_a_time_cap_is_reported_as_such(tiny_main, capsys):
    assert tiny_main(["--quick", "--no-progress", "--no-plot", "--max-seconds", "1e-9"]) == 0
    out = capsys.readouterr().out
    for name, n in TINY.steps.items():
        assert f"* {name} hit --max-seconds 1e-09 after 1 of {n} steps" in out
