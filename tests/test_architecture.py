"""The architecture, checked from the source: the layering of the imports, the
core's independence of any array library, and the absence of bare host
synchronisations in the core.

Everything here reads the source with :mod:`ast` (imports inside functions
included) and imports nothing of natgrad, so the checks hold for every code
path, not only for the ones a test happens to run.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "natgrad"

#: The layers of natgrad, lowest first (see docs/architecture.rst): a component
#: may import itself, any component of a lower rank, and the same-rank
#: components listed in SAME_RANK.  Nothing may import a higher rank.
RANK = {
    "backend": 0,  # namespaces, devices, dtypes, host syncs, dense linear algebra
    "validation": 0,  # argument checks; imports only the backend
    "linalg": 1,  # operators and solvers
    "hmatrix": 1,  # hierarchical matrices (uses linalg's operator protocol)
    "adapters": 2,  # autodiff frameworks -> arrays
    "optim": 3,  # optimisers
    "examples": 4,  # the Poisson problem of the demo, benchmarks and gallery
    "frameworks": 4,  # PyTorch and JAX faces over the optimisers
    "demo": 5,  # python -m natgrad.demo
    "natgrad": 6,  # the package root, which re-exports from the layers
}

#: (importer, imported) pairs of one rank that are allowed, in this direction only
SAME_RANK = {
    ("validation", "backend"),
    ("hmatrix", "linalg"),
}

#: the core: written against the array API alone
CORE = ["linalg", "hmatrix", "optim", "validation.py"]

#: libraries the core must never import (it gets ``xp`` from its inputs)
ARRAY_LIBRARIES = {
    "numpy",
    "scipy",
    "cupy",
    "cupyx",
    "torch",
    "jax",
    "jaxlib",
    "dask",
    "numba",
    "array_api_compat",
    "array_api_strict",
}


# -- reading the source ------------------------------------------------------------


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_module(name: str) -> bool:
    """True when ``name`` (natgrad.x.y) is a module or package of natgrad."""
    rel = Path(*name.split("."))
    base = ROOT.parent / rel
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def _natgrad_files() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.py") if "__pycache__" not in p.parts)


def _core_files() -> list[Path]:
    files = []
    for entry in CORE:
        path = ROOT / entry
        files += [path] if path.is_file() else sorted(path.rglob("*.py"))
    # the H-matrix's optional numba kernels may name NumPy and numba
    return [p for p in files if not p.name.startswith("_numba")]


def imports(path: Path) -> list[tuple[int, str]]:
    """Every module ``path`` imports, absolute, with the line: top-level and
    function-local ``import``/``from`` statements and
    ``importlib.import_module("<literal>")`` calls."""
    tree = ast.parse(path.read_text(), filename=str(path))
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.append((node.lineno, sub if _is_module(sub) else target))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append((node.lineno, node.args[0].value))
    return found


def component(module: str) -> str:
    """``natgrad.linalg.krylov`` -> ``linalg``; the package root -> ``natgrad``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "natgrad"


def _layer_violations(path: Path) -> list[str]:
    me = component(_module_name(path))
    bad = []
    for line, target in imports(path):
        if target.split(".")[0] != "natgrad":
            continue
        other = component(target)
        if other == me or RANK[other] < RANK[me] or (me, other) in SAME_RANK:
            continue
        bad.append(f"{path.relative_to(ROOT.parent)}:{line}: {me} (rank {RANK[me]}) imports {target}")
    return bad


# -- layering ------------------------------------------------------------------------


def test_every_module_has_a_rank():
    missing = {component(_module_name(p)) for p in _natgrad_files()} - set(RANK)
    assert not missing, f"place these in RANK: {sorted(missing)}"


