"""Which H-matrix build settings should be the defaults?  A sweep (issue 19).

``HMatrix.from_kernel(kernel, points, eps=1e-6)`` is what a user writes.  This
sweep measures every setting of the build's knobs — admissibility ``eta``,
cluster ``split``, ``leaf_size``, ``symmetric`` storage and
``mixed_precision`` — on a matrix of cases: kernels (exp, Matérn 3/2 and 5/2,
Gaussian with two length-scales, 1/r, log r), point sets (uniform in the unit
cube of dimension 1, 2, 3 and 5, and the unit sphere in 3-D) and sizes.  For
each case it finds the best storage and the best build time over all
settings, and for each setting its *worst ratio* to those bests over the
cases; the default should be the setting whose worst ratio is smallest (the
goal: within 1.25× of the best on every case, for storage and for build time).

Build time is the process CPU time of a single-threaded build (numba, BLAS
and OpenMP limited to one thread, set below before they load): on a shared
machine wall time, and the CPU time of spinning worker threads, vary by
factors of ten from run to run (measured: 0.47 s and 19.7 s for the same
build), while single-threaded CPU time repeats within about 20 %.  Storage is
deterministic.

Run: ``python benchmarks/bench_hmatrix_defaults.py`` (``--quick``: n = 2000
only; ``--sizes 2000 8000``; ``--settings top`` re-measures only the five
best settings of an earlier run, from its JSON, at the given sizes).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys
import time
from pathlib import Path

for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, markdown_table, write_result  # noqa: E402

from natgrad.hmatrix import HMatrix  # noqa: E402

EPS = 1e-6


# -- the cases ---------------------------------------------------------------------


def _distance(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    d2 = (X * X).sum(1)[:, None] + (Y * Y).sum(1)[None, :] - 2.0 * X @ Y.T
    return np.sqrt(np.maximum(d2, 0.0))


def _singular(f):
    """A kernel singular at r = 0, set to 0 there (the self-interaction is a
    modelling choice; 0 keeps the diagonal blocks as smooth as the rest)."""

    def kernel(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        r = _distance(X, Y)
        out = np.zeros_like(r)
        mask = r > 1e-12
        out[mask] = f(r[mask])
        return out

    return kernel


def _radial(f):
    return lambda X, Y: f(_distance(X, Y))


KERNELS = {
    "exp": _radial(lambda r: np.exp(-r)),
    "matern32": _radial(lambda r: (1.0 + math.sqrt(3.0) * r / 0.3) * np.exp(-math.sqrt(3.0) * r / 0.3)),
    "matern52": _radial(
        lambda r: (1.0 + math.sqrt(5.0) * r / 0.3 + 5.0 * r**2 / 0.27) * np.exp(-math.sqrt(5.0) * r / 0.3)
    ),
    "gauss-0.2": _radial(lambda r: np.exp(-((r / 0.2) ** 2))),
    "gauss-1": _radial(lambda r: np.exp(-(r**2))),
    "1/r": _singular(lambda r: 1.0 / r),
    "log": _singular(lambda r: np.log(r)),
}


def points(name: str, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if name == "sphere":
        X = rng.standard_normal((n, 3))
        return X / np.linalg.norm(X, axis=1, keepdims=True)
    return rng.uniform(size=(n, int(name.removeprefix("cube"))))


POINT_SETS = ["cube1", "cube2", "cube3", "cube5", "sphere"]


# -- the settings --------------------------------------------------------------------

ETAS = (1.0, 2.0, 4.0, 8.0)
SPLITS = ("pca", "bisect")
LEAVES = (32, 64, 128)


def all_settings() -> list[dict]:
    out = [
        dict(eta=eta, split=split, leaf_size=leaf, symmetric=True, mixed_precision=True)
        for eta, split, leaf in itertools.product(ETAS, SPLITS, LEAVES)
    ]
    # is symmetric storage / mixed precision ever worse?  one point each, at the
    # benchmark's setting, and today's defaults for comparison
    out += [
        dict(eta=4.0, split="bisect", leaf_size=64, symmetric=False, mixed_precision=True),
        dict(eta=4.0, split="bisect", leaf_size=64, symmetric=True, mixed_precision=False),
        dict(eta=1.0, split="pca", leaf_size=64, symmetric=False, mixed_precision=False),
    ]
    return out


def label(s: dict) -> str:
    flags = ("S" if s["symmetric"] else "-") + ("M" if s["mixed_precision"] else "-")
    return f"eta={s['eta']:g} {s['split']} leaf={s['leaf_size']} {flags}"


def build(kernel, X: np.ndarray, setting: dict) -> dict:
    c0, w0 = time.process_time(), time.perf_counter()
    H = HMatrix.from_kernel(kernel, X, eps=EPS, **setting)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    return dict(storage=float(H.compression_ratio), cpu=cpu, wall=wall, error=float(H.error_estimate))


def sweep(sizes, kernels, point_sets, settings) -> list[dict]:
    rows = []
    HMatrix.from_kernel(KERNELS["exp"], points("cube2", 600), eps=EPS)  # compile numba once, untimed
    for n, kname, pname in itertools.product(sizes, kernels, point_sets):
        X = points(pname, n)
        for s in settings:
            r = build(KERNELS[kname], X, s)
            rows.append(dict(n=n, kernel=kname, points=pname, setting=label(s), **s, **r))
            print(f"n={n} {kname:9s} {pname:6s} {label(s):32s} storage {r['storage']:.4f} "
                  f"cpu {r['cpu']:6.2f}s error {r['error']:.1e}", flush=True)
    return rows


def worst_ratios(rows: list[dict]) -> dict[str, dict]:
    """For each setting, its worst storage and build-time ratio to the best of each case."""
    cases: dict[tuple, list[dict]] = {}
    for r in rows:
        cases.setdefault((r["n"], r["kernel"], r["points"]), []).append(r)
    out: dict[str, dict] = {}
    for case, rs in cases.items():
        best_storage = min(r["storage"] for r in rs)
        best_cpu = min(r["cpu"] for r in rs)
        for r in rs:
            w = out.setdefault(r["setting"], dict(storage=0.0, cpu=0.0, worst_storage_case=None, worst_cpu_case=None))
            rs_, rc = r["storage"] / best_storage, r["cpu"] / best_cpu
            if rs_ > w["storage"]:
                w.update(storage=rs_, worst_storage_case=case)
            if rc > w["cpu"]:
                w.update(cpu=rc, worst_cpu_case=case)
    return out


def report(rows: list[dict], quick: bool) -> str:
    ratios = worst_ratios(rows)
    ranked = sorted(ratios.items(), key=lambda kv: max(kv[1]["storage"], kv[1]["cpu"]))
    table = markdown_table(
        ["setting", "worst storage / best", "worst build CPU / best", "worst storage case", "worst time case"],
        [[k, f"{v['storage']:.2f}", f"{v['cpu']:.2f}", " ".join(map(str, v["worst_storage_case"])),
          " ".join(map(str, v["worst_cpu_case"]))] for k, v in ranked],
    )
    best = ranked[0][0]
    per_case = markdown_table(
        ["n", "kernel", "points", "best storage", "its setting", f"{best}: storage", "today's defaults: storage"],
        [
            [n, k, p, f"{min(r['storage'] for r in rs):.4f}",
             min(rs, key=lambda r: r["storage"])["setting"],
             f"{next(r['storage'] for r in rs if r['setting'] == best):.4f}",
             next((f"{r['storage']:.4f}" for r in rs if r["setting"] == "eta=1 pca leaf=64 --"), "—")]
            for (n, k, p), rs in _group(rows).items()
        ],
    )
    return (
        f"eps = {EPS:g}; {len(rows)} builds; build time is process CPU time.\n\n"
        f"## Settings ranked by their worst ratio to the best setting of each case\n\n{table}\n\n"
        f"## Per case\n\n{per_case}\n"
    )


def _group(rows):
    out: dict[tuple, list[dict]] = {}
    for r in rows:
        out.setdefault((r["n"], r["kernel"], r["points"]), []).append(r)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="n = 2000 only")
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 8000])
    parser.add_argument("--kernels", nargs="+", default=list(KERNELS))
    parser.add_argument("--points", nargs="+", default=POINT_SETS)
    parser.add_argument("--settings", choices=["all", "top"], default="all")
    parser.add_argument("--tag", default="", help="suffix of the result files")
    args = parser.parse_args()
    sizes = [2000] if args.quick else args.sizes
    settings = all_settings()
    if args.settings == "top":
        earlier = json.loads((RESULTS / "hmatrix_defaults.json").read_text())
        ranked = sorted(worst_ratios(earlier).items(), key=lambda kv: max(kv[1]["storage"], kv[1]["cpu"]))
        keep = {k for k, _ in ranked[:5]} | {"eta=1 pca leaf=64 --"}
        settings = [s for s in settings if label(s) in keep]
    rows = sweep(sizes, args.kernels, args.points, settings)
    name = "hmatrix_defaults" + args.tag
    (RESULTS / f"{name}.json").write_text(json.dumps(rows, indent=1))
    body = report(rows, args.quick)
    print(body)
    write_result(name, "H-matrix build settings: a sweep for the defaults", body, quick=args.quick)


if __name__ == "__main__":
    main()
