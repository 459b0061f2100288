"""Layer 3: optimisers built on natgrad.linalg and the adapters.

Every optimiser has ``step(params, model, batch) -> (params, info)`` on flat
parameter vectors; every hyper-parameter is a keyword with a documented
default.  Its state (momentum, cached coefficients, adapted damping, the step
count) is data: ``state_dict()`` / ``load_state_dict(d)`` / ``reset()``.  A
step is atomic (an exception inside it changes nothing), and a step whose
loss, direction or new parameters are not finite is not taken.  :func:`fit`
runs the loop, with checkpoints, resume and a graceful Ctrl-C.
"""

from .adam import Adam
from .engd import ENGD, gauss_newton_direction
from .fit import History, fit
from .flow import GradientFlow
from .fngd import FNGD
from .sfn import SaddleFreeNewton
from .spring import SPRING

__all__ = [
    "ENGD",
    "SPRING",
    "FNGD",
    "SaddleFreeNewton",
    "GradientFlow",
    "Adam",
    "fit",
    "History",
    "gauss_newton_direction",
]