@pytest.mark.parametrize("path", _natgrad_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_imports_a_higher_layer(path):
    bad = _layer_violations(path)
    assert not bad, "\n".join(bad)


def test_backend_imports_only_itself():
    """Layer 0 knows no other part of natgrad (not even validation)."""
    bad = [
        f"{p.relative_to(ROOT.parent)}:{line}: {target}"
        for p in sorted((ROOT / "backend").rglob("*.py"))
        for line, target in imports(p)
        if target.split(".")[0] == "natgrad" and not target.startswith("natgrad.backend")
    ]
    assert not bad, "\n".join(bad)
    assert (ROOT / "backend" / "__init__.py").exists(), "natgrad.backend is a package"


def test_validation_imports_only_the_backend():
    targets = {t for _, t in imports(ROOT / "validation.py") if t.split(".")[0] == "natgrad"}
    assert targets and all(t == "natgrad.backend" or t.startswith("natgrad.backend.") for t in targets), targets


def test_layer_check_catches_upward_and_local_imports(tmp_path, monkeypatch):
    """The checker itself: an upward import, also inside a function and in
    relative form, is reported; a downward one is not."""
    pkg = tmp_path / "natgrad"
    for sub in ("backend", "linalg", "optim", "hmatrix"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "validation.py").write_text("")
    (pkg / "linalg" / "bad.py").write_text(
        "from .. import backend\n"
        "from ..hmatrix import blocks\n"  # same rank, wrong direction
        "def f():\n"
        "    from ..optim import engd\n"  # function-local, upward
        "    import natgrad.optim\n"
    )
    (pkg / "backend" / "bad.py").write_text("from .. import validation\nfrom . import sync\n")
    monkeypatch.setattr(f"{__name__}.ROOT", pkg)
    linalg_bad = _layer_violations(pkg / "linalg" / "bad.py")
    assert [b.split(": ", 1)[1] for b in linalg_bad] == [
        "linalg (rank 1) imports natgrad.hmatrix",
        "linalg (rank 1) imports natgrad.optim",
        "linalg (rank 1) imports natgrad.optim",
    ]
    assert [b.split(": ", 1)[1] for b in _layer_violations(pkg / "backend" / "bad.py")] == [
        "backend (rank 0) imports natgrad.validation"
    ]


# -- the core names no array library ------------------------------------------------


@pytest.mark.parametrize("path", _core_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_core_imports_no_array_library(path):
    bad = [
        f"{path.relative_to(ROOT.parent)}:{line}: imports {target}"
        for line, target in imports(path)
        if target.split(".")[0] in ARRAY_LIBRARIES
    ]
    assert not bad, "\n".join(bad) + "\n(use the namespace of the inputs, or a natgrad.backend function)"


# -- no bare host synchronisation in the core ---------------------------------------

#: functions of the backend that read a value on the host; what they return is a
#: Python number, so nothing inside them is a bare sync
SYNC_HELPERS = {"to_float", "to_bool", "to_int", "all_finite", "to_list"}

#: ``xp`` functions that read only dtypes or metadata, never array data
XP_METADATA = {"finfo", "iinfo", "isdtype", "result_type", "can_cast", "__array_namespace_info__"}

#: builtins whose result is an array when an argument is one
PASS_THROUGH = {"abs", "max", "min", "sum", "round"}

#: attributes that are host metadata of an array, never its data
METADATA_ATTRS = {"shape", "ndim", "size", "dtype", "device"}


def _xp_call(node: ast.AST) -> bool:
    """``xp.f(...)`` or ``xp.linalg.f(...)`` (any chain rooted at ``xp``)."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
        return False
    if node.func.attr in XP_METADATA:
        return False
    root = node.func.value
    while isinstance(root, ast.Attribute):
        root = root.value
    return isinstance(root, ast.Name) and root.id == "xp"


def _sync_helper_call(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in SYNC_HELPERS
    )


class _SyncFinder(ast.NodeVisitor):
    """Reports bare host syncs in one function (or module body).

    A name holds an array if any assignment in the function gives it an
    array-producing value (an ``xp`` call, a matrix product, or an
    expression of such names); ``bool``/``int``/``float`` of an expression
    that involves an array, ``.item()``, ``.tolist()``, and an ``if``/``while``
    test that is an ``xp`` call are bare syncs.  Reads of ``.shape`` and other
    metadata, and the backend's sync helpers, are not.
    """

    def __init__(self, arrays: set[str]):
        self.arrays = arrays
        self.found: list[int] = []

    def involves_array(self, node: ast.AST) -> bool:
        if isinstance(node, ast.Attribute) and node.attr in METADATA_ATTRS:
            return False
        if _sync_helper_call(node):
            return False
        if _xp_call(node):
            return True
        if isinstance(node, ast.Call):
            # what another function returns is unknown: only its receiver counts
            # (``x.sum()``), and the arguments of the arithmetic builtins
            if isinstance(node.func, ast.Name):
                return node.func.id in PASS_THROUGH and any(map(self.involves_array, node.args))
            return self.involves_array(node.func)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult):
            return True
        if isinstance(node, ast.Name):
            return node.id in self.arrays
        if isinstance(node, (ast.Lambda, ast.GeneratorExp, ast.ListComp, ast.comprehension)):
            return False
        return any(self.involves_array(child) for child in ast.iter_child_nodes(node))

    def visit_Call(self, node: ast.Call) -> None:
        f = node.func
        if isinstance(f, ast.Name) and f.id in ("bool", "int", "float") and len(node.args) == 1:
            if self.involves_array(node.args[0]):
                self.found.append(node.lineno)
        if isinstance(f, ast.Attribute) and f.attr in ("item", "tolist") and not node.args:
            self.found.append(node.lineno)
        if (  # getattr(x, "tolist") hides the same call
            isinstance(f, ast.Name)
            and f.id == "getattr"
            and any(isinstance(a, ast.Constant) and a.value in ("item", "tolist") for a in node.args)
        ):
            self.found.append(node.lineno)
        self.generic_visit(node)

    def _test(self, test: ast.AST) -> None:
        parts = test.values if isinstance(test, ast.BoolOp) else [test]
        for part in parts:
            if isinstance(part, ast.UnaryOp) and isinstance(part.op, ast.Not):
                part = part.operand
            operands = [part.left, *part.comparators] if isinstance(part, ast.Compare) else [part]
            if any(_xp_call(o) for o in operands):
                self.found.append(part.lineno)

    def visit_If(self, node: ast.If) -> None:
        self._test(node.test)
        self.generic_visit(node)

    visit_While = visit_If

    def visit_IfExp(self, node: ast.IfExp) -> None:
        self._test(node.test)
        self.generic_visit(node)

    def visit_FunctionDef(self, node: ast.AST) -> None:
        pass  # functions are scanned on their own, with their own names

    visit_AsyncFunctionDef = visit_FunctionDef
    visit_Lambda = visit_FunctionDef


def _array_names(scope: ast.AST) -> set[str]:
    """Names given an array-producing value somewhere in ``scope`` (to a fixed point)."""
    assigns = []
    for node in ast.walk(scope):
        if isinstance(node, ast.Assign):
            assigns += [(t, node.value) for t in node.targets]
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)) and node.value is not None:
            assigns.append((node.target, node.value))
    arrays: set[str] = set()
    while True:
        finder = _SyncFinder(arrays)
        new = set(arrays)
        for target, value in assigns:
            if finder.involves_array(value):
                new |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
        new.discard("xp")
        if new == arrays:
            return arrays
        arrays = new


def bare_syncs(source: str) -> list[int]:
    """Lines of ``source`` with a host sync that bypasses the backend's helpers."""
    tree = ast.parse(source)
    scopes = [tree] + [
        n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
    ]
    found = []
    for scope in scopes:
        finder = _SyncFinder(_array_names(scope))
        body = scope.body if isinstance(scope.body, list) else [scope.body]
        for stmt in body:
            finder.visit(stmt)
        found += finder.found
    return sorted(set(found))


#: (snippet, expected lines) — the patterns the core had before every sync went
#: through the backend (from ``git grep "bool(xp\|int(xp\|float(xp"``), and reads
#: that are not syncs
SCANNER_CASES = [
    ("if bool(xp.all(rnorm2 <= tol2)):\n    pass\n", [1]),
    ("done = not bool(xp.any(active))\n", [1]),
    ("if not bool(xp.all(xp.isfinite(phibar))):\n    pass\n", [1]),
    ("c_max = max(int(xp.max(count)), 1)\n", [1]),
    ("j = int(xp.argmax(xp.where(used_c, -1.0, xp.abs(r))))\n", [1]),
    ("i = 0 if U is None else int(\n    xp.argmax(xp.abs(U[:, -1]))\n)\n", [1]),
    ("r = r - V @ U[i, :]\npiv = float(r[j])\n", [2]),
    ("s = xp.take(ratio, order)\nt = float(s[cut])\n", [2]),
    ("n = float(xp.linalg.vector_norm(x))\n", [1]),
    ("v = x.item()\nw = y.tolist()\n", [1, 2]),
    ("tolist = getattr(x, 'tolist', None)\n", [1]),
    ("if xp.any(d2 <= 0):\n    pass\n", [1]),
    ("while xp.linalg.vector_norm(r) > tol:\n    pass\n", [1]),
    ("def f(x):\n    y = xp.sum(x)\n    return float(y)\n", [3]),
    # not syncs: shape reads, host values, the backend's helpers, metadata
    ("n, p = (int(d) for d in U.shape)\n", []),
    ("k = int(xp.asarray(x).shape[0])\n", []),
    ("m = int(shape[0])\nt = float(tol)\nb = bool(verify)\n", []),
    ("keep = int(backend.to_float(xp.sum(s > 0)))\n", []),
    ("ok = backend.to_bool(xp.all(x > 0))\n", []),
    ("e = float(xp.finfo(x.dtype).eps)\nc = bool(xp.isdtype(x.dtype, 'real floating'))\n", []),
    ("vals = [float(v) for v in grid]\nn = int(len(xs))\n", []),
]


@pytest.mark.parametrize(("snippet", "lines"), SCANNER_CASES)
def test_sync_scanner(snippet, lines):
    assert bare_syncs(textwrap.dedent(snippet)) == lines


_SYNC_SCOPE = [p for p in _core_files() if p.name != "validation.py"]


@pytest.mark.parametrize("path", _SYNC_SCOPE, ids=lambda p: str(p.relative_to(ROOT)))
def test_core_has_no_bare_host_sync(path):
    source = path.read_text()
    text = source.splitlines()
    bad = [f"{path.relative_to(ROOT.parent)}:{n}: {text[n - 1].strip()}" for n in bare_syncs(source)]
    assert not bad, (
        "\n".join(bad) + "\n(read device values through backend.to_float / to_bool / to_int / all_finite)"
    )
