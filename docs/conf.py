"""Sphinx configuration of the natgrad documentation.

Build with ``sphinx-build -W --keep-going -b html docs docs/_build/html``
(``pip install -e ".[docs]"`` installs everything it needs).

Two kinds of page are written here at configuration time, into
``docs/generated/`` (ignored by git), so that the documentation follows the
code without hand edits:

* the API reference: one page per public module, listing the module's
  ``__all__`` with autosummary.  A module that cannot be imported (a
  subpackage not written yet, an optional framework not installed) gets a
  short page saying so instead of breaking the build;
* the benchmark pages: one per ``benchmarks/results/<name>.md`` (the full run
  when it exists, else the ``--quick`` run), included through MyST.

Gallery examples (``docs/examples/plot_*.py``) run at build time; an example
whose requirements (a subpackage, PyTorch, scikit-learn) are missing is left
out rather than failing the build, and the build prints which.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import shutil
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
GENERATED = DOCS / "generated"
sys.path.insert(0, str(ROOT))  # document the checkout these pages belong to

import natgrad  # noqa: E402

# -- project -------------------------------------------------------------------

project = "natgrad"
author = "the natgrad developers"
copyright = "the natgrad developers"
release = natgrad.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.intersphinx",
    "numpydoc",
    "sphinx_copybutton",
    "sphinx_gallery.gen_gallery",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "examples", "auto_examples/*.ipynb", "auto_examples/*.py", "**.zip"]
templates_path = ["_templates"]
default_role = "literal"

# -- API reference ---------------------------------------------------------------

#: (module, title, one-line description); a module that fails to import gets a
#: placeholder page.  Modules are documented by their ``__all__``.
API_MODULES = [
    ("natgrad.backend", "Array namespaces, devices, dtypes and native linear algebra (layer 0)."),
    ("natgrad.backend.io", "Checkpoint files: arrays and JSON metadata in one npz, written atomically (layer 0)."),
    ("natgrad.hmatrix._numba_store", "Compiled CPU kernels for H-matrix products (part of the H-matrix layer, needs numba)."),
    ("natgrad.validation", "Argument checks and the checked wrapper for user callables, shared by every layer (layer 0)."),
    ("natgrad.linalg", "Operators and solvers on raw arrays (layer 1)."),
    ("natgrad.hmatrix", "Hierarchical matrices with a requested error bound (layer 1)."),
    ("natgrad.adapters", "The model protocol shared by the autodiff adapters (layer 2)."),
    ("natgrad.adapters.callables", "A model from plain functions: any array library, any autodiff (layer 2)."),
    ("natgrad.adapters.torch", "PyTorch models (layer 2)."),
    ("natgrad.adapters.jax", "JAX models (layer 2)."),
    ("natgrad.adapters.compression",
     "Compressing a network's layers under a per-layer or output error budget, framework-free (layer 2)."),
    ("natgrad.optim", "Optimisers built on the solvers and the adapters (layer 3)."),
    ("natgrad.frameworks.torch", "The optimisers as a torch.optim.Optimizer driven by a closure (layer 4)."),
    ("natgrad.frameworks.jax", "The optimisers as an init/update pair with explicit state, for JAX (layer 4)."),
    ("natgrad.examples.poisson", "The Poisson PINN problem shared by the demo, the benchmarks and the gallery."),
]


def _public_names(module) -> list[str]:
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n in vars(module) if not n.startswith("_")]
    # Submodules listed in __all__ (e.g. natgrad.backend) get their own page.
    return [n for n in names if not n.startswith("__") and not _is_module(getattr(module, n, None))]


def _is_module(obj) -> bool:
    return type(obj).__name__ == "module"


def _write_if_changed(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def _api_pages() -> list[str]:
    """Write ``generated/api/<module>.rst`` for every module; return the missing ones."""
    out = GENERATED / "api"
    missing = []
    pages = []
    for modname, blurb in API_MODULES:
        title = f"``{modname}``"
        lines = [title, "=" * len(title), ""]
        try:
            module = importlib.import_module(modname)
            if getattr(module, "__file__", None) is None or not _public_names(module):
                # A folder without __init__.py (a namespace package): work in progress.
                raise ImportError("the package has no public names yet")
        except ImportError as err:
            missing.append(f"{modname} ({err})")
            lines += [
                f".. module:: {modname}", "",
                blurb, "",
                ".. note::", "",
                f"   ``{modname}`` could not be imported when these pages were built",
                f"   (``{err}``), so its reference is not included in this build.", "",
            ]
        else:
            names = _public_names(module)
            lines += [
                blurb, "",
                f".. automodule:: {modname}", "",
                f".. currentmodule:: {modname}", "",
                ".. rubric:: Public names", "",
                ".. autosummary::",
                "   :toctree: stubs/",
                "   :nosignatures:", "",
            ]
            lines += [f"   {name}" for name in names]
            lines.append("")
        pages.append(modname)
        _write_if_changed(out / f"{modname}.rst", "\n".join(lines))
    index = [
        ".. toctree::",
        "   :maxdepth: 1",
        "",
    ] + [f"   /generated/api/{m}" for m in pages] + [""]
    _write_if_changed(out / "modules.rst.inc", "\n".join(index))
    return missing


# -- benchmark pages ------------------------------------------------------------------

RESULTS = ROOT / "benchmarks" / "results"


def _benchmark_pages() -> list[str]:
    """Write ``generated/benchmarks/<name>.md`` including each result table."""
    out = GENERATED / "benchmarks"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    names = sorted({re.sub(r"-quick$", "", p.stem) for p in RESULTS.glob("*.md")}) if RESULTS.exists() else []
    pages = []
    for name in names:
        full, quick = RESULTS / f"{name}.md", RESULTS / f"{name}-quick.md"
        source = full if full.exists() else quick
        rel = os.path.relpath(source, out)
        body = [f"```{{include}} {rel}", "```", ""]
        if source is quick:
            body.insert(0, f"<!-- only the --quick run of {name} was found -->\n")
        for png in (source.with_suffix(".png"),):
            if png.exists():
                shutil.copy(png, out / png.name)
                body += ["", f"![{name}]({png.name})", ""]
        if source is quick:
            body += ["", "```{note}", f"These figures are from the short `--quick` run "
                     f"(`python benchmarks/bench_{name}.py --quick`); the full run "
                     f"writes `benchmarks/results/{name}.md`.", "```", ""]
        (out / f"{name}.md").write_text("\n".join(body))
        pages.append(name)
    order = ["summary"] + [n for n in pages if n != "summary"]
    index = [".. toctree::", "   :maxdepth: 1", ""] + [f"   /generated/benchmarks/{n}" for n in order if n in pages] + [""]
    if not pages:
        index = ["No results found in ``benchmarks/results/``: run ``python benchmarks/run_all.py --quick``.", ""]
    (out / "index.rst.inc").write_text("\n".join(index))
    return pages


# -- gallery ---------------------------------------------------------------------------

#: example file -> what it needs ("module" or "module:attribute"); an example
#: is skipped when one is missing
EXAMPLE_REQUIREMENTS = {
    "plot_hmatrix_blocks.py": ["natgrad.hmatrix:HMatrix", "natgrad.hmatrix:plot"],
    "plot_pinn_poisson.py": ["torch", "natgrad.adapters.torch", "natgrad.examples.poisson"],
    "plot_fngd_digits.py": ["torch", "sklearn", "natgrad.adapters.torch"],
    "plot_dask_least_squares.py": ["dask.array"],
    "plot_gradient_flow_digits.py": ["torch", "sklearn", "natgrad.adapters.torch"],
    "plot_network_compression.py": ["torch", "natgrad.adapters.torch", "natgrad.examples.poisson",
                                    "natgrad.hmatrix:compress_matrix"],
}


def _available(requirement: str) -> bool:
    modname, _, attr = requirement.partition(":")
    try:
        module = importlib.import_module(modname)
    except ImportError:
        return False
    return not attr or hasattr(module, attr)


def _skipped_examples() -> list[str]:
    return sorted(
        name for name, needs in EXAMPLE_REQUIREMENTS.items()
        if not all(_available(m) for m in needs)
    )


missing_modules = _api_pages()
benchmark_pages = _benchmark_pages()
skipped_examples = _skipped_examples()
for _msg in missing_modules:
    print(f"natgrad docs: API page placeholder for {_msg}")
for _name in skipped_examples:
    print(f"natgrad docs: gallery example {_name} skipped (requirements missing: "
          f"{', '.join(m for m in EXAMPLE_REQUIREMENTS[_name] if not _available(m))})")

_ignore = "|".join(re.escape(n) for n in skipped_examples)

sphinx_gallery_conf = {
    "examples_dirs": ["examples"],
    "gallery_dirs": ["auto_examples"],
    "filename_pattern": r"/plot_",
    "ignore_pattern": rf"(__init__\.py|{_ignore})" if _ignore else r"__init__\.py",
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "remove_config_comments": True,
    "write_computation_times": False,
    "show_memory": False,
    "plot_gallery": os.environ.get("NATGRAD_DOCS_PLOT_GALLERY", "True"),
    "abort_on_example_error": False,
    "only_warn_on_example_error": False,
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "reset_modules": ("matplotlib",),
}

# -- autodoc / autosummary / numpydoc ------------------------------------------------

autosummary_generate = True
autosummary_imported_members = True
autodoc_typehints = "none"
autoclass_content = "class"
add_module_names = False

numpydoc_show_class_members = False
numpydoc_show_inherited_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = False
numpydoc_validation_checks: set[str] = set()

intersphinx_mapping = {
    "python": ("https://docs.python.org/3", None),
    "numpy": ("https://numpy.org/doc/stable/", None),
    "scipy": ("https://docs.scipy.org/doc/scipy/", None),
}
# The test build runs without network access: intersphinx inventories that
# cannot be fetched would be warnings, so they are opt-in.
if not os.environ.get("NATGRAD_DOCS_INTERSPHINX"):
    intersphinx_mapping = {}

myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3
suppress_warnings = ["myst.header"]

# -- HTML ---------------------------------------------------------------------------------

html_theme = "pydata_sphinx_theme"
html_title = f"natgrad {release}"
html_static_path = ["_static"]
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "header_links_before_dropdown": 6,
}
html_show_sourcelink = False
