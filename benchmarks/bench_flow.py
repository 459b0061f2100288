"""Gradient descent as an ODE integrator (arXiv 2409.04707) on the digits data:
Euler (= SGD), Heun, RK4, AB2 and the adaptive Bogacki–Shampine 3(2) (issue 21).

Problem: ``sklearn.datasets.load_digits`` (1797 images 8 × 8, 10 classes), the
data, MLP and model helpers of ``bench_fngd.py``: per seed a stratified split of
1437 training and 360 test images, fixed mini-batches of 128 (one shuffle, 12
per epoch, cycled); float64 PyTorch, per-sample cross-entropy, the generic
``TorchModel(fn, params, loss="mean")``.  Two networks: the MLP 64→64→10 tanh
(P = 4,810) and a small CNN (conv 3×3, 8 channels, tanh, 2×2 average pooling,
linear 128→10; P = 1,370).

Every method runs ``GradientFlow(lr=..., method=...).step`` on one mini-batch
per call (RK4's four stages and bs3's tries all on that batch; bs3 without
FSAL, the batch changes between calls) until a budget of gradient
evaluations is spent, over a sweep of step sizes ``lr`` and five seeds (data
split, batch order and initialisation).  bs3 takes ``lr`` as its first step
and adapts it under ``rtol`` (default 1e-2); it is also run at other
tolerances.  Recorded every 12 gradient evaluations (one epoch of Euler; not
timed): the training loss on the whole training set and the test accuracy.

Reported: the largest stable step per method (every seed ends below its
initial training loss, never NaN, never above 3× it), each method at its
best step (median final training loss) at equal gradient evaluations and at
equal optimiser wall time, the spread over seeds (median, min–max), and
whether bs3 removes the need to tune the step: its worst result over the
initial steps against the best-tuned Euler.

Run: ``python benchmarks/bench_flow.py`` (about 20 minutes on a shared 2-core
machine; ``--quick`` about 1 minute: 2 seeds, 3 steps, small budget).
"""

from __future__ import annotations

import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, markdown_table, parse_args, save_figure, write_result  # noqa: E402
from bench_fngd import load_data, make_model, make_net  # noqa: E402

FIXED = ("euler", "heun", "rk4", "ab2")
EVERY = 12  # gradient evaluations between records: one epoch of Euler
DIVERGED = 3.0  # a run whose training loss exceeds this many times its initial one has diverged


def make_cnn(seed: int = 0) -> Any:
    """conv 3×3 (1→8 channels, same padding), tanh, 2×2 average pooling, linear 128→10."""
    import torch

    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Unflatten(1, (1, 8, 8)),
        torch.nn.Conv2d(1, 8, 3, padding=1, dtype=torch.float64),
        torch.nn.Tanh(),
        torch.nn.AvgPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(128, 10, dtype=torch.float64),
    )


NETS = {"MLP 64→64→10": make_net, "CNN conv8-pool-linear": make_cnn}


def evaluator(net: Any, model: Any, data: dict[str, Any]) -> Any:
    """``(training loss on the whole training set, test accuracy)`` at flat params."""
    import torch
    import torch.nn.functional as F
    from torch.func import functional_call

    (Xtr, ytr), (Xte, yte) = data["train"], data["test"]

    def evaluate(flat: Any) -> tuple[float, float]:
        with torch.no_grad():
            p = model.unflatten(flat)
            loss = float(F.cross_entropy(functional_call(net, p, (Xtr,)), ytr))
            acc = float((functional_call(net, p, (Xte,)).argmax(-1) == yte).double().mean())
        return loss, acc

    return evaluate


