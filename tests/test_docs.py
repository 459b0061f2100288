"""Build the Sphinx documentation with warnings as errors.

The build runs ``sphinx-build -W --keep-going -b html docs <tmp>`` in a
subprocess: every page, the API reference generated from the docstrings, and
the gallery (whose examples are executed).  It is skipped when the ``docs``
extra (Sphinx, the theme, numpydoc, sphinx-gallery, MyST, matplotlib) is not
installed, e.g. in an environment with only the ``test`` extra.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

#: import names of the docs extra's packages
DOCS_REQUIREMENTS = (
    "sphinx",
    "pydata_sphinx_theme",
    "numpydoc",
    "sphinx_gallery",
    "sphinx_copybutton",
    "myst_parser",
    "matplotlib",
)

#: a clean build takes about 30 s on two cores; the limit leaves room for a busy machine
BUILD_TIMEOUT = 600


def _missing() -> list[str]:
    return [name for name in DOCS_REQUIREMENTS if importlib.util.find_spec(name) is None]


pytestmark = pytest.mark.skipif(
    bool(_missing()) or not (DOCS / "conf.py").exists(),
    reason=f"documentation requirements not installed: {', '.join(_missing())} "
    '(pip install -e ".[docs]")',
)


@pytest.fixture(scope="module")
def html(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the HTML docs once for this module; return the output folder."""
    out = tmp_path_factory.mktemp("docs")
    env = dict(os.environ)
    # Small examples gain nothing from threads, and on a shared two-core machine
    # spinning OpenMP/BLAS thread pools slow them down by orders of magnitude.
    env.update(MPLBACKEND="Agg", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               MKL_NUM_THREADS="1", PYTHONHASHSEED="0")
    cmd = [
        sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html",
        "-d", str(out / "doctrees"), str(DOCS), str(out / "html"),
    ]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=BUILD_TIMEOUT)
    except subprocess.TimeoutExpired as exc:  # pragma: no cover - a failure report
        pytest.fail(f"sphinx-build did not finish in {BUILD_TIMEOUT} s:\n{exc.stdout}\n{exc.stderr}")
    if proc.returncode != 0:
        pytest.fail(
            f"sphinx-build -W failed (exit {proc.returncode}):\n"
            f"{proc.stderr[-20000:]}\n--- stdout (tail) ---\n{proc.stdout[-5000:]}"
        )
    return out / "html"


def test_build_is_warning_free(html: Path) -> None:
    assert (html / "index.html").exists()


def test_pages_exist(html: Path) -> None:
    for page in (
        "getting_started.html",
        "user_guide/backends.html",
        "user_guide/solvers.html",
        "user_guide/hmatrix.html",
        "user_guide/adapters.html",
        "user_guide/optimisers.html",
        "user_guide/failure_modes.html",
        "benchmarks.html",
        "api/index.html",
        "generated/api/natgrad.linalg.html",
        "generated/api/natgrad.optim.html",
        "auto_examples/index.html",
    ):
        assert (html / page).exists(), page


def test_every_public_linalg_name_has_a_page(html: Path) -> None:
    import natgrad.linalg

    stubs = html / "generated" / "api" / "stubs"
    missing = [n for n in natgrad.linalg.__all__ if not (stubs / f"natgrad.linalg.{n}.html").exists()]
    assert not missing, missing


def test_gallery_has_a_figure_per_executed_example(html: Path) -> None:
    examples = sorted(p.stem for p in (DOCS / "examples").glob("plot_*.py"))
    built = [name for name in examples if (html / "auto_examples" / f"{name}.html").exists()]
    images = html / "_images"
    without_figure = [name for name in built if not list(images.glob(f"sphx_glr_{name}_0[0-9][0-9].png"))]
    assert len(built) >= 4, built
    assert not without_figure, without_figure


def test_benchmark_tables_are_included(html: Path) -> None:
    results = ROOT / "benchmarks" / "results"
    names = {p.stem.removesuffix("-quick") for p in results.glob("*.md")}
    for name in names:
        assert (html / "generated" / "benchmarks" / f"{name}.html").exists(), name


@pytest.mark.parametrize(
    "page", sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.rst") if ">>>" in p.read_text())
)
def test_guide_examples_run(page, tmp_path, monkeypatch):
    """The ``>>>`` examples of a guide page run and print what the page says."""
    import doctest

    monkeypatch.chdir(tmp_path)  # examples that write files (checkpoints) write them here
    failed, attempted = doctest.testfile(
        str(DOCS / page), module_relative=False,
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False,
    )
    assert attempted > 0 and failed == 0, f"{page}: {failed} of {attempted} examples failed"


def _python_blocks(text: str) -> list[str]:
    """The ``.. code-block:: python`` blocks of an rst page, dedented, in order."""
    import textwrap

    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        line = lines[i]
        if line.strip() == ".. code-block:: python":
            indent = len(line) - len(line.lstrip())
            i += 1
            body = []
            while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent):
                body.append(lines[i])
                i += 1
            blocks.append(textwrap.dedent("\n".join(body)).strip("\n"))
        else:
            i += 1
    return blocks


#: the pages outside the generated trees (the gallery runs in the build)
_PAGES = sorted(
    p for p in DOCS.rglob("*.rst")
    if not {"generated", "auto_examples", "_build"} & set(p.relative_to(DOCS).parts)
)


def test_code_block_parser_finds_indented_blocks() -> None:
    text = "a\n\n.. code-block:: python\n\n   x = 1\n\n   y = x + 1\n\nafter\n\n  .. code-block:: python\n\n     z = 2\n"
    assert _python_blocks(text) == ["x = 1\n\ny = x + 1", "z = 2"]


@pytest.mark.parametrize(
    "page", [p.relative_to(DOCS).as_posix() for p in _PAGES if ".. code-block:: python" in p.read_text()]
)
def test_guide_code_blocks_run(page: str, tmp_path, monkeypatch) -> None:
    """Every ``.. code-block:: python`` of a page runs, in order, in one namespace
    (a block that starts with ``# needs a CUDA GPU`` runs only where CuPy has one)."""
    from conftest import _cupy_available

    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__docs__"}
    ran = 0
    for block in _python_blocks((DOCS / page).read_text()):
        if block.startswith("# needs a CUDA GPU") and not _cupy_available():
            continue
        exec(compile(block, f"{page}:code-block", "exec"), namespace)  # noqa: S102 - our own docs
        ran += 1
    assert ran > 0, f"{page}: no block ran"
