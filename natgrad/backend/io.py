"""Checkpoint files: arrays and JSON metadata in one NumPy ``.npz``, written atomically.

The optimisers' layer may not name NumPy, so the file format lives here.  A
checkpoint is one ``.npz`` archive holding the named arrays and, under the
reserved name ``__metadata__``, the UTF-8 bytes of a JSON document.  Nothing
is pickled: arrays are stored in NumPy's own format and read back with
``allow_pickle=False``, so loading a checkpoint cannot run code.

:func:`split_arrays` and :func:`join_arrays` turn a nested structure of
dicts, lists, arrays and JSON values (an optimiser's state dict) into flat
named arrays plus a JSON skeleton, and back.

Examples
--------
>>> import os, tempfile
>>> import numpy as np
>>> from natgrad.backend import io
>>> folder = tempfile.mkdtemp()
>>> path = os.path.join(folder, "run.npz")
>>> io.save_checkpoint(path, {"params": np.arange(3.0)}, {"step": 7})
>>> arrays, meta = io.load_checkpoint(path)
>>> arrays["params"], meta
(array([0., 1., 2.]), {'step': 7})
"""

from __future__ import annotations

import json
import os
import tempfile
from numbers import Integral, Real
from typing import Any, Mapping

import array_api_compat.numpy as np_xp
import numpy

from ._namespaces import device, is_array, is_cupy, is_jax, is_torch, namespace, to_namespace

__all__ = ["save_checkpoint", "load_checkpoint", "split_arrays", "join_arrays", "CheckpointError"]

#: the archive member that holds the JSON metadata
METADATA_KEY = "__metadata__"
#: how an array is marked in a JSON skeleton: {"__array__": "<name in the archive>"}
ARRAY_MARK = "__array__"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read as one (not an npz, no metadata, a
    missing array, pickled content).

    Parameters
    ----------
    message : str
        What is wrong, naming the file.

    Notes
    -----
    A ``ValueError`` (the file's content is wrong, not the call); a missing
    file raises ``FileNotFoundError`` instead.

    Examples
    --------
    >>> raise CheckpointError("run.npz: no metadata")
    Traceback (most recent call last):
        ...
    natgrad.backend.io.CheckpointError: run.npz: no metadata
    """


def _to_host(name: str, x: Any) -> Any:
    """A NumPy array with the values of ``x`` (device data are copied: the caller asked)."""
    if not is_array(x):
        raise TypeError(f"arrays[{name!r}] must be an array, got {type(x).__name__}")
    xp = namespace(x)
    if is_cupy(xp):
        return x.get()
    if is_torch(xp):
        return x.detach().cpu().numpy()
    if is_jax(xp):
        return numpy.asarray(x)
    return numpy.asarray(to_namespace(x, np_xp))


def save_checkpoint(path: str | os.PathLike, arrays: Mapping[str, Any], metadata: Mapping[str, Any]) -> None:
    """Write ``arrays`` and ``metadata`` to ``path`` atomically.

    Parameters
    ----------
    path : str or path-like
        The file to write (used as given: no ``.npz`` is appended).  Its
        folder must exist.
    arrays : mapping of str to array
        Arrays of any supported library and device; they are copied to host
        memory (explicitly: writing a checkpoint is a transfer the caller
        asked for).  Names must not be ``"__metadata__"``.
    metadata : mapping
        JSON-serialisable data (numbers, strings, None, bools, lists, dicts).
        NaN and infinities are allowed (Python's JSON writes them as
        ``NaN``/``Infinity``).

    Raises
    ------
    TypeError
        A value in ``arrays`` that is not an array, or metadata that JSON
        cannot represent.
    ValueError
        An array named ``"__metadata__"``.
    OSError
        The folder does not exist or cannot be written; the previous file at
        ``path``, if any, is left as it was.

    Returns
    -------
    None
        The file at ``path`` is the new checkpoint once this returns.

    Notes
    -----
    The archive is written to a temporary file in the folder of ``path``,
    flushed to disk (``fsync``) and renamed over ``path`` by ``os.replace``,
    which is atomic on POSIX and Windows: a reader (or a crash, or Ctrl-C)
    sees either the old file or the new one, never a partial file.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "state.npz")
    >>> save_checkpoint(path, {"m": np.ones(2)}, {"note": "first"})
    >>> sorted(np.load(path, allow_pickle=False).files)
    ['__metadata__', 'm']
    """
    if METADATA_KEY in arrays:
        raise ValueError(f"arrays must not use the reserved name {METADATA_KEY!r}")
    host = {str(k): _to_host(k, v) for k, v in arrays.items()}
    text = json.dumps(dict(metadata), allow_nan=True)
    host[METADATA_KEY] = numpy.frombuffer(text.encode("utf-8"), dtype=numpy.uint8)
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            numpy.savez(f, **host)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        # Ctrl-C included: remove the partial file, keep the old checkpoint.
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def load_checkpoint(path: str | os.PathLike, like: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a file written by :func:`save_checkpoint`.

    Parameters
    ----------
    path : str or path-like
    like : array, optional
        The arrays come back in the library and on the device of ``like``
        (through :func:`~natgrad.backend.to_namespace`, then an explicit
        copy to ``like``'s device if that differs); NumPy arrays without it.

    Returns
    -------
    arrays : dict of str to array
    metadata : dict

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    CheckpointError
        The file is not an npz archive written by :func:`save_checkpoint`
        (no metadata, metadata that is not JSON, or pickled content, which is
        never loaded).

    Notes
    -----
    ``numpy.load(..., allow_pickle=False)``: an archive holding an object
    array is refused rather than unpickled, so a checkpoint from an untrusted
    source cannot run code.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> import array_api_strict
    >>> path = os.path.join(tempfile.mkdtemp(), "state.npz")
    >>> save_checkpoint(path, {"x": np.arange(2.0)}, {})
    >>> arrays, _ = load_checkpoint(path, like=array_api_strict.asarray([0.0]))
    >>> type(arrays["x"]).__module__.split(".")[0]
    'array_api_strict'
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint at {path!r}")
    try:
        with numpy.load(path, allow_pickle=False) as archive:
            host = {name: archive[name] for name in archive.files}
    except (ValueError, OSError, EOFError) as err:
        raise CheckpointError(f"{path!r} is not a readable natgrad checkpoint (npz without pickles): {err}") from err
    raw = host.pop(METADATA_KEY, None)
    if raw is None:
        raise CheckpointError(f"{path!r} has no {METADATA_KEY!r} entry: not written by natgrad")
    try:
        metadata = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path!r}: the metadata is not JSON ({err})") from err
    if like is None:
        return host, metadata
    xp = namespace(like=like)
    where = device(like)
    arrays = {}
    for name, a in host.items():
        x = to_namespace(a, xp)
        if device(x) != where:
            x = xp.asarray(x, device=where)
        arrays[name] = x
    return arrays, metadata


def _plain(value: Any, where: str) -> Any:
    """A JSON leaf: None, bool, int, float or str (NumPy scalars converted)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, Integral):
        return int(value)
    if isinstance(value, Real):
        return float(value)
    raise TypeError(f"{where} is a {type(value).__name__}: only arrays, numbers, strings, None, lists and dicts")