def run(net_name: str, method: str, lr: float, seed: int, budget: int, data: dict[str, Any],
        rtol: float = 1e-2) -> dict[str, Any]:
    """One training run of ``budget`` gradient evaluations; records every ``EVERY``."""
    from natgrad.optim import GradientFlow

    net = NETS[net_name](seed)
    model = make_model(net, "generic")
    evaluate = evaluator(net, model, data)
    batches = data["batches"]["generic"]
    opt = GradientFlow(lr=lr, method=method, rtol=rtol)
    params = model.params
    model.loss_and_grad(params, batches[0])  # warm-up, not counted
    loss0, acc0 = evaluate(params)
    rec = {"evals": [0], "time": [0.0], "loss": [loss0], "acc": [acc0]}
    evals, elapsed, step, diverged, rejections, hs = 0, 0.0, 0, False, 0, []
    while evals < budget:
        batch = batches[step % len(batches)]
        t0 = time.perf_counter()
        params, info = opt.step(params, model, batch)
        elapsed += time.perf_counter() - t0
        step += 1
        evals += info["gradient_evaluations"]
        rejections += info.get("rejections", 0)
        if info["step_taken"] and method == "bs3":
            hs.append(info["lr"])
        if not info["step_taken"] and info.get("reason") == "nonfinite":
            diverged = True
        if evals // EVERY > rec["evals"][-1] // EVERY or evals >= budget or diverged:
            loss, acc = evaluate(params)
            for key, v in (("evals", evals), ("time", elapsed), ("loss", loss), ("acc", acc)):
                rec[key].append(v)
            if not math.isfinite(loss) or loss > DIVERGED * loss0:
                diverged = True
        if diverged:
            break
    return {"net": net_name, "method": method, "lr": lr, "rtol": rtol, "seed": seed, "rec": rec,
            "diverged": diverged, "loss0": loss0, "final_loss": rec["loss"][-1], "final_acc": rec["acc"][-1],
            "time": elapsed, "steps": step, "rejections": rejections,
            "h_median": statistics.median(hs) if hs else float("nan")}


def at(rec: dict[str, list[float]], axis: str, x: float, key: str) -> float:
    """The recorded ``key`` at the last record with ``axis`` ≤ x (the state of the run then)."""
    value = rec[key][0]
    for a, v in zip(rec[axis], rec[key]):
        if a <= x + 1e-12:
            value = v
        else:
            break
    return value


def spread(values: list[float], fmt: str = "{:.3g}") -> str:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "diverged"
    med = statistics.median(finite)
    text = f"{fmt.format(med)} [{fmt.format(min(finite))}–{fmt.format(max(finite))}]"
    return text + (f" ({len(values) - len(finite)} NaN)" if len(finite) < len(values) else "")


def stable(runs: list[dict[str, Any]]) -> bool:
    return all(not r["diverged"] and r["final_loss"] < r["loss0"] for r in runs)


