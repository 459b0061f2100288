r"""The Poisson PINN benchmark of arXiv 2505.12149, written with PyTorch.

Solve ``−Δu = f`` on ``[0, 1]^d`` with Dirichlet data from the exact solution

.. math::  u^*(x) = \sum_{i=1}^d \cos(π x_i), \qquad f = π² \sum_i \cos(π x_i),

by a tanh MLP ``u_θ``.  The residuals are, per interior point ``x`` and per
boundary point ``y``,

.. math::  r_Ω(x) = −Δu_θ(x) − f(x), \qquad r_{∂Ω}(y) = u_θ(y) − u^*(y),

and the loss is ``½ mean r_Ω² + ½ mean r_∂Ω²`` (``weights="mean"`` in
:meth:`natgrad.adapters.torch.TorchModel.from_pointwise`).  The module is
shared by ``python -m natgrad.demo``, ``benchmarks/bench_pinn.py`` and the
documentation gallery; it imports PyTorch when a problem is built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

__all__ = ["PoissonProblem", "make_poisson"]


@dataclass
class PoissonProblem:
    """A Poisson PINN: the model, a batch sampler and the error metric.

    Attributes
    ----------
    model : natgrad.adapters.torch.TorchModel
        Pointwise model with the interior and boundary residual groups.
    sample : callable
        ``sample(step) -> (x_interior, x_boundary)``: fresh uniform points
        (deterministic in ``step``).
    l2_error : callable
        ``l2_error(flat_params) -> float``: relative L2 error
        ``‖u_θ − u*‖/‖u*‖`` on a fixed set of test points.
    u : callable
        ``u(flat_params, X) -> (n,)`` the network on a batch of points.
    dim, n_interior, n_boundary, n_params : int
    """

    model: Any
    sample: Callable[[int], Any]
    l2_error: Callable[[Any], float]
    u: Callable[[Any, Any], Any]
    dim: int
    n_interior: int
    n_boundary: int
    n_params: int


def make_poisson(
    dim: int = 5,
    hidden: Sequence[int] = (64, 64, 48, 48),
    n_interior: int = 3000,
    n_boundary: int = 500,
    n_test: int = 10_000,
    seed: int = 0,
    laplacian: str = "forward",
) -> PoissonProblem:
    """Build the ``dim``-dimensional Poisson PINN with a tanh MLP.

    Parameters
    ----------
    dim : int
        Space dimension ``d``.
    hidden : sequence of int
        Hidden layer widths; the paper's network is ``5→64→64→48→48→1``.
    n_interior, n_boundary : int
        Collocation points per step (resampled every step by ``sample``).
    n_test : int
        Points of the fixed test set for the relative L2 error.
    seed : int
        Seed of the initial weights and of the point streams.
    laplacian : {"forward", "hessian"}
        How ``Δu`` is computed inside the residual: the forward Laplacian of
        :func:`natgrad.adapters.torch.laplacian` or the trace of the Hessian.

    Returns
    -------
    PoissonProblem
    """
    import torch
    from torch.func import functional_call, hessian

    from natgrad.adapters.torch import TorchModel

    dtype = torch.float64
    torch.manual_seed(seed)
    sizes = (dim, *hidden, 1)
    layers: list[Any] = []
    for i in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[i], sizes[i + 1], dtype=dtype))
        if i < len(sizes) - 2:
            layers.append(torch.nn.Tanh())
    net = torch.nn.Sequential(*layers)
    params = {k: v.detach().clone() for k, v in net.named_parameters()}

    def u_point(p: Any, x: Any) -> Any:
        return functional_call(net, p, (x,))[..., 0]

    def u_star(x: Any) -> Any:
        return torch.cos(math.pi * x).sum(-1)

    if laplacian == "forward":
        from natgrad.adapters.torch import laplacian as forward_laplacian

        def lap(p: Any, x: Any) -> Any:
            return forward_laplacian(lambda y: u_point(p, y), x)

    elif laplacian == "hessian":

        def lap(p: Any, x: Any) -> Any:
            return torch.trace(hessian(lambda y: u_point(p, y))(x))

    else:
        raise ValueError(f"laplacian must be 'forward' or 'hessian', got {laplacian!r}")

    def interior(p: Any, x: Any) -> Any:
        return -lap(p, x) - math.pi**2 * u_star(x)

    def boundary(p: Any, x: Any) -> Any:
        return u_point(p, x) - u_star(x)

    model = TorchModel.from_pointwise([interior, boundary], params, weights="mean")

    def sample(step: int) -> tuple[Any, Any]:
        g = torch.Generator().manual_seed(seed * 1_000_003 + step)
        x_in = torch.rand(n_interior, dim, generator=g, dtype=dtype)
        x_bd = torch.rand(n_boundary, dim, generator=g, dtype=dtype)
        # Put each boundary point on a random face: one coordinate set to 0 or 1.
        face = torch.randint(0, dim, (n_boundary,), generator=g)
        side = torch.randint(0, 2, (n_boundary,), generator=g).to(dtype)
        x_bd[torch.arange(n_boundary), face] = side
        return x_in, x_bd

    g_test = torch.Generator().manual_seed(10_000 + seed)
    x_test = torch.rand(n_test, dim, generator=g_test, dtype=dtype)
    u_test = u_star(x_test)
    u_test_norm = float(torch.linalg.vector_norm(u_test))

    def u(flat: Any, X: Any) -> Any:
        with torch.no_grad():
            return functional_call(net, model.unflatten(flat), (X,))[..., 0]

    def l2_error(flat: Any) -> float:
        return float(torch.linalg.vector_norm(u(flat, x_test) - u_test)) / u_test_norm

    n_params = sum(v.numel() for v in params.values())
    return PoissonProblem(model, sample, l2_error, u, dim, n_interior, n_boundary, n_params)
