"""The Gram matrix ``U Uᵀ`` at half the flops of a general product (BLAS
``syrk``), and the thread-pool rules that keep it fast on the CPU.

NumPy and SciPy wheels each bundle an OpenBLAS with its own thread pool; the
logic here decides which pool a product runs in (see :func:`gram`) and from
what size a PyTorch CPU tensor is handed to NumPy's ``syrk``
(:data:`TORCH_SYRK_MIN_WORK`).  On JAX, :func:`gram` is a plain product and
may be called inside ``jax.jit``.

Examples
--------
>>> import numpy as np
>>> U = np.arange(6.0).reshape(2, 3)
>>> gram(U)
array([[ 5., 14.],
       [14., 50.]])
"""

from __future__ import annotations

from typing import Any

import numpy
import scipy.linalg

from ._namespaces import is_numpy, is_torch, namespace

__all__ = ["gram", "TORCH_SYRK_MIN_WORK"]


#: N²P from which a PyTorch CPU ``gram`` goes through NumPy's syrk.  Handing
#: work to NumPy's OpenBLAS pool costs PyTorch's next operations some tens of
#: milliseconds (the pool's threads spin); measured on two cores, an ENGD-W
#: step at N = 1250, P = 1281 (N²P = 2e9) went from 0.11 s to 0.16 s, while at
#: N = 3500, P = 10,065 (1.2e11) the product went from 2.26 s to 1.24 s.
TORCH_SYRK_MIN_WORK = 2e10


def _torch_cpu_syrk_applies(U: Any) -> bool:
    """A real floating CPU tensor outside autograd, big enough for syrk to pay."""
    import torch

    n, p = U.shape
    return (
        U.device.type == "cpu"
        and U.dtype in (torch.float32, torch.float64)
        and not U.requires_grad
        and n > 1
        and float(n) * n * p >= TORCH_SYRK_MIN_WORK
    )


def gram(U: Any, *, block_size: int | None = None) -> Any:
    """The symmetric product ``U Uᵀ`` of an ``(N, P)`` matrix, without copying ``U``.

    On NumPy the product needs half the flops of a general ``U @ V``: a
    C- or F-contiguous ``U`` goes through NumPy's own ``U @ U.T``, which
    recognises a matrix times its own transpose and calls BLAS ``syrk``
    (and fills the other triangle), and any other layout (a strided view) is
    fed to SciPy's ``syrk`` in column blocks of ``block_size`` columns
    (default: about 32 MiB each) that accumulate into one ``(N, N)``
    result, so ``U`` is never copied whole.  Peak memory is therefore ``U``
    plus a few ``N × N`` arrays and at most one block.  A large PyTorch CPU
    tensor (float32/float64, not requiring grad, ``N²P ≥``
    ``TORCH_SYRK_MIN_WORK``) takes the same NumPy path through a zero-copy
    view of its memory, since PyTorch has no ``syrk`` of its own.
    Other backends use a plain matrix product (which reads ``U`` in place)
    and symmetrise it, since blocked GEMM kernels round the two triangles
    differently.

    Parameters
    ----------
    U : array, shape (N, P)
        Any 2-D array; it is read, never copied whole or written.
    block_size : int, optional
        Columns per block in the strided-NumPy path; by default as many as fit
        in about 32 MiB (at least one).  Ignored on every other path.

    Returns
    -------
    G : array, shape (N, N)
        ``U Uᵀ``, exactly symmetric, in the library and device of ``U`` (and
        its dtype, for floating ``U``).

    Raises
    ------
    TypeError
        If ``U`` is not an array of a supported library.
    ValueError
        If ``U`` is not 2-D.

    Notes
    -----
    NumPy and SciPy wheels each bundle an OpenBLAS with its own thread pool,
    whose threads spin for a while after each call.  Alternating between the
    two pools makes them fight over the cores (on two cores a ``syrk`` right
    after a NumPy matvec ran 1.7× slower here), so the contiguous case stays
    in NumPy's pool, where the matrix–vector products around it run too.

    On NumPy, overflow produces infinities without a warning (as SciPy's
    ``syrk`` does); callers that care check the diagonal.  The symmetric
    product costs N²P flops instead of a general product's 2N²P.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> U = rng.standard_normal((4, 6))
    >>> G = gram(U)
    >>> bool(np.allclose(G, U @ U.T)), bool(np.array_equal(G, G.T))
    (True, True)
    >>> V = rng.standard_normal((4, 12))[:, ::2]  # a strided view: blocked syrk
    >>> Gv = gram(V, block_size=2)
    >>> bool(np.allclose(Gv, V @ V.T)), bool(np.array_equal(Gv, Gv.T))
    (True, True)
    """
    xp = namespace(U=U, allow_traced=True)
    if U.ndim != 2:
        raise ValueError(f"U must be 2-D, got shape {tuple(U.shape)}")
    if is_torch(xp) and _torch_cpu_syrk_applies(U):
        # PyTorch has no syrk: U @ U.T costs the full 2N²P flops.  A CPU
        # tensor shares its memory with a NumPy view, so NumPy's syrk does
        # half the work on the same buffer, with no copy of U.
        import torch

        return torch.from_numpy(gram(U.numpy(), block_size=block_size))
    if not (is_numpy(xp) and U.dtype in (numpy.float32, numpy.float64) and U.shape[0] > 1):
        G = U @ xp.matrix_transpose(U)
        return 0.5 * (G + xp.matrix_transpose(G))
    if U.flags.f_contiguous or U.flags.c_contiguous:
        # NumPy's matmul calls syrk for a matrix and its own transpose view
        # and copies the computed triangle into the other: exactly symmetric.
        # Overflow is the caller's to report (it reads the diagonal), as
        # with the SciPy path, which never warns.
        with numpy.errstate(over="ignore", invalid="ignore"):
            return U @ U.T
    n, p = U.shape
    (syrk,) = scipy.linalg.blas.get_blas_funcs(("syrk",), (U,))
    if block_size is None:
        block_size = max(1, (32 << 20) // (U.itemsize * n))
    C = numpy.zeros((n, n), dtype=U.dtype, order="F")
    for j in range(0, p, block_size):
        block = numpy.asfortranarray(U[:, j : j + block_size])
        C = syrk(1.0, block, beta=1.0, c=C, trans=0, lower=0, overwrite_c=1)
    # syrk filled the upper triangle; the strict lower one is still zero.
    C += numpy.triu(C, 1).T
    return C
