"""Reductions over contiguous segments of an array's rows."""

from __future__ import annotations

from typing import Any, Sequence

import numpy

from ._namespaces import device, is_numpy, namespace

__all__ = ["segment_bounds"]


def segment_bounds(A: Any, starts: Sequence[int], stops: Sequence[int]) -> tuple[Any, Any]:
    """Column-wise minimum and maximum of each row segment ``A[starts[i]:stops[i]]``.

    Parameters
    ----------
    A : array, shape (n, d)
        Real, of any supported library.
    starts, stops : sequences of int
        Segment bounds, ``0 ≤ starts[i] < stops[i] ≤ n`` and
        ``stops[i] ≤ starts[i + 1]``: non-empty, in order, not overlapping
        (gaps between them are allowed).

    Returns
    -------
    lo, hi : arrays, shape (len(starts), d)
        ``lo[i] = min(A[starts[i]:stops[i]], axis=0)`` and likewise ``hi``
        with the maximum, in ``A``'s namespace, dtype and device (exact:
        no arithmetic).

    Raises
    ------
    ValueError
        If there are no segments, ``starts`` and ``stops`` differ in
        length, or a segment is empty, out of order or outside ``A``.

    Notes
    -----
    On NumPy one ``reduceat`` per bound, over the interleaved boundaries
    ``s₀, e₀, s₁, e₁, …`` (every other result is a segment; the others,
    the gaps, are dropped): a cluster tree asks for the boxes of a whole
    level at once, where one reduction per segment would cost two array
    operations per cluster.  Other libraries gather the segments into one
    stack padded to the longest (each padded with its own last row), and
    reduce it: three operations, unless that stack would hold more than
    four times ``A``'s rows (segments of very unequal lengths), when they
    reduce segment by segment.

    Examples
    --------
    >>> import numpy as np
    >>> A = np.array([[3.0, 0.0], [1.0, 5.0], [4.0, 2.0], [0.0, 9.0]])
    >>> lo, hi = segment_bounds(A, [0, 3], [2, 4])
    >>> lo.tolist(), hi.tolist()
    ([[1.0, 0.0], [0.0, 9.0]], [[3.0, 5.0], [0.0, 9.0]])
    """
    starts, stops = [int(s) for s in starts], [int(s) for s in stops]
    n = A.shape[0]
    if not starts or len(starts) != len(stops):
        raise ValueError(f"starts and stops must be non-empty and of one length, got {len(starts)} and {len(stops)}")
    last = 0
    for s, e in zip(starts, stops):
        if not last <= s < e <= n:
            raise ValueError(f"segments must be non-empty, in order and within the {n} rows, got [{s}, {e})")
        last = e
    xp = namespace(A=A)
    if is_numpy(xp):
        bounds = [b for pair in zip(starts, stops) for b in pair]
        if bounds[-1] == n:  # reduceat's last segment runs to the end by itself
            bounds.pop()
        return (numpy.minimum.reduceat(A, bounds, axis=0)[::2],
                numpy.maximum.reduceat(A, bounds, axis=0)[::2])
    longest = max(e - s for s, e in zip(starts, stops))
    if len(starts) * longest > _PADDED_GATHER_LIMIT * n:
        # segments of very unequal lengths: padding each to the longest would
        # gather many times the rows, so one reduction per segment
        lo = xp.stack([xp.min(A[s:e, :], axis=0) for s, e in zip(starts, stops)])
        hi = xp.stack([xp.max(A[s:e, :], axis=0) for s, e in zip(starts, stops)])
        return lo, hi
    # each segment gathered into a row of a (segments, longest, d) stack,
    # padded by repeating its last row (which changes neither bound)
    dev = device(A)
    first = xp.reshape(xp.asarray(starts, device=dev), (-1, 1))
    last = xp.reshape(xp.asarray(stops, device=dev), (-1, 1)) - 1
    rows = xp.minimum(first + xp.reshape(xp.arange(longest, device=dev), (1, -1)), last)
    stack = xp.reshape(xp.take(A, xp.reshape(rows, (-1,)), axis=0), (len(starts), longest, A.shape[1]))
    return xp.min(stack, axis=1), xp.max(stack, axis=1)


#: the padded gather of segment_bounds reads at most this many times A's rows
_PADDED_GATHER_LIMIT = 4
