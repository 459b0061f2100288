"""natgrad's optimisers as a ``torch.optim.Optimizer``.

A plain PyTorch loop switches to ENGD-W or SPRING in three changed lines::

    opt = Optimizer(net.parameters(), ENGD(damping=1e-6))   # was torch.optim.Adam(...)
    closure = lambda: net(X)[:, 0] - y                       # the residuals, no backward()
    opt.step(closure)                                        # was loss.backward(); opt.step()

The closure returns what the optimiser works on, computed from the module's
*current* parameters: the residual vector ``r`` (``loss="squared"``, loss
``½‖r‖²``: ENGD, SPRING, and any first-order method), the per-sample losses
(``loss="mean"``: FNGD, and any first-order method), or a 0-d loss
(first-order methods and saddle-free Newton only).  It must not call
``backward()``: the face differentiates it itself (Jacobian rows by one
batched backward pass, Hessian-vector products by double backward).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import torch

from .. import validation
from ..adapters.base import check_loss
from . import check_optimizer as _check_optimizer

__all__ = ["Optimizer"]


class _ClosureModel:
    """The model protocol of :mod:`natgrad.optim` over a closure and the
    tensors it reads: every call loads the flat vector it is given into the
    parameters first, so the closure sees the values the optimiser asks about."""

    def __init__(self, params: list[torch.Tensor], closure: Callable[[], Any], loss: str) -> None:
        self._params = params
        self._closure = closure
        self.loss = loss
        self.calls = 0

    def load(self, flat: torch.Tensor) -> None:
        with torch.no_grad():
            offset = 0
            for p in self._params:
                p.copy_(flat[offset : offset + p.numel()].view_as(p))
                offset += p.numel()

    def _output(self) -> torch.Tensor:
        self.calls += 1
        out = self._closure()
        if not isinstance(out, torch.Tensor) or out.ndim > 1:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise TypeError(
                f"closure (call {self.calls}) must return a 1-D tensor of residuals or per-sample "
                f"losses, or a 0-d loss; got {shape}"
            )
        return out

    def _vector(self, out: torch.Tensor) -> torch.Tensor:
        if out.ndim != 1:
            raise TypeError(
                f"closure (call {self.calls}) returned a 0-d loss, but this optimiser needs the "
                f"vector of {'residuals' if self.loss == 'squared' else 'per-sample losses'}"
            )
        return out

    def _scalar(self, out: torch.Tensor) -> torch.Tensor:
        if out.ndim == 0:
            return out
        return 0.5 * (out @ out) if self.loss == "squared" else out.mean()

    def _flat(self, grads: Iterable[torch.Tensor | None], lead: tuple[int, ...] = ()) -> torch.Tensor:
        parts = [
            (g if g is not None else torch.zeros(lead + tuple(p.shape), dtype=p.dtype, device=p.device))
            .reshape(*lead, -1)
            for g, p in zip(grads, self._params)
        ]
        return torch.cat(parts, dim=-1)

    def residuals(self, flat: torch.Tensor, batch: Any) -> torch.Tensor:
        self.load(flat)
        with torch.no_grad():
            return self._vector(self._output()).detach()

    def residuals_and_jacobian(self, flat: torch.Tensor, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        self.load(flat)
        with torch.enable_grad():
            r = self._vector(self._output())
            n = r.shape[0]
            eye = torch.eye(n, dtype=r.dtype, device=r.device)
            # one vmapped backward pass gives all n rows of the Jacobian
            rows = torch.autograd.grad(r, self._params, grad_outputs=eye, is_grads_batched=True, allow_unused=True)
        return r.detach(), self._flat(rows, (n,))

    def jacobian(self, flat: torch.Tensor, batch: Any) -> torch.Tensor:
        return self.residuals_and_jacobian(flat, batch)[1]

    def loss_and_grad(self, flat: torch.Tensor, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        self.load(flat)
        with torch.enable_grad():
            loss = self._scalar(self._output())
            grads = torch.autograd.grad(loss, self._params, allow_unused=True)
        return loss.detach(), self._flat(grads)

    def hvp(self, flat: torch.Tensor, batch: Any, v: torch.Tensor) -> torch.Tensor:
        self.load(flat)
        with torch.enable_grad():
            loss = self._scalar(self._output())
            g = self._flat(torch.autograd.grad(loss, self._params, create_graph=True, allow_unused=True))
            if not g.requires_grad:  # the gradient does not depend on θ: H = 0
                return torch.zeros_like(g)
            hv = torch.autograd.grad(g @ v, self._params, allow_unused=True)
        return self._flat(hv).detach()


class Optimizer(torch.optim.Optimizer):
    """A natgrad optimiser driven the PyTorch way.

    Parameters
    ----------
    params : iterable of tensors or of parameter groups
        ``module.parameters()``, as for any ``torch.optim.Optimizer``.  All
        groups are optimised together as one flat vector (natgrad's optimisers
        have one set of hyper-parameters).
    optimizer : natgrad optimiser
        An object of :mod:`natgrad.optim` (``ENGD(...)``, ``SPRING(...)``,
        ``Adam(...)``...): its hyper-parameters and state are used as they are.
    loss : {"squared", "mean"}, default "squared"
        What a closure's vector output is: residuals (loss ``½‖r‖²``) or
        per-sample losses (loss their mean).

    Attributes
    ----------
    optimizer : natgrad optimiser
        The optimiser doing the work.
    last_info : dict or None
        The ``info`` of the last step (loss, step size, ``step_taken``, ...).

    Raises
    ------
    TypeError
        ``optimizer`` has no ``step``/``state_dict``; a step without a closure,
        or a closure returning something other than a 0-d or 1-D tensor.
    ValueError
        ``loss`` is not "squared" or "mean"; no parameters.

    Notes
    -----
    One step reads the parameters as a flat vector ``θ``, calls
    ``optimizer.step(θ, model, None)`` with a model that evaluates the
    closure at any ``θ'`` by loading ``θ'`` into the parameters, and writes
    the new ``θ`` back.  The closure's Jacobian
    ``J = ∂r/∂θ`` is built by one batched backward pass
    (``torch.autograd.grad(..., is_grads_batched=True)``), so ENGD-W's step is
    the one of :class:`natgrad.optim.ENGD` on the flat API, to rounding.  A
    step is atomic: if the closure raises, the parameters are restored.
    ``state_dict()`` holds the natgrad optimiser's state under ``"natgrad"``
    beside PyTorch's entries, and round-trips through ``torch.save`` and
    ``torch.load``.

    Examples
    --------
    >>> import torch
    >>> from natgrad.optim import ENGD
    >>> from natgrad.frameworks.torch import Optimizer
    >>> _ = torch.manual_seed(0)
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).double()
    >>> X = torch.rand(32, 2, dtype=torch.float64)
    >>> y = torch.sin(X.sum(1))
    >>> opt = Optimizer(net.parameters(), ENGD(damping=1e-8))
    >>> losses = [float(opt.step(lambda: net(X)[:, 0] - y)) for _ in range(10)]
    >>> all(later <= earlier for earlier, later in zip(losses, losses[1:]))  # the line search never goes up
    True
    >>> losses[-1] < losses[0]
    True
    """

    def __init__(self, params: Any, optimizer: Any, *, loss: str = "squared") -> None:
        _check_optimizer(optimizer)
        super().__init__(params, {})
        self.optimizer = optimizer
        self.loss = check_loss(loss)
        self.last_info: dict[str, Any] | None = None
        if not self._tensors():
            raise ValueError("params is empty: nothing to optimise")

    def _tensors(self) -> list[torch.Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    def step(self, closure: Callable[[], Any] | None = None) -> torch.Tensor:  # type: ignore[override]
        """One step of the natgrad optimiser.

        Parameters
        ----------
        closure : callable
            ``closure() -> tensor``: the residuals, per-sample losses or a 0-d
            loss at the module's current parameters (no ``backward()``).

        Returns
        -------
        loss : tensor
            The loss before the step (0-d).
        """
        validation.callable_arg(closure, "closure")
        tensors = self._tensors()
        start = torch.cat([p.detach().reshape(-1) for p in tensors])
        model = _ClosureModel(tensors, closure, self.loss)
        try:
            new, info = self.optimizer.step(start.clone(), model, None)
        except BaseException:
            model.load(start)  # atomic: the module is as it was
            raise
        model.load(new)
        self.last_info = info
        return torch.as_tensor(info["loss"], dtype=start.dtype)

    def state_dict(self) -> dict[str, Any]:
        """PyTorch's optimiser state plus natgrad's, under ``"natgrad"``."""
        state = super().state_dict()
        state["natgrad"] = self.optimizer.state_dict()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a state saved by :meth:`state_dict` (also after ``torch.load``)."""
        state = dict(state_dict)
        if "natgrad" not in state:
            raise ValueError("state_dict has no 'natgrad' entry: it was not saved by natgrad.frameworks.torch.Optimizer")
        natgrad_state = state.pop("natgrad")
        self.optimizer.load_state_dict(natgrad_state)
        super().load_state_dict(state)