def plot(results: dict[str, Any], path: Path, budget: int) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np
    except ImportError:
        return False
    colors = {"euler": "C0", "heun": "C1", "rk4": "C2", "ab2": "C3", "bs3": "C4"}
    nets = list(results)
    fig, axes = plt.subplots(len(nets), 4, figsize=(17, 4.0 * len(nets)), squeeze=False)
    grid = np.arange(0, budget + 1, EVERY)
    for row, net in enumerate(nets):
        best = results[net]["best"]
        for method, runs in best.items():
            lr = runs[0]["lr"]
            for col, (axis, key, xs) in enumerate((("evals", "loss", grid), ("evals", "acc", grid),
                                                   ("time", "loss", None))):
                ax = axes[row, col]
                if xs is None:
                    T = min(r["time"] for r in runs)
                    xs = np.linspace(0, T, 60)
                vals = np.array([[at(r["rec"], axis, x, key) for x in xs] for r in runs])
                med = np.median(vals, 0)
                ax.plot(xs, med, color=colors[method], label=f"{method} lr {lr:g}")
                ax.fill_between(xs, vals.min(0), vals.max(0), color=colors[method], alpha=0.2)
        sweep = results[net]["sweep"]
        ax = axes[row, 3]
        for method in (*FIXED, "bs3"):
            lrs = sorted({lr for (m, lr, rt) in sweep if m == method and rt == 1e-2})
            med, lo, hi = [], [], []
            for lr in lrs:
                losses = [r["final_loss"] if not r["diverged"] else np.nan for r in sweep[(method, lr, 1e-2)]]
                med.append(np.nanmedian(losses) if not np.all(np.isnan(losses)) else np.nan)
                lo.append(np.nanmin(losses) if not np.all(np.isnan(losses)) else np.nan)
                hi.append(np.nanmax(losses) if not np.all(np.isnan(losses)) else np.nan)
            label = "bs3 (initial lr, rtol 1e-2)" if method == "bs3" else method
            ax.plot(lrs, med, "o-", color=colors[method], label=label)
            ax.fill_between(lrs, lo, hi, color=colors[method], alpha=0.15)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("lr (bs3: initial step)")
        ax.set_ylabel(f"final training loss ({budget} gradient evaluations)")
        ax.set_title(f"{net}: step-size sweep (diverged seeds not drawn)", fontsize=8)
        ax.legend(fontsize=7)
        titles = ("training loss vs gradient evaluations", "test accuracy vs gradient evaluations",
                  "training loss vs optimiser wall time")
        for col in range(3):
            a = axes[row, col]
            a.set_title(f"{net}: {titles[col]}", fontsize=9)
            a.set_xlabel("gradient evaluations" if col < 2 else "seconds (shared, loaded 2-core machine)")
            if col != 1:
                a.set_yscale("log")
            else:
                a.set_ylim(0.5, 1.0)
            a.legend(fontsize=7)
    fig.suptitle("Digits: each method at its best step, median over seeds and min–max band", fontsize=11)
    save_figure(fig, path)
    return True


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    import torch

    # one thread: a tiny problem on a shared 2-core machine (see bench_fngd.py)
    torch.set_num_threads(1)
    quick = args.quick
    seeds = (0, 1) if quick else (0, 1, 2, 3, 4)
    lrs = (0.25, 1.0, 4.0) if quick else (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
    rtols = (1e-3, 1e-1) if quick else (1e-3, 3e-3, 3e-2, 1e-1)  # bs3 from lr 1 (1e-2 is in the sweep)
    budget = 48 if quick else 240
    t_start = time.perf_counter()
    load_before = os.getloadavg()
    datas = {seed: load_data(seed) for seed in seeds}
    results: dict[str, Any] = {}
    for net in NETS:
        sweep: dict[tuple[str, float, float], list[dict[str, Any]]] = {}
        configs = [(m, lr, 1e-2) for m in (*FIXED, "bs3") for lr in lrs] + [("bs3", 1.0, rt) for rt in rtols]
        for method, lr, rtol in configs:
            t0 = time.perf_counter()
            sweep[(method, lr, rtol)] = [run(net, method, lr, s, budget, datas[s], rtol) for s in seeds]
            runs = sweep[(method, lr, rtol)]
            print(f"[flow] {net} {method} lr {lr:g} rtol {rtol:g}: final loss "
                  f"{spread([r['final_loss'] for r in runs])}, acc {spread([r['final_acc'] for r in runs])}, "
                  f"{'stable' if stable(runs) else 'UNSTABLE'} ({time.perf_counter() - t0:.1f} s)", flush=True)
        best = {}
        largest = {}
        for method in (*FIXED, "bs3"):
            cands = [(lr, sweep[(method, lr, 1e-2)]) for lr in lrs]
            ok = [(lr, runs) for lr, runs in cands if stable(runs)]
            largest[method] = max((lr for lr, _ in ok), default=None)
            if ok:
                best[method] = min(ok, key=lambda c: statistics.median(r["final_loss"] for r in c[1]))[1]
        results[net] = {"sweep": sweep, "best": best, "largest": largest}
    total = time.perf_counter() - t_start
    load_after = os.getloadavg()

    body = [
        f"Digits (sklearn bundled), per seed a stratified split 1437 train / 360 test, fixed mini-batches of 128 "
        f"(12 per epoch, cycled); float64 PyTorch, 1 torch thread, generic `TorchModel(..., loss=\"mean\")` of the "
        f"per-sample cross-entropy. One `GradientFlow.step` per mini-batch; budget {budget} gradient evaluations "
        f"per run ({budget // EVERY} epochs of Euler = SGD, {budget // 4 // EVERY} of RK4); seeds {list(seeds)}; "
        f"step sizes {list(lrs)} (bs3: the initial step; rtol 1e-2 unless stated; no FSAL — the batch changes "
        "every call). Training loss = the mean cross-entropy on the whole training set, recorded every "
        f"{EVERY} gradient evaluations (not timed). A run is stable when every seed ends below its initial "
        f"training loss and never exceeds {DIVERGED:g}× it.\n\n"
        f"**Wall-time figures were taken on a shared, loaded 2-core machine** (other jobs running; load average "
        f"1/5/15 min {load_before[0]:.2f}/{load_before[1]:.2f}/{load_before[2]:.2f} before, "
        f"{load_after[0]:.2f}/{load_after[1]:.2f}/{load_after[2]:.2f} after): compare them within this run only.",
    ]
    summary = []
    for net, res in results.items():
        sweep, best, largest = res["sweep"], res["best"], res["largest"]
        body.append(f"## {net}")
        rows = []
        for (method, lr, rtol), runs in sweep.items():
            rows.append([method, f"{lr:g}", f"{rtol:g}" if method == "bs3" else "—",
                         "yes" if stable(runs) else "no",
                         spread([r["final_loss"] if not r["diverged"] else math.nan for r in runs]),
                         spread([100 * r["final_acc"] if not r["diverged"] else math.nan for r in runs], "{:.1f}"),
                         f"{statistics.median(r['time'] for r in runs):.2f}",
                         f"{statistics.median(r['steps'] for r in runs):.0f}",
                         f"{statistics.median(r['rejections'] for r in runs):.0f}" if method == "bs3" else "—",
                         f"{statistics.median(r['h_median'] for r in runs):.3g}" if method == "bs3" else "—"])
        body.append("### Every run (median [min–max] over seeds)\n\n" + markdown_table(
            ["method", "lr", "rtol", "stable", f"final train loss @ {budget} grads", "final test acc %",
             "optimiser s", "steps", "bs3 rejections", "bs3 median h"], rows))
        # at equal gradient evaluations: each method at its best step
        rows = []
        for method, runs in best.items():
            rows.append([method, f"{runs[0]['lr']:g}", f"{largest[method]:g}" if largest[method] else "none",
                         spread([r["final_loss"] for r in runs]),
                         spread([100 * r["final_acc"] for r in runs], "{:.1f}"),
                         spread([at(r["rec"], "evals", budget // 4, "loss") for r in runs]),
                         f"{statistics.median(r['time'] for r in runs):.2f}"])
        body.append(f"### At equal gradient evaluations ({budget}), each method at its best step\n\n"
                    "The largest stable step is the largest of the sweep; ‘early’ is the training loss after "
                    f"{budget // 4} gradient evaluations.\n\n" + markdown_table(
                        ["method", "best lr", "largest stable lr", "final train loss", "final test acc %",
                         f"train loss @ {budget // 4} grads (early)", "optimiser s"], rows))
        # at equal wall time
        T = min(statistics.median(r["time"] for r in runs) for runs in best.values())
        rows = [[method, f"{runs[0]['lr']:g}", spread([at(r["rec"], "time", T, "loss") for r in runs]),
                 spread([100 * at(r["rec"], "time", T, "acc") for r in runs], "{:.1f}")]
                for method, runs in best.items()]
        body.append(f"### At equal optimiser wall time ({T:.2f} s, the shortest median run)\n\n" + markdown_table(
            ["method", "best lr", "train loss", "test acc %"], rows))
        # verdicts
        med = lambda runs, k="final_loss": statistics.median(r[k] for r in runs)  # noqa: E731
        euler = best.get("euler")
        higher = {m: best[m] for m in ("heun", "rk4", "ab2") if m in best}
        lines = []
        if euler and higher:
            top = min(higher, key=lambda m: med(higher[m]))
            win = med(higher[top]) < med(euler)
            lo_top, hi_e = min(r["final_loss"] for r in higher[top]), max(r["final_loss"] for r in euler)
            hi_top, lo_e = max(r["final_loss"] for r in higher[top]), min(r["final_loss"] for r in euler)
            overlap = lo_top <= hi_e and lo_e <= hi_top
            lines.append(
                f"- a higher-order integrator ends below best-tuned SGD (Euler) at equal gradient evaluations: "
                f"{'met' if win else 'NOT met'} (best of heun/rk4/ab2: {top} {med(higher[top]):.3g} vs Euler "
                f"{med(euler):.3g}; test accuracy {100 * med(higher[top], 'final_acc'):.1f} % vs "
                f"{100 * med(euler, 'final_acc'):.1f} %)"
                + ("; the two within the spread over seeds (their min–max ranges overlap): a tie" if overlap else ""))
            summary.append(f"SUMMARY|flow: {net}, best higher-order integrator vs tuned SGD at {budget} gradient "
                           f"evaluations (final train loss)|{top} lr {higher[top][0]['lr']:g}: {med(higher[top]):.3g}|"
                           f"Euler lr {euler[0]['lr']:g}: {med(euler):.3g}|{med(euler) / med(higher[top]):.3g}× "
                           f"lower|a higher-order integrator ends below tuned SGD|{'yes' if win else 'no'}")
            wall = {m: statistics.median(at(r["rec"], "time", T, "loss") for r in runs) for m, runs in best.items()}
            wtop = min(wall, key=wall.get)
            lines.append(f"- at equal wall time ({T:.2f} s) the lowest training loss is {wtop}'s "
                         f"({wall[wtop]:.3g}; Euler {wall['euler']:.3g})")
            noise = max(
                max(ts) / min(ts) for ts in (
                    [statistics.median(r["time"] for r in runs) for (m, _, _), runs in sweep.items()
                     if m == method and stable(runs)] for method in FIXED) if len(ts) > 1)
            lines.append(f"- how far to trust the wall times: one fixed-step method's median optimiser seconds for "
                         f"the same {budget} gradient evaluations vary up to {noise:.2f}× between its step sizes "
                         "in this run" + (" — the machine's load dominates, the equal-wall-time table is noise "
                                          "more than method" if noise > 1.3 else ""))
            stab = {m: largest[m] for m in largest}
            lines.append("- largest stable step: " + ", ".join(
                f"{m} {v:g}" if v else f"{m} none" for m, v in stab.items()))
        bs3_runs = {lr: sweep[("bs3", lr, 1e-2)] for lr in lrs}
        if euler:
            worst_lr = max(bs3_runs, key=lambda lr: med(bs3_runs[lr]))
            worst_loss = med(bs3_runs[worst_lr])
            worst_acc = min(med(runs, "final_acc") for runs in bs3_runs.values())
            e_loss, e_acc = med(euler), med(euler, "final_acc")
            untuned = all(stable(r) for r in bs3_runs.values()) and worst_acc >= e_acc - 0.01
            rt = {rt: sweep[("bs3", 1.0, rt)] for rt in rtols}
            h_med = [statistics.median(r["h_median"] for r in runs) for runs in bs3_runs.values()]
            tries = sum(r["steps"] + r["rejections"] for runs in bs3_runs.values() for r in runs)
            wasted = sum(r["rejections"] for runs in bs3_runs.values() for r in runs) / max(tries, 1)
            share = statistics.median(r["steps"] for runs in bs3_runs.values() for r in runs) / budget
            lines.append(
                f"- the step bs3 chooses: median h {min(h_med):.3g}–{max(h_med):.3g} at rtol 1e-2 from every "
                f"initial lr ({lrs[0]:g}–{lrs[-1]:g}); best-tuned Euler's lr is {euler[0]['lr']:g}. "
                f"{100 * wasted:.0f} % of its tries were rejected (3 gradients each) and an accepted step "
                f"costs 4, so at equal gradient evaluations it takes {share:.2f}× as many steps as Euler")
            lines.append(
                f"- bs3 removes the need to tune the step (stable from every initial lr in {list(lrs)}, worst median "
                f"test accuracy within 1 point of best-tuned Euler at equal gradient evaluations): "
                f"{'met' if untuned else 'NOT met'} (bs3 worst over initial lr: loss {worst_loss:.3g} at lr "
                f"{worst_lr:g}, accuracy {100 * worst_acc:.1f} %; Euler at its best lr {euler[0]['lr']:g}: loss "
                f"{e_loss:.3g}, {100 * e_acc:.1f} %); its tolerance is then the knob: "
                + ", ".join(f"rtol {k:g}: loss {med(v):.3g}, {100 * med(v, 'final_acc'):.1f} %"
                            for k, v in sorted({**rt, 1e-2: bs3_runs[1.0]}.items())))
            summary.append(f"SUMMARY|flow: {net}, bs3 untuned (worst over initial lr {lrs[0]:g}–{lrs[-1]:g}) vs "
                           f"best-tuned SGD, test accuracy at {budget} gradient evaluations|{100 * worst_acc:.1f} %|"
                           f"{100 * e_acc:.1f} % (lr {euler[0]['lr']:g})|{100 * (worst_acc - e_acc):+.1f} points|"
                           f"bs3 stable from every initial lr, within 1 point of tuned SGD|"
                           f"{'yes' if untuned else 'no'}")
        body.append("### Verdicts\n\n" + "\n".join(lines))
    png = RESULTS / ("flow-quick.png" if quick else "flow.png")
    RESULTS.mkdir(parents=True, exist_ok=True)
    if plot(results, png, budget):
        body.append(f"Figure: `{png.name}` (per network: training loss and test accuracy against gradient "
                    "evaluations, training loss against wall time, each method at its best step with the "
                    "min–max band over seeds; the final training loss over the step-size sweep).")
    body.append(f"Total benchmark time {total:.0f} s.")
    write_result("flow", "Gradient-flow integrators (Euler = SGD, Heun, RK4, AB2, adaptive bs3) on digits",
                 "\n\n".join(body), quick=quick)
    (RESULTS / ("flow-quick.summary" if quick else "flow.summary")).write_text("\n".join(summary) + "\n")
    for line in summary:
        print(line)


if __name__ == "__main__":
    main()
