"""Tests of natgrad.linalg.result: SolveResult, SolveStatus, SolveError.

The solvers' statuses and stats are tested with each solver (test_krylov,
test_nystrom, test_series); this module tests the record itself, and that
every solver's result is one a program can read on every backend.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

import natgrad
from helpers import from_numpy, spd_matrix, symmetric_matrix
from natgrad.linalg import (
    SolveError,
    SolveResult,
    SolveStatus,
    cg,
    minres,
    neumann_solve,
    nystrom_pcg,
    saddle_free_solve,
)


def test_exported_from_natgrad_and_linalg():
    assert natgrad.SolveStatus is SolveStatus and natgrad.SolveError is SolveError
    assert {"SolveStatus", "SolveError", "SolveResult"} <= set(natgrad.__all__)
    assert {"SolveStatus", "SolveError", "SolveResult"} <= set(natgrad.linalg.__all__)


def test_status_is_a_string_enum():
    assert [s.value for s in SolveStatus] == [
        "converged", "maxiter", "stagnation", "indefinite", "singular", "diverged", "nonfinite",
    ]
    assert SolveStatus("diverged") is SolveStatus.DIVERGED
    assert SolveStatus.DIVERGED == "diverged" and str(SolveStatus.DIVERGED) == "diverged"
    with pytest.raises(ValueError):
        SolveStatus("exploded")


def test_result_fields_defaults_and_invariant():
    x = np.arange(3.0)
    res = SolveResult(x, False, 4, 0.5, "maxiter")
    assert res.status is SolveStatus.MAXITER  # a string is converted
    assert res.stats == {} and res.info == ""
    other = SolveResult(x, False, 4, 0.5, SolveStatus.MAXITER)
    assert other.stats is not res.stats  # no shared mutable default
    with pytest.raises(ValueError, match="contradicts status"):
        SolveResult(x, True, 4, 0.5, SolveStatus.MAXITER)
    with pytest.raises(ValueError, match="contradicts status"):
        SolveResult(x, False, 4, 0.5, SolveStatus.CONVERGED)
    with pytest.raises(ValueError, match="status must be one of"):
        SolveResult(x, False, 4, 0.5, "exploded")
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.status = SolveStatus.CONVERGED
    text = repr(SolveResult(x, True, 2, 1e-9, "converged", {"matvecs": 3}, "done"))
    assert "status='converged'" in text and "'matvecs': 3" in text and "shape=(3,)" in text


def test_raise_if_failed():
    x = np.zeros(2)
    ok = SolveResult(x, True, 1, 0.0, SolveStatus.CONVERGED)
    assert ok.raise_if_failed() is ok
    bad = SolveResult(x, False, 7, 2.0, SolveStatus.INDEFINITE, {"matvecs": 7}, "pᵀAp ≤ 0")
    with pytest.raises(SolveError) as err:
        bad.raise_if_failed()
    assert isinstance(err.value, RuntimeError)
    assert err.value.result is bad and err.value.status is SolveStatus.INDEFINITE
    assert str(err.value) == "solve failed (indefinite): pᵀAp ≤ 0"


def _results(xp):
    """One result of every solver, converged or not, on a small problem."""
    n = 12
    A = spd_matrix(n, 10.0, seed=1)
    H = symmetric_matrix(np.linspace(-1.0, 1.0, n) + 0.05, seed=2)
    b = np.random.default_rng(3).standard_normal(n)
    Ax, Hx, bx = from_numpy(xp, A), from_numpy(xp, H), from_numpy(xp, b)
    return {
        "cg": cg(Ax, bx, rtol=1e-10),
        "cg maxiter": cg(Ax, bx, maxiter=1),
        "minres": minres(Hx, bx, rtol=1e-10),
        "nystrom_pcg": nystrom_pcg(Ax, bx, 6, damping=0.1, seed=0, rtol=1e-10),
        "neumann_solve": neumann_solve(lambda v: Ax @ v, bx, alpha="auto", terms=200, rtol=1e-10),
        "neumann diverged": neumann_solve(lambda v: Ax @ v, bx, alpha=5.0, terms=50),
        "saddle_free_solve": saddle_free_solve(lambda v: Hx @ v, bx, damping=0.1, terms=20),
        "saddle_free lanczos": saddle_free_solve(lambda v: Hx @ v, bx, damping=0.1, terms=6, method="lanczos"),
    }


def test_every_solver_fills_status_and_stats(xp):
    results = _results(xp)
    for name, res in results.items():
        assert isinstance(res.status, SolveStatus), name
        assert res.converged == (res.status is SolveStatus.CONVERGED), name
        assert isinstance(res.residual_norm, float) and isinstance(res.iterations, int), name
        assert res.info, name
        counts = [k for k in ("matvecs", "hvps") if k in res.stats]
        assert len(counts) == 1 and isinstance(res.stats[counts[0]], int) and res.stats[counts[0]] > 0, name
        if name.startswith("saddle_free"):
            assert math.isnan(res.residual_norm) and isinstance(res.stats["error_estimate"], float), name
        else:
            assert math.isfinite(res.residual_norm), name
    assert results["cg maxiter"].status is SolveStatus.MAXITER
    assert results["neumann diverged"].status is SolveStatus.DIVERGED