def split_arrays(tree: Any, prefix: str = "") -> tuple[Any, dict[str, Any]]:
    """Separate the arrays of a nested structure from its JSON part.

    Parameters
    ----------
    tree : dict, list, tuple, array or JSON value
        Dicts must have string keys.  Tuples become lists.
    prefix : str
        Prepended to the array names (e.g. ``"state"``).

    Returns
    -------
    skeleton : JSON value
        ``tree`` with every array replaced by ``{"__array__": name}``.
    arrays : dict of str to array
        The arrays by name: the path of keys and list indices joined by
        ``"."``, e.g. ``"state.cache_alphas.0"``.

    Raises
    ------
    TypeError
        A leaf that is neither an array nor a JSON value, or a dict key that
        is not a str (or that is the reserved ``"__array__"``).

    Notes
    -----
    The inverse is :func:`join_arrays`: ``join_arrays(*split_arrays(t))``
    rebuilds ``t`` with tuples as lists and NumPy scalars as Python numbers.

    Examples
    --------
    >>> import numpy as np
    >>> skeleton, arrays = split_arrays({"steps": 3, "m": np.zeros(2), "l": [np.ones(1), None]}, "state")
    >>> skeleton
    {'steps': 3, 'm': {'__array__': 'state.m'}, 'l': [{'__array__': 'state.l.0'}, None]}
    >>> sorted(arrays)
    ['state.l.0', 'state.m']
    """
    arrays: dict[str, Any] = {}

    def walk(node: Any, path: str) -> Any:
        if is_array(node):
            arrays[path] = node
            return {ARRAY_MARK: path}
        if isinstance(node, Mapping):
            out = {}
            for key, value in node.items():
                if not isinstance(key, str) or key == ARRAY_MARK:
                    raise TypeError(f"{path or 'tree'} has the key {key!r}: keys must be str other than {ARRAY_MARK!r}")
                out[key] = walk(value, f"{path}.{key}" if path else key)
            return out
        if isinstance(node, (list, tuple)):
            return [walk(v, f"{path}.{i}" if path else str(i)) for i, v in enumerate(node)]
        return _plain(node, path or "tree")

    return walk(tree, prefix), arrays


def join_arrays(skeleton: Any, arrays: Mapping[str, Any]) -> Any:
    """Put the arrays back into a skeleton made by :func:`split_arrays`.

    Parameters
    ----------
    skeleton : JSON value
    arrays : mapping of str to array

    Returns
    -------
    The nested structure (lists stay lists).

    Raises
    ------
    CheckpointError
        The skeleton names an array that ``arrays`` does not have.

    Notes
    -----
    A dict whose only key is ``"__array__"`` stands for an array; every other
    JSON value is kept as it is.

    Examples
    --------
    >>> import numpy as np
    >>> join_arrays({"m": {"__array__": "state.m"}, "k": 2}, {"state.m": np.ones(1)})
    {'m': array([1.]), 'k': 2}
    """

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if set(node) == {ARRAY_MARK}:
                name = node[ARRAY_MARK]
                if name not in arrays:
                    raise CheckpointError(f"the checkpoint has no array {name!r}")
                return arrays[name]
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(skeleton)
