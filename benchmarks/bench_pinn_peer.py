"""natgrad's ENGD-W step against the paper's own code (rla-pinns) on the
paper's 5-D Poisson problem, both run here, in one process (issue #7).

Problem (arXiv 2505.12149, experiment "poisson5d"): ``−Δu = π² Σᵢ cos(π xᵢ)``
on ``[0, 1]⁵``, Dirichlet data from ``u* = Σᵢ cos(π xᵢ)``; N_Ω = 3000
interior and N_∂Ω = 500 boundary points resampled every step; tanh MLP
5→64→64→48→48→1 (P = 10,065), float64, CPU; ENGD-W (the Woodbury form
``Jᵀ (JJᵀ + λI)⁻¹ r``) with damping 3.173e-12 and the grid line search over
2⁰…2⁻³⁰.

* **natgrad** — what a user writes: :func:`natgrad.examples.poisson.make_poisson`
  (the PyTorch adapter, ``TorchModel.from_pointwise``) and
  ``natgrad.optim.ENGD(damping=damping, solver="woodbury").step``.
* **rla-pinns** (github andresguzco/rla-pinns, MIT) — its ``RNGD`` optimiser
  with ``approximation="exact"`` (the paper's ENGD-W), built by the peer's own
  ``rla_pinns.optim.set_up_optimizer`` from the command-line flags of the
  paper's best ENGD-W run (``--optimizer=RNGD --RNGD_approximation=exact
  --RNGD_damping=…``, default grid line search), on the layers of the peer's
  ``train.set_up_layers("mlp-tanh-64-64-48-48", …)``; one step is what the
  peer's ``train.py`` loop does per iteration: ``optimizer.zero_grad()``,
  ``optimizer.step(X_Ω, y_Ω, X_∂Ω, y_∂Ω)`` and the two ``.item()`` calls on the
  returned losses.  Its logging (L2 error on 30,000 points, wandb,
  checkpoints, at logged steps only) is not part of the step and not timed —
  as natgrad's L2 evaluation is not.

Both sides start from the same initial weights (natgrad's, copied into the
peer's layers) and get the same points every step (``problem.sample(k)``; the
peer's targets from its own ``f_cos_sum``/``u_cos_sum``), so they follow the
same trajectory up to rounding and do the same work.  Step 0 is the warm-up
and the correctness check (same loss, same direction, loss after one step);
then the steps alternate (peer, natgrad, peer, …) and the median wall time per
step of each is reported.  The torch thread count is the process's, shared by
both sides (not set by the script).

The peer's work tree is found through ``RLA_PINNS_PATH`` (added to
``sys.path``); without it, or when its import fails (it needs ``einops``,
``matplotlib``, ``tueplots``, ``backpack-for-pytorch``, ``wandb`` and
``hessianfree`` from github ltatzel/PyTorchHessianFree), the script says so,
writes a results file saying the peer was not run, and exits 0.

Writes ``benchmarks/results/pinn_peer.md`` (``pinn_peer-quick.md`` with
``--quick``) and prints one ``SUMMARY|…`` line for ``run_all.py``.

Run::

    RLA_PINNS_PATH=/path/to/rla-pinns python benchmarks/bench_pinn_peer.py  # ~1 min on two cores
    RLA_PINNS_PATH=/path/to/rla-pinns python benchmarks/bench_pinn_peer.py --quick
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import traceback
from math import sqrt
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, markdown_table, write_result  # noqa: E402
from bench_pinn import PAPER_DAMPING, PAPER_HIDDEN, PAPER_POINTS  # noqa: E402

NAME = "pinn_peer"
TITLE = "5-D Poisson PINN: natgrad's ENGD-W step vs rla-pinns (the paper's code)"
BENCH = "pinn: ENGD-W step vs rla-pinns (paper's configuration)"
GOAL = "ratio ≤ 1.0"
PEER_MODEL = "mlp-tanh-64-64-48-48"  # the peer's name for 5→64→64→48→48→1

# name: (hidden widths, (N_Ω, N_∂Ω), timed steps per side, warm-up steps)
CONFIGS = {
    "quick": ((16, 16), (60, 20), 2, 1),
    "full": (PAPER_HIDDEN, PAPER_POINTS, 7, 1),
}


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny problem, 2 steps: exercises the code only")
    parser.add_argument("--repeats", type=int, default=None, help="timed steps per side (default 7; 2 with --quick)")
    args = parser.parse_args()
    if args.repeats is not None and args.repeats < 1:
        parser.error("--repeats must be ≥ 1")
    return args


# ---------------------------------------------------------------------------
# the peer
# ---------------------------------------------------------------------------


class PeerUnavailable(Exception):
    pass


def import_peer() -> dict[str, Any]:
    """The peer's modules, from the work tree at ``$RLA_PINNS_PATH``."""
    path = os.environ.get("RLA_PINNS_PATH")
    if not path:
        raise PeerUnavailable("RLA_PINNS_PATH is not set (it must name a work tree of github "
                              "andresguzco/rla-pinns)")
    if not (Path(path) / "rla_pinns" / "optim" / "rngd.py").is_file():
        raise PeerUnavailable(f"RLA_PINNS_PATH={path} has no rla_pinns/optim/rngd.py")
    sys.path.insert(0, str(Path(path).resolve()))
    try:
        from rla_pinns import poisson_equation, train  # train.py: the peer's experiment script
        from rla_pinns.optim import set_up_optimizer
        from rla_pinns.optim.rngd import RNGD
    except Exception as exc:  # noqa: BLE001 - any import failure means "not run", with the reason
        raise PeerUnavailable(f"importing rla_pinns from {path} failed: {type(exc).__name__}: {exc}") from exc
    return {"path": str(Path(path).resolve()), "train": train, "poisson": poisson_equation,
            "set_up_optimizer": set_up_optimizer, "RNGD": RNGD}


