"""Autodiff adapters on the 5-D Poisson PINN of arXiv 2505.12149 (issue #6).

Problem: ``−Δu = π² Σ cos(π xᵢ)`` on ``[0, 1]⁵``, a tanh MLP
5→64→64→48→48→1 (P = 10,065), N = 3000 interior + 500 boundary points,
float64; residuals ``−Δu_θ(x) − f(x)`` and ``u_θ(y) − u*(y)`` with the
"mean" group weights.  The same network (same weights) in PyTorch and JAX.

Tables:

1. *Adapter overhead*: each adapter call against the same computation
   written directly with the framework (``torch.func`` / jitted JAX), runs
   interleaved so machine load hits both alike (goal: ≤ 10 %).
2. *Jacobian*: ``(N, P)`` Jacobian of the residuals, PyTorch vs JAX, with
   the forward Laplacian and with the Hessian-trace Laplacian inside
   (goal: ≤ 1.0 s on two cores).
3. *Laplacian*: residual evaluation only, forward Laplacian vs Hessian trace.

Run: ``python benchmarks/bench_adapters.py`` (``--quick``: 350 points, 1 repeat).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import interleaved, markdown_table, parse_args, write_result  # noqa: E402

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import torch  # noqa: E402
from torch.func import functional_call, grad_and_value, hessian, vmap  # noqa: E402

from natgrad.adapters.base import DEFAULT_MEMORY_BUDGET, point_chunk  # noqa: E402
from natgrad.adapters.jax import JaxModel  # noqa: E402
from natgrad.adapters.jax import laplacian as jax_laplacian  # noqa: E402
from natgrad.adapters.torch import TorchModel  # noqa: E402
from natgrad.adapters.torch import laplacian as torch_laplacian  # noqa: E402

SIZES = (5, 64, 64, 48, 48, 1)
DT = torch.float64


def points(n_in: int, n_bd: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.random((n_in, 5))
    Y = rng.random((n_bd, 5))
    Y[np.arange(n_bd), rng.integers(0, 5, n_bd)] = rng.integers(0, 2, n_bd)
    return X, Y


def weights(seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [
        (rng.uniform(-1, 1, (b, a)) / math.sqrt(a), rng.uniform(-1, 1, b) / math.sqrt(a))
        for a, b in zip(SIZES[:-1], SIZES[1:])
    ]


# -- PyTorch -------------------------------------------------------------------


def torch_problem(W, lap: str):
    layers = []
    for i, (a, b) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        layers.append(torch.nn.Linear(a, b, dtype=DT))
        if i < len(SIZES) - 2:
            layers.append(torch.nn.Tanh())
    net = torch.nn.Sequential(*layers)
    params = {}
    for i, (Wi, bi) in enumerate(W):
        params[f"{2 * i}.weight"] = torch.tensor(Wi)
        params[f"{2 * i}.bias"] = torch.tensor(bi)

    def u(p, x):
        return functional_call(net, p, (x,))[..., 0]

    def lap_u(p, x):
        if lap == "forward":
            return torch_laplacian(lambda y: u(p, y), x)
        return torch.trace(hessian(lambda y: u(p, y))(x))

    def interior(p, x):
        return -lap_u(p, x) - math.pi**2 * torch.cos(math.pi * x).sum()

    def boundary(p, x):
        return u(p, x) - torch.cos(math.pi * x).sum()

    return params, interior, boundary


def torch_unflat(params):
    """The flat vector of a dict of tensors and the function that splits it again."""
    names = list(params)
    shapes = [params[k].shape for k in names]
    numels = [params[k].numel() for k in names]
    theta = torch.cat([params[k].reshape(-1) for k in names])

    def unflat(th):
        return {k: t.view(s) for k, t, s in zip(names, torch.split(th, numels), shapes)}

    return theta, unflat


def torch_raw_residuals(params, interior, boundary):
    """The weighted pointwise residuals on flat parameters, written directly with torch.func."""
    _, unflat = torch_unflat(params)

    def res(th, batch):
        p = unflat(th)
        return torch.cat([vmap(term, in_dims=(None, 0))(p, X) / math.sqrt(X.shape[0])
                          for term, X in zip((interior, boundary), batch)])

    return res


def torch_raw_jacobian(params, interior, boundary, batch, chunk):
    """The same computation written directly with torch.func."""
    theta, unflat = torch_unflat(params)
    rows, vals = [], []
    for term, X in zip((interior, boundary), batch):
        c = 1.0 / math.sqrt(X.shape[0])
        f = vmap(grad_and_value(lambda th, x: term(unflat(th), x)), in_dims=(None, 0))
        for part in torch.split(X, chunk):
            G, v = f(theta, part)
            rows.append(G * c)
            vals.append(v * c)
    return torch.cat(vals), torch.cat(rows)


# -- JAX -------------------------------------------------------------------------


def jax_problem(W, lap: str):
    params = [(jnp.asarray(Wi), jnp.asarray(bi)) for Wi, bi in W]

    def u(p, x):
        for Wi, bi in p[:-1]:
            x = jnp.tanh(Wi @ x + bi)
        return (p[-1][0] @ x + p[-1][1])[0]

    def lap_u(p, x):
        if lap == "forward":
            return jax_laplacian(lambda y: u(p, y), x)
        return jnp.trace(jax.hessian(lambda y: u(p, y))(x))

    def interior(p, x):
        return -lap_u(p, x) - math.pi**2 * jnp.sum(jnp.cos(math.pi * x))

    def boundary(p, x):
        return u(p, x) - jnp.sum(jnp.cos(math.pi * x))

    return params, interior, boundary


def jax_raw_residuals(params, interior, boundary):
    """The weighted pointwise residuals on flat parameters, written directly with JAX."""
    from jax.flatten_util import ravel_pytree

    _, unravel = ravel_pytree(params)

    def res(th, batch):
        p = unravel(th)
        return jnp.concatenate([jax.vmap(term, in_axes=(None, 0))(p, X) / math.sqrt(X.shape[0])
                                for term, X in zip((interior, boundary), batch)])

    return res


def jax_raw_jacobian(params, interior, boundary, chunk):
    from jax.flatten_util import ravel_pytree

    theta, unravel = ravel_pytree(params)

    @jax.jit
    def jac(theta, X, Y):
        rs, Js = [], []
        for term, P in ((interior, X), (boundary, Y)):
            vg = jax.value_and_grad(lambda th, x: term(unravel(th), x))
            r, J = jax.lax.map(lambda x: vg(theta, x), P, batch_size=min(chunk, P.shape[0]))
            c = 1.0 / math.sqrt(P.shape[0])
            rs.append(r * c)
            Js.append(J * c)
        return jnp.concatenate(rs), jnp.concatenate(Js)

    return theta, jac


# -- timing ------------------------------------------------------------------------


def interleaved_runs(fns, repeats: int):
    """Medians of interleaved runs after two warm-ups (JIT compilation, allocator)."""
    return interleaved(fns, repeats, warmup=2)


def block(x):
    if isinstance(x, (tuple, list)):
        return [block(y) for y in x]
    if isinstance(x, jax.Array):
        return x.block_until_ready()
    return x


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    n_in, n_bd = (300, 50) if args.quick else (3000, 500)
    repeats = args.repeats or (1 if args.quick else 5)
    W = weights()
    Xn, Yn = points(n_in, n_bd)
    tb = (torch.tensor(Xn), torch.tensor(Yn))
    jb = (jnp.asarray(Xn), jnp.asarray(Yn))
    N = n_in + n_bd

    tparams, tin, tbd = torch_problem(W, "forward")
    tmodel = TorchModel.from_pointwise([tin, tbd], tparams)
    jparams, jin, jbd = jax_problem(W, "forward")
    jmodel = JaxModel.from_pointwise([jin, jbd], jparams)
    P = tmodel.n_params
    tt, jt = tmodel.params, jmodel.params
    chunk = tmodel_chunk = point_chunk(N, P, 8, None, DEFAULT_MEMORY_BUDGET)  # the adapters' default

    # correctness guard: both frameworks compute the same Jacobian
    rt, Jt = tmodel.residuals_and_jacobian(tt, tb)
    rj, Jj = jmodel.residuals_and_jacobian(jt, jb)
    diff = float(np.max(np.abs(Jt.numpy() - np.asarray(Jj)))) / float(np.max(np.abs(np.asarray(Jj))))

    # -- 1. overhead --------------------------------------------------------------
    rows = []
    raw_t = lambda: torch_raw_jacobian(tparams, tin, tbd, tb, tmodel_chunk)  # noqa: E731
    ada_t = lambda: tmodel.residuals_and_jacobian(tt, tb)  # noqa: E731
    a, b = interleaved_runs([raw_t, ada_t], repeats)
    rows.append(["PyTorch", "jacobian (pointwise)", a, b, 100 * (b / a - 1)])
    _, jraw = jax_raw_jacobian(jparams, jin, jbd, chunk)
    raw_j = lambda: block(jraw(jt, *jb))  # noqa: E731
    ada_j = lambda: block(jmodel.residuals_and_jacobian(jt, jb))  # noqa: E731
    a, b = interleaved_runs([raw_j, ada_j], repeats)
    rows.append(["JAX", "jacobian (pointwise)", a, b, 100 * (b / a - 1)])

    # small calls, where Python overhead shows most: residuals and jvp
    res_t = torch_raw_residuals(tparams, tin, tbd)
    raw_res_t = lambda: res_t(tt, tb)  # noqa: E731
    ada_res_t = lambda: tmodel.residuals(tt, tb)  # noqa: E731
    a, b = interleaved_runs([raw_res_t, ada_res_t], 5 * repeats)
    rows.append(["PyTorch", "residuals", a, b, 100 * (b / a - 1)])
    v_t = torch.randn(P, dtype=DT)
    raw_jvp_t = lambda: torch.func.jvp(lambda th: res_t(th, tb), (tt,), (v_t,))[1]  # noqa: E731
    a, b = interleaved_runs([raw_jvp_t, lambda: tmodel.jvp(tt, tb, v_t)], 3 * repeats)
    rows.append(["PyTorch", "jvp", a, b, 100 * (b / a - 1)])
    res_j = jax_raw_residuals(jparams, jin, jbd)
    raw_res_j = jax.jit(res_j)
    a, b = interleaved_runs([lambda: block(raw_res_j(jt, jb)), lambda: block(jmodel.residuals(jt, jb))], 5 * repeats)
    rows.append(["JAX", "residuals", a, b, 100 * (b / a - 1)])
    v_j = jnp.asarray(np.random.default_rng(1).standard_normal(P))
    raw_jvp_j = jax.jit(lambda th, b, v: jax.jvp(lambda t: res_j(t, b), (th,), (v,))[1])
    a, b = interleaved_runs([lambda: block(raw_jvp_j(jt, jb, v_j)), lambda: block(jmodel.jvp(jt, jb, v_j))], 5 * repeats)
    rows.append(["JAX", "jvp", a, b, 100 * (b / a - 1)])

    # the remaining calls of the protocol: vjp, loss_and_grad, hvp, ggn_vp
    u_t = torch.randn(N, dtype=DT)
    res_tb = lambda th: res_t(th, tb)  # noqa: E731
    loss_t = lambda th: 0.5 * torch.sum(res_tb(th) ** 2)  # noqa: E731

    def raw_ggn_t():
        jv = torch.func.jvp(res_tb, (tt,), (v_t,))[1]
        return torch.func.vjp(res_tb, tt)[1](jv)[0]

    for call, raw, ada, reps in [
        ("vjp", lambda: torch.func.vjp(res_tb, tt)[1](u_t)[0], lambda: tmodel.vjp(tt, tb, u_t), 3),
        ("loss_and_grad", lambda: torch.func.grad_and_value(loss_t)(tt), lambda: tmodel.loss_and_grad(tt, tb), 3),
        ("hvp", lambda: torch.func.jvp(torch.func.grad(loss_t), (tt,), (v_t,))[1],
         lambda: tmodel.hvp(tt, tb, v_t), 2),
        ("ggn_vp", raw_ggn_t, lambda: tmodel.ggn_vp(tt, tb, v_t), 2),
    ]:
        a, b = interleaved_runs([raw, ada], reps * repeats)
        rows.append(["PyTorch", call, a, b, 100 * (b / a - 1)])

    u_j = jnp.asarray(np.random.default_rng(2).standard_normal(N))

    def loss_j(th, b):
        return 0.5 * jnp.sum(res_j(th, b) ** 2)

    def ggn_j(th, b, v):
        r, jv = jax.jvp(lambda t: res_j(t, b), (th,), (v,))
        return jax.vjp(lambda t: res_j(t, b), th)[1](jv)[0]

    raw_vjp_j = jax.jit(lambda th, b, u: jax.vjp(lambda t: res_j(t, b), th)[1](u)[0])
    raw_lg_j = jax.jit(jax.value_and_grad(loss_j))
    raw_hvp_j = jax.jit(lambda th, b, v: jax.jvp(lambda t: jax.grad(loss_j)(t, b), (th,), (v,))[1])
    raw_ggn_j = jax.jit(ggn_j)
    for call, raw, ada, reps in [
        ("vjp", lambda: block(raw_vjp_j(jt, jb, u_j)), lambda: block(jmodel.vjp(jt, jb, u_j)), 5),
        ("loss_and_grad", lambda: block(raw_lg_j(jt, jb)), lambda: block(jmodel.loss_and_grad(jt, jb)), 5),
        ("hvp", lambda: block(raw_hvp_j(jt, jb, v_j)), lambda: block(jmodel.hvp(jt, jb, v_j)), 3),
        ("ggn_vp", lambda: block(raw_ggn_j(jt, jb, v_j)), lambda: block(jmodel.ggn_vp(jt, jb, v_j)), 3),
    ]:
        a, b = interleaved_runs([raw, ada], reps * repeats)
        rows.append(["JAX", call, a, b, 100 * (b / a - 1)])
    worst = max(r[4] for r in rows)
    verdict = (f"Largest overhead {worst:.1f} % (goal ≤ 10 %: {'met' if worst <= 10 else 'NOT met'}).  "
               "Negative overheads are timing noise: the adapter calls the same framework "
               "functions as the raw call.")
    table1 = markdown_table(["framework", "call", "raw [s]", "adapter [s]", "overhead [%]"], rows)
    table1 += "\n\n" + verdict

    # -- 2. Jacobian, JAX vs PyTorch, forward vs Hessian-trace Laplacian ----------
    hparams, hin, hbd = torch_problem(W, "hessian")
    thmodel = TorchModel.from_pointwise([hin, hbd], hparams)
    jhparams, jhin, jhbd = jax_problem(W, "hessian")
    jhmodel = JaxModel.from_pointwise([jhin, jhbd], jhparams)
    t_tf, t_th, t_jf, t_jh = interleaved_runs(
        [
            lambda: tmodel.jacobian(tt, tb),
            lambda: thmodel.jacobian(tt, tb),
            lambda: block(jmodel.jacobian(jt, jb)),
            lambda: block(jhmodel.jacobian(jt, jb)),
        ],
        repeats,
    )
    goal = "≤ 1.0 s" if not args.quick else "(quick: smaller N)"
    table2 = markdown_table(
        ["Laplacian inside the residual", "PyTorch [s]", "JAX [s]", "PyTorch / JAX"],
        [
            ["forward Laplacian", t_tf, t_jf, t_tf / t_jf],
            ["Hessian trace", t_th, t_jh, t_th / t_jh],
        ],
    )

    # -- 3. Laplacian alone (residual evaluation) ---------------------------------
    r_tf, r_th = interleaved_runs([lambda: tmodel.residuals(tt, tb), lambda: thmodel.residuals(tt, tb)], 3 * repeats)
    r_jf, r_jh = interleaved_runs(
        [lambda: block(jmodel.residuals(jt, jb)), lambda: block(jhmodel.residuals(jt, jb))], 3 * repeats
    )
    lap_diff = float(torch.max(torch.abs(tmodel.residuals(tt, tb) - thmodel.residuals(tt, tb))))
    table3 = markdown_table(
        ["framework", "forward Laplacian [s]", "Hessian trace [s]", "speed-up"],
        [["PyTorch", r_tf, r_th, r_th / r_tf], ["JAX", r_jf, r_jh, r_jh / r_jf]],
    )

    body = (
        f"5-D Poisson PINN, MLP {'→'.join(map(str, SIZES))} tanh, P = {P}, "
        f"N = {n_in} interior + {n_bd} boundary = {N} points, float64; "
        f"median of {repeats} interleaved runs after two warm-ups; "
        f"torch threads: {torch.get_num_threads()}; chunk = {chunk} points.\n\n"
        f"Check: PyTorch and JAX Jacobians agree to {diff:.1e} (relative, max-norm); "
        f"forward-Laplacian and Hessian-trace residuals agree to {lap_diff:.1e}.\n\n"
        "## 1. Adapter overhead vs the raw framework call (goal ≤ 10 %)\n\n"
        f"{table1}\n\n"
        f"## 2. Jacobian (N × P) of the residuals, goal {goal}\n\n"
        f"{table2}\n\n"
        "## 3. Residuals only: forward Laplacian vs Hessian trace\n\n"
        f"{table3}\n"
    )
    write_result("adapters", "Autodiff adapters: overhead, PINN Jacobian, forward Laplacian", body, args.quick)


if __name__ == "__main__":
    main()
