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

    Built by ``make_poisson``; each argument is kept as the attribute of the
    same name.

    Parameters
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
    dim : int
        Space dimension ``d``.
    n_interior, n_boundary : int
        Points per batch drawn by ``sample`` inside and on the boundary.
    n_params : int
        Number of network parameters ``P`` (the length of ``model.params``).

    Raises
    ------
    TypeError, ValueError
        The class itself checks nothing; ``l2_error`` and ``u`` raise these
        (from ``model.unflatten``) for a ``flat_params`` that is not a vector
        of the model's framework, length and dtype.

    Notes
    -----
    A plain dataclass, so a benchmark can run any optimiser on it with
    ``fit(optimizer, problem.model, problem.sample, steps,
    metric=problem.l2_error)``: ``sample`` takes the step number, as ``fit``
    passes it, and returns the ``(x_interior, x_boundary)`` batch the model
    expects.  ``u`` and ``l2_error`` run without autograd (``torch.no_grad``).

    Examples
    --------
    >>> problem = make_poisson(dim=2, hidden=(3,), n_interior=6, n_boundary=4,
    ...                        n_test=20)
    >>> x_in, x_bd = problem.sample(1)
    >>> tuple(x_in.shape), tuple(x_bd.shape), problem.n_params
    ((6, 2), (4, 2), 13)
    >>> tuple(problem.u(problem.model.params, x_in).shape)
    (6,)
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
        The model (float64, CPU), the point sampler, the error metric and
        the sizes.

    Raises
    ------
    ValueError
        ``laplacian`` is not ``"forward"`` or ``"hessian"``.
    ImportError
        PyTorch is not installed.

    Notes
    -----
    The problem is ``−Δu = f`` on ``Ω = [0, 1]^d`` with ``u = u*`` on
    ``∂Ω``, where ``u*(x) = Σᵢ cos(π xᵢ)``; since
    ``Δ cos(π xᵢ) = −π² cos(π xᵢ)``, the right-hand side is
    ``f(x) = π² Σᵢ cos(π xᵢ) = π² u*(x)``.  The network is an MLP
    ``d → hidden… → 1`` with tanh activations (``torch.nn.Linear`` default
    initialisation), so ``n_params = Σ (nₖ + 1) nₖ₊₁`` over consecutive
    widths (10 065 for the defaults).  The model's outputs are the
    ``n_interior + n_boundary`` residuals scaled by ``1/√n_interior`` and
    ``1/√n_boundary`` (``weights="mean"``), so ``½‖r‖²`` is the loss of the
    module docstring and ENGD/SPRING apply directly.

    Interior points are uniform in ``Ω``; each boundary point is uniform on
    a face chosen uniformly among the ``2d`` faces (one coordinate set to 0
    or 1), which is uniform on ``∂Ω`` as all faces have equal area.  Each
    step's points come from a generator seeded with
    ``seed·1 000 003 + step``, so runs are reproducible and every optimiser
    sees the same points; the test set (seed ``10 000 + seed``) is fixed.
    Building the problem calls ``torch.manual_seed(seed)``, which also
    reseeds PyTorch's global generator.  ``"forward"`` propagates value,
    gradient and Laplacian through the network in one forward pass (the
    forward Laplacian of Li et al. 2023); ``"hessian"`` takes the trace of
    the ``d × d`` Hessian from ``torch.func.hessian`` (``d``
    forward-over-reverse passes; kept as a reference).

    Examples
    --------
    >>> from natgrad.optim import ENGD
    >>> problem = make_poisson(dim=2, hidden=(8,), n_interior=20, n_boundary=8,
    ...                        n_test=50)
    >>> problem.n_params
    33
    >>> batch = problem.sample(0)
    >>> params = problem.model.params
    >>> error0 = problem.l2_error(params)
    >>> params, info = ENGD(damping=1e-6).step(params, problem.model, batch)
    >>> info["step_taken"], bool(problem.l2_error(params) < error0)
    (True, True)
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
