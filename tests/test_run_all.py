"""The summary table of ``benchmarks/run_all.py``: parsing and ``--collect``.

The benchmarks themselves are not run here (they take minutes); these tests
feed the parsers the text the scripts print and write, so that a change in a
result's layout that the summary no longer reads fails here, not silently.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import run_all  # noqa: E402

ADAPTERS_MD = """\
# Autodiff adapters

## 1. Adapter overhead vs the raw framework call (goal ≤ 10 %)

| framework | call | raw [s] | adapter [s] | overhead [%] |
|---|---|---|---|---|
| PyTorch | jacobian (pointwise) | 0.302 | 0.2989 | -1.026 |
| PyTorch | hvp | 0.50 | 0.60 | 20.0 |
| JAX | jvp | 0.03992 | 0.03993 | 0.02659 |

## 2. Jacobian (N × P) of the residuals, goal ≤ 1.0 s

| Laplacian inside the residual | PyTorch [s] | JAX [s] | PyTorch / JAX |
|---|---|---|---|
| forward Laplacian | 0.3113 | 0.1982 | 1.571 |
| Hessian trace | 1.3922 | 0.2729 | 5.1 |
"""


def test_summary_lines_are_parsed_and_verdicts_normalised():
    out = "noise\nSUMMARY|pinn: ENGD-W step|2.1 s|2.6 s|0.81|≤ 1.0|met\nSUMMARY|x|1|2|0.5|g|NOT met\n"
    rows = run_all.parse_summary_lines(out)
    assert [r.cells() for r in rows] == [
        ["pinn: ENGD-W step", "2.1 s", "2.6 s", "0.81", "≤ 1.0", "yes"],
        ["x", "1", "2", "0.5", "g", "no"],
    ]


def test_adapters_rows_report_worst_overhead_and_jacobian_goal():
    rows = run_all._adapters(ADAPTERS_MD)
    by_name = {r.benchmark: r for r in rows}
    torch_row = next(r for name, r in by_name.items() if name.startswith("adapters: PyTorch adapter"))
    assert "hvp" in torch_row.benchmark and torch_row.met == "no"  # 20 % > 10 %
    jax_row = next(r for name, r in by_name.items() if name.startswith("adapters: JAX adapter"))
    assert jax_row.met == "yes"
    fwd = by_name["adapters: PINN Jacobian (N × P), forward Laplacian"]
    hess = by_name["adapters: PINN Jacobian (N × P), Hessian trace"]
    assert (fwd.met, hess.met) == ("yes", "no")  # 1.39 s > 1.0 s


def test_collect_reads_summary_files_before_markdown(tmp_path, monkeypatch):
    monkeypatch.setattr(run_all, "RESULTS", tmp_path)
    monkeypatch.setattr(run_all, "HERE", tmp_path / "benchmarks")
    (tmp_path / "adapters.md").write_text(ADAPTERS_MD)
    (tmp_path / "pinn.summary").write_text("SUMMARY|pinn: race|1e-4|1e-2|100|≥ 100×|yes\n")
    (tmp_path / "pinn.md").write_text("# nothing parseable\n")
    os.utime(tmp_path / "pinn.md", (1_000_000, 1_000_000))  # older than the SUMMARY lines
    # a script that wrote its markdown after run_all kept its SUMMARY lines: the markdown wins
    (tmp_path / "adapters.summary").write_text("SUMMARY|stale|1|2|3|g|no\n")
    os.utime(tmp_path / "adapters.summary", (1_000_000, 1_000_000))
    monkeypatch.setattr(Path, "relative_to", lambda self, other: self)  # paths outside the repo
    adapters = run_all.collect_one("adapters", quick=False)
    pinn = run_all.collect_one("pinn", quick=False)
    missing = run_all.collect_one("sfn", quick=False)
    assert len(adapters.rows) == 4 and not adapters.error
    assert [r.cells() for r in pinn.rows] == [["pinn: race", "1e-4", "1e-2", "100", "≥ 100×", "yes"]]
    assert missing.error and not missing.rows
    text = run_all.summary_markdown([adapters, pinn, missing], quick=False, collected=True)
    assert "goals met: 3 of 5" in text and "collected" in text


@pytest.mark.parametrize("verdict, expected", [("yes", "yes"), ("NOT met", "no"), ("met (1.2×)", "yes"),
                                               ("not run; see pinn_peer.md", "not run; see pinn_peer.md")])
def test_met_normalisation(verdict, expected):
    assert run_all._met(verdict) == expected


HMATRIX_MD = """\
Kernel exp(−‖x − y‖). Goals at n = 20k: build ≤ 30 s, storage ≤ 10% of dense, matvec ≥ 8× faster than dense; at 100k storage ≤ 3% and peak memory ≤ 2 GB; fitted exponents ≤ 1.2.

## Scaling

| n | build s | storage / dense | H MiB | H matvec ms | dense matvec ms | speed-up |
|---|---|---|---|---|---|---|
| 20000 | 14.7 | 9.5% | 589 | 9.1 | 76.2 | 8.4 |
| 100000 | skipped: projected past the time/memory budget |  |  |  |  |  |

Fitted exponents (log-log least squares over n = 5000..50000): storage ∝ n^1.33, matvec time ∝ n^1.15.
"""


def test_hmatrix_rows_judge_each_goal():
    rows = {r.benchmark: r for r in run_all._hmatrix(HMATRIX_MD)}
    assert rows["hmatrix: build, n = 20k, exp(−r), eps 1e-6"].met == "yes"
    assert rows["hmatrix: storage, n = 20k"].met == "yes"
    assert rows["hmatrix: matvec vs dense matvec, n = 20k"].met == "yes"
    assert rows["hmatrix: n = 100k"].met == "no"  # skipped is not met
    assert rows["hmatrix: fitted exponents in n (storage, matvec)"].met == "no"  # 1.33 > 1.2


def test_hmatrix_rows_judge_storage_and_peak_memory_at_100k():
    text = HMATRIX_MD.replace(
        "| 100000 | skipped: projected past the time/memory budget |  |  |  |  |  |",
        "| 100000 | 190.0 | 2.9% | 2300 | 60.0 | - | - |",
    )
    text = text.replace("| n | build s | storage / dense | H MiB | H matvec ms | dense matvec ms | speed-up |",
                        "| n | build s | storage / dense | H MiB | H matvec ms | dense matvec ms | peak RSS GB |")
    text = text.replace("| 20000 | 14.7 | 9.5% | 589 | 9.1 | 76.2 | 8.4 |", "| 20000 | 14.7 | 9.5% | 589 | 9.1 | 76.2 | 1.1 |")
    rows = {r.benchmark: r for r in run_all._hmatrix(text.replace("| - | - |", "| - | 2.6 |"))}
    assert rows["hmatrix: storage, n = 100k"].met == "yes"  # 2.9 % ≤ 3 %
    assert rows["hmatrix: peak memory of the build, n = 100k"].met == "no"  # 2.6 GB > 2 GB
    rows = {r.benchmark: r for r in run_all._hmatrix(text.replace("| - | - |", "| - | 1.8 |"))}
    assert rows["hmatrix: peak memory of the build, n = 100k"].met == "yes"