def peer_commit(path: str) -> str:
    try:
        out = subprocess.run(["git", "-C", path, "rev-parse", "--short=12", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except Exception:  # noqa: BLE001
        return "unknown"


def make_peer(peer: dict[str, Any], hidden: tuple[int, ...], damping: float, natgrad_params: dict[str, Any]):
    """The peer's layers and optimiser as its ``train.py`` builds them, with
    natgrad's initial weights copied in."""
    import torch

    train = peer["train"]
    model_name = "mlp-tanh-" + "-".join(map(str, hidden))
    torch.manual_seed(1)  # train.py's default --model_seed
    if model_name in train.SUPPORTED_MODELS:
        layers = train.set_up_layers(model_name, "poisson", 5)
    else:  # --quick: a smaller net of the same kind (the peer's models are fixed by name)
        sizes = (5, *hidden, 1)
        layers = []
        for i in range(len(sizes) - 1):
            layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
            if i < len(sizes) - 2:
                layers.append(torch.nn.Tanh())
    layers = [layer.to(torch.device("cpu"), torch.float64) for layer in layers]
    with torch.no_grad():
        for i, layer in enumerate(layers):
            if isinstance(layer, torch.nn.Linear):
                layer.weight.copy_(natgrad_params[f"{i}.weight"])
                layer.bias.copy_(natgrad_params[f"{i}.bias"])

    # The peer parses its optimiser's settings from sys.argv (and removes them);
    # give it the flags of the paper's ENGD-W run, then restore our own argv.
    # sys.argv is changed in place: the peer's parse_utils holds the list object.
    saved = sys.argv[:]
    # (--optimizer=RNGD is train.py's general flag: it is the "RNGD" argument here.)
    sys.argv[1:] = ["--RNGD_approximation=exact", f"--RNGD_damping={damping!r}"]
    try:
        opt, opt_args = peer["set_up_optimizer"](layers, "RNGD", "poisson", verbose=False)
        leftover = sys.argv[1:]
    finally:
        sys.argv[:] = saved
    if leftover:
        raise RuntimeError(f"the peer did not parse {leftover}")
    assert isinstance(opt, peer["RNGD"]) and opt._approximation == "exact" and opt.equation == "poisson"
    return layers, opt, vars(opt_args)


def peer_batch(peer: dict[str, Any], batch: Any) -> tuple[Any, Any, Any, Any]:
    """natgrad's points with the peer's own targets (its data loaders' work)."""
    x_in, x_bd = batch
    pe = peer["poisson"]
    return x_in, pe.f_cos_sum(x_in), x_bd, pe.u_cos_sum(x_bd)


def peer_params(opt: Any) -> Any:
    import torch

    (group,) = opt.param_groups
    return torch.cat([p.detach().reshape(-1) for p in group["params"]])


class PhaseTimer:
    """Times the peer's step phases by wrapping two of its optimiser's methods
    on the instance (two ``perf_counter`` calls each; the code is the peer's)."""

    def __init__(self, opt: Any) -> None:
        self.times: dict[str, float] = {}
        for name, key in (("_get_directions", "direction"), ("_update_parameters", "line_search")):
            method = getattr(opt, name)

            def wrapped(*a: Any, _m: Any = method, _k: str = key, **kw: Any) -> Any:
                t0 = time.perf_counter()
                out = _m(*a, **kw)
                self.times[_k] = time.perf_counter() - t0
                return out

            setattr(opt, name, wrapped)


def peer_step(opt: Any, data: tuple[Any, Any, Any, Any]) -> tuple[float, float]:
    """One iteration of the peer's train.py loop for RNGD, without its logging."""
    opt.zero_grad()
    loss_interior, loss_boundary = opt.step(*data)
    loss_boundary, loss_interior = loss_boundary.item(), loss_interior.item()
    return loss_interior, loss_boundary


# ---------------------------------------------------------------------------
# the comparison
# ---------------------------------------------------------------------------


def rel(a: Any, b: Any) -> float:
    import torch

    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


def check_step0(problem: Any, opt: Any, params: Any, popt: Any, batch: Any, pdata: Any) -> dict[str, Any]:
    """Loss and ENGD-W direction of both at the same weights and points, before
    step 0 (not timed); the direction is each side's own code."""
    import torch

    from rla_pinns.optim.utils import evaluate_losses_with_layer_inputs_and_grad_outputs

    d_ng, r_ng, details = opt.direction(params, problem.model, batch)
    loss_ng = float(0.5 * torch.dot(r_ng, r_ng))

    # the first half of RNGD.step, then its _get_directions (the peer's code)
    X_O, y_O, X_B, y_B = pdata
    (li, lb, ri, rb, ii, igo, bi, bgo) = evaluate_losses_with_layer_inputs_and_grad_outputs(
        popt.layers, X_O, y_O, X_B, y_B, popt.equation)
    eps = -torch.cat([ri.detach() / sqrt(X_O.shape[0]), rb.detach() / sqrt(X_B.shape[0])]).flatten()
    d_peer = torch.cat([d.reshape(-1) for d in popt._get_directions(ii, igo, bi, bgo, eps)]).detach()
    loss_peer = (li + lb).item()
    # natgrad steps along −d, the peer along +d
    return {"loss_ng": loss_ng, "loss_peer": loss_peer, "loss_rel": abs(loss_ng - loss_peer) / abs(loss_peer),
            "dir_rel": rel(-d_ng, d_peer), "dir_norm": float(torch.linalg.vector_norm(d_peer)),
            "factorisation": details.get("factorisation", "?"), "d_peer": d_peer}


def batch_loss_ng(problem: Any, params: Any, batch: Any) -> float:
    import torch

    r = problem.model.residuals(params, batch)
    return float(0.5 * torch.dot(r, r))


def batch_loss_peer(popt: Any, pdata: Any) -> float:
    import torch

    X_O, y_O, X_B, y_B = pdata
    with torch.no_grad():
        return float(popt._eval_loss(X_O, y_O, "interior") + popt._eval_loss(X_B, y_B, "boundary"))


def run(peer: dict[str, Any], quick: bool, repeats: int | None) -> tuple[str, str]:
    import torch

    from natgrad.examples.poisson import make_poisson
    from natgrad.optim import ENGD

    hidden, points, steps, warmup = CONFIGS["quick" if quick else "full"]
    steps = repeats or steps
    problem = make_poisson(dim=5, hidden=hidden, n_interior=points[0], n_boundary=points[1])
    params = problem.model.params
    opt = ENGD(damping=PAPER_DAMPING, solver="woodbury")
    layers, popt, popt_args = make_peer(peer, hidden, PAPER_DAMPING, problem.model.unflatten(params))
    timer = PhaseTimer(popt)
    N, P = sum(points), problem.n_params
    arch = "→".join(map(str, (5, *hidden, 1)))
    print(f"[pinn_peer] P = {P}, N = {N}, {torch.get_num_threads()} torch threads; "
          f"peer from {peer['path']}", flush=True)

    # --- step 0: correctness check, then the warm-up step of each side ------
    batch = problem.sample(0)
    pdata = peer_batch(peer, batch)
    theta0 = params.clone()
    assert rel(peer_params(popt), theta0) == 0.0, "the peer did not get natgrad's initial weights"
    chk = check_step0(problem, opt, params, popt, batch, pdata)
    print(f"[pinn_peer] step 0: loss natgrad {chk['loss_ng']:.10e}, peer {chk['loss_peer']:.10e} "
          f"(rel. diff {chk['loss_rel']:.1e}); direction rel. diff {chk['dir_rel']:.2e}", flush=True)

    records_ng: list[dict[str, float]] = []
    records_peer: list[dict[str, float]] = []
    for k in range(warmup + steps):
        batch = problem.sample(k)
        pdata = peer_batch(peer, batch)
        timer.times.clear()
        t0 = time.perf_counter()
        li, lb = peer_step(popt, pdata)
        t_peer = time.perf_counter() - t0
        rec_peer = {"wall": t_peer, **timer.times, "loss": li + lb}

        t0 = time.perf_counter()
        new_params, info = opt.step(params, problem.model, batch)
        t_ng = time.perf_counter() - t0
        rec_ng = {"wall": t_ng, **info.get("time", {}), "loss": info["loss"],
                  "evals": info.get("line_search_evaluations", float("nan"))}

        if k == 0:  # the correctness check, continued: one step from the same weights
            chk["step_ng"] = new_params - theta0
            chk["step_peer"] = peer_params(popt) - theta0
            chk["lr_ng"] = info["lr"]
            chk["lr_peer"] = float(torch.linalg.vector_norm(chk["step_peer"])) / chk["dir_norm"]
            chk["after_ng"] = batch_loss_ng(problem, new_params, batch)
            chk["after_peer"] = batch_loss_peer(popt, pdata)
            chk["step_rel"] = rel(chk["step_ng"], chk["step_peer"])
            print(f"[pinn_peer] step 0: step size natgrad {chk['lr_ng']:.3g}, peer {chk['lr_peer']:.3g}; "
                  f"update rel. diff {chk['step_rel']:.2e}; loss after natgrad {chk['after_ng']:.6e}, "
                  f"peer {chk['after_peer']:.6e}", flush=True)
        params = new_params
        tag = "warm-up" if k < warmup else "timed"
        print(f"[pinn_peer] step {k} ({tag}): peer {t_peer:.3f} s, natgrad {t_ng:.3f} s "
              f"(loss peer {rec_peer['loss']:.3e}, natgrad {rec_ng['loss']:.3e})", flush=True)
        if k >= warmup:
            records_peer.append(rec_peer)
            records_ng.append(rec_ng)
    drift = rel(params, peer_params(popt))

    def stats(records: list[dict[str, float]], key: str) -> float:
        vals = [r[key] for r in records if key in r]
        return statistics.median(vals) if vals else float("nan")

    ng_med, peer_med = stats(records_ng, "wall"), stats(records_peer, "wall")
    ratio = ng_med / peer_med
    met = ratio <= 1.0
    walls_ng = [r["wall"] for r in records_ng]
    walls_peer = [r["wall"] for r in records_peer]
    rows = [
        ["natgrad ENGD(solver=\"woodbury\"), PyTorch adapter", ng_med, min(walls_ng), max(walls_ng), len(walls_ng)],
        ["rla-pinns RNGD(approximation=\"exact\") (ENGD-W)", peer_med, min(walls_peer), max(walls_peer),
         len(walls_peer)],
    ]
    ng_dir, ng_ls = stats(records_ng, "direction"), stats(records_ng, "line_search")
    p_dir, p_ls = stats(records_peer, "direction"), stats(records_peer, "line_search")
    p_fwd = peer_med - p_dir - p_ls
    phase_rows = [
        ["natgrad", "residuals, Jacobian J (N × P) and Jᵀ(JJᵀ + λI)⁻¹r", ng_dir,
         f"{stats(records_ng, 'evals'):.0f} batch losses", ng_ls],
        ["rla-pinns", f"forward Laplacian + layer inputs/output grads {p_fwd:.3g} s; JJᵀ, Cholesky, Jᵀ· "
         f"{p_dir:.3g} s", p_fwd + p_dir, "32 batch losses (f(θ) once more)", p_ls],
    ]
    versions = peer_versions()
    body = (
        f"Problem: the paper's 5-D Poisson (`−Δu = π² Σ cos(π xᵢ)` on [0, 1]⁵, u* = Σ cos(π xᵢ) on the "
        f"boundary), N_Ω = {points[0]}, N_∂Ω = {points[1]} resampled every step, MLP {arch} tanh "
        f"(P = {P}), float64 on the CPU, ENGD-W with damping {PAPER_DAMPING:g} and the grid line search "
        f"over 2⁰…2⁻³⁰ (31 step sizes) on both sides"
        + (" — **--quick: a tiny problem, NOT the paper's configuration; the figures mean nothing**" if quick
           else "")
        + f". One process, {torch.get_num_threads()} torch threads (the process default, shared by both "
        f"sides); {warmup} warm-up step each, then {steps} steps each, interleaved (peer, natgrad, peer, …), "
        "the same points and (up to rounding) the same weights on both sides every step.\n\n"
        "## Time per step\n\n"
        + markdown_table(["implementation", "median s/step", "min s", "max s", "steps"], rows)
        + f"\n\n- ENGD-W step no slower than the paper's code (ratio natgrad / rla-pinns ≤ 1.0): "
        f"{'met' if met else 'NOT met'} (ratio {ratio:.3f}: {ng_med:.3f} s vs {peer_med:.3f} s)\n\n"
        "Where the step goes (medians of the timed steps; the peer's split is timed by wrapping its "
        "optimiser's `_get_directions` and `_update_parameters` on the instance):\n\n"
        + markdown_table(["implementation", "direction: what", "direction s", "line search: what",
                          "line search s"], phase_rows)
        + "\n\n## Correctness of the comparison (step 0, not timed)\n\n"
        f"Same initial weights (natgrad's, copied into the peer's layers), same {N} points.\n\n"
        + markdown_table(["quantity", "natgrad", "rla-pinns", "relative difference"], [
            ["batch loss at θ₀", f"{chk['loss_ng']:.12e}", f"{chk['loss_peer']:.12e}", f"{chk['loss_rel']:.1e}"],
            ["ENGD-W direction d at θ₀ (‖d‖ = " f"{chk['dir_norm']:.3e})", "—", "—", f"{chk['dir_rel']:.2e}"],
            ["step size chosen by the line search", f"{chk['lr_ng']:.6g}", f"{chk['lr_peer']:.6g}", "—"],
            ["update θ₁ − θ₀", "—", "—", f"{chk['step_rel']:.2e}"],
            ["batch loss at θ₁", f"{chk['after_ng']:.6e}", f"{chk['after_peer']:.6e}",
             f"{abs(chk['after_ng'] - chk['after_peer']) / abs(chk['after_peer']):.1e}"],
        ])
        + f"\n\nnatgrad's Woodbury factorisation at step 0: {chk['factorisation']}. The peer's interior "
        "residual is Δu + f, natgrad's −Δu − f: the loss and the Gauss–Newton direction do not depend on "
        "that sign. With damping 3e-12 the N × N system is very ill-conditioned, so the two directions "
        "agree only to the extent rounding allows. After all "
        f"{warmup + steps} steps the two weight vectors differ by {drift:.1e} (relative).\n\n"
        "## How the peer was run\n\n"
        f"- rla-pinns work tree {peer['path']} (commit {peer_commit(peer['path'])}), imported from "
        "`RLA_PINNS_PATH`; nothing in it changed or stubbed.\n"
        f"- optimiser: `rla_pinns.optim.set_up_optimizer(layers, \"RNGD\", \"poisson\")` with argv "
        f"`--RNGD_approximation=exact --RNGD_damping={PAPER_DAMPING!r}` (the flags of the paper's best "
        f"ENGD-W run in `exp1_poisson5d`, whose damping was 3.1732e-12), giving {fmt_args(popt_args)}.\n"
        f"- network: `train.set_up_layers({PEER_MODEL!r}, \"poisson\", 5)` in float64"
        + (" (--quick: an equivalent smaller `Linear`/`Tanh` list)" if quick else "")
        + "; targets from `poisson_equation.f_cos_sum` / `u_cos_sum`.\n"
        "- one step = `optimizer.zero_grad()`, `optimizer.step(X_Ω, y_Ω, X_∂Ω, y_∂Ω)`, two `.item()` — the "
        "body of `train.py`'s loop. Not timed (as in natgrad's case): drawing the points, the peer's "
        "logging at logged steps (L2 error on 30,000 points, wandb, checkpoints).\n"
        f"- peer dependencies: {versions}.\n"
    )
    summary = (f"SUMMARY|{BENCH}{' (--quick: tiny problem)' if quick else ''}|{ng_med:.3f} s/step|"
               f"{peer_med:.3f} s/step|{ratio:.3f}|{GOAL}|{'met' if met else 'NOT met'}")
    return body, summary


def fmt_args(d: dict[str, Any]) -> str:
    parts = []
    for k, v in d.items():
        if isinstance(v, tuple) and v and v[0] == "grid_line_search":
            g = v[1]
            v = f"grid_line_search over {len(g)} step sizes {g[0]:.3g}…{g[-1]:.3g}"
        parts.append(f"{k.removeprefix('RNGD_')}={v}")
    return "`" + ", ".join(parts) + "`"


def peer_versions() -> str:
    import importlib.metadata as md

    out = []
    for pkg in ("einops", "matplotlib", "tueplots", "backpack-for-pytorch", "wandb", "hessianfree"):
        try:
            dist = md.distribution(pkg)
            where = ""
            if pkg == "hessianfree":  # not on PyPI: say where it was installed from
                import json

                url = json.loads(dist.read_text("direct_url.json") or "{}").get("url", "")
                where = f" (installed from {url})" if url else ""
            out.append(f"{pkg} {dist.version}{where}")
        except md.PackageNotFoundError:
            out.append(f"{pkg} (not installed)")
    return ", ".join(out)


def main() -> None:
    args = parse()
    try:
        peer = import_peer()
    except PeerUnavailable as exc:
        reason = str(exc)
        print(f"[pinn_peer] rla-pinns NOT run: {reason}.\n"
              "[pinn_peer] To run it: clone github andresguzco/rla-pinns, install its runtime dependencies "
              "(einops, matplotlib, tueplots, backpack-for-pytorch, wandb, hessianfree from github "
              "ltatzel/PyTorchHessianFree) beside natgrad, and set RLA_PINNS_PATH to the clone.", flush=True)
        kept = RESULTS / (f"{NAME}-quick.md" if args.quick else f"{NAME}.md")
        if kept.exists() and "was **not run**" not in kept.read_text():
            # Do not overwrite a measured comparison with "not run".
            print(f"[pinn_peer] kept the last measured comparison in {kept}", flush=True)
            print(f"SUMMARY|{BENCH}|not run here|not run here (RLA_PINNS_PATH unset)||ratio ≤ 1.0|"
                  f"not run; see {kept.name}")
            return
        body = (
            "The peer (rla-pinns, the paper's code) was **not run**, so there is no comparison in this run.\n\n"
            f"Reason: {reason}.\n\n"
            "To run it, set `RLA_PINNS_PATH` to a work tree of github andresguzco/rla-pinns in an environment "
            "that has natgrad and the peer's runtime dependencies (einops, matplotlib, tueplots, "
            "backpack-for-pytorch, wandb, hessianfree from github ltatzel/PyTorchHessianFree); see the "
            "docstring of `benchmarks/bench_pinn_peer.py`.\n"
        )
        write_result(NAME, TITLE, body, quick=args.quick)
        return
    try:
        body, summary = run(peer, args.quick, args.repeats)
    except Exception as exc:  # noqa: BLE001 - a failing peer is reported, not a crash of run_all
        traceback.print_exc()
        body = (
            "The comparison **failed** in this run, so no figures are reported.\n\n"
            f"Error: `{type(exc).__name__}: {exc}`\n"
        )
        write_result(NAME, TITLE, body, quick=args.quick)
        sys.exit(1)
    write_result(NAME, TITLE, body, quick=args.quick)
    print(summary)


if __name__ == "__main__":
    main()
