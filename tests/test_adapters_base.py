"""natgrad.adapters.base: import hygiene, the shared argument checks and the
group weights of pointwise models."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from natgrad.adapters import LOSSES, Model
from natgrad.adapters import base
from natgrad.adapters.callables import CallableModel


def test_import_does_not_pull_frameworks():
    code = (
        "import sys, natgrad, natgrad.adapters, natgrad.adapters.base, natgrad.adapters.callables\n"
        "bad = [m for m in ('torch', 'jax', 'cupy') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_framework_modules_import_the_real_frameworks():
    torch = pytest.importorskip("torch")
    jax = pytest.importorskip("jax")
    import natgrad.adapters.jax as nj
    import natgrad.adapters.torch as nt

    assert nt.torch is torch and nj.jax is jax  # absolute imports, no shadowing


def test_check_loss_and_namespace():
    assert LOSSES == ("squared", "mean")
    assert base.check_loss("mean") == "mean"
    for bad in ("sum", None, 1):
        with pytest.raises(ValueError, match="loss must be"):
            base.check_loss(bad)
    assert base.check_array_namespace(None) is None
    assert base.check_array_namespace("numpy").__name__ == "array_api_compat.numpy"
    with pytest.raises(ValueError, match="array_namespace"):
        base.check_array_namespace("torch")


@pytest.mark.parametrize("loss", ["squared", "mean"])
def test_group_scales_give_the_weighted_loss(loss):
    sizes = [4, 2]
    rng = np.random.default_rng(0)
    outs = [rng.standard_normal(n) for n in sizes]
    for weights, w in (("mean", [1 / 4, 1 / 2]), ("sum", [1.0, 1.0]), ((0.3, 2.0), [0.3, 2.0])):
        c = base.group_scales(base.check_weights(weights, 2), sizes, loss)
        scaled = np.concatenate([ck * o for ck, o in zip(c, outs)])
        if loss == "squared":
            want = sum(wk * 0.5 * np.sum(o**2) for wk, o in zip(w, outs))
            assert 0.5 * scaled @ scaled == pytest.approx(want, rel=1e-14)
        else:
            want = sum(wk * np.sum(o) for wk, o in zip(w, outs))
            assert scaled.mean() == pytest.approx(want, rel=1e-14)


def test_check_weights_terms_chunks():
    for bad in ("max", [1.0], [1.0, -2.0], [1.0, math.inf]):
        with pytest.raises(ValueError, match="weights"):
            base.check_weights(bad, 2)
    with pytest.raises(TypeError, match=r"weights\[0\] must be a real number"):
        base.check_weights([True, 1.0], 2)
    assert base.check_weights([0, 2.5], 2) == (0.0, 2.5)
    with pytest.raises(TypeError, match="terms"):
        base.check_terms([])
    with pytest.raises(TypeError, match=r"terms\[0\]"):
        base.check_terms(["f"])
    assert base.chunk_rows(100, 10, None, 250) == 25
    assert base.chunk_rows(100, 10, 7, 250) == 7
    assert base.chunk_rows(3, 10, None, 10**9) == 3



def test_models_satisfy_the_protocol():
    assert isinstance(CallableModel(residuals=lambda p, b: p, params=np.zeros(2)), Model)
    torch = pytest.importorskip("torch")
    from natgrad.adapters.torch import TorchModel

    assert isinstance(TorchModel(lambda p, b: p["w"], {"w": torch.zeros(2, dtype=torch.float64)}), Model)


def test_models_are_built_by_constructors_not_patched():
    """No adapter assigns a private attribute of another object (``model._fn = …``
    after construction); ``self._x = …`` inside the class is the constructor's."""
    import re
    from pathlib import Path

    import natgrad.adapters

    patched = re.compile(r"^\s*(?!self\b)[A-Za-z_]\w*\._\w+\s*(\[[^\]]*\])?\s*=(?!=)", re.M)
    folder = Path(natgrad.adapters.__file__).parent
    sources = {p.name: p.read_text() for p in folder.glob("*.py")}
    assert "torch.py" in sources and "jax.py" in sources
    assert patched.search("model._fn = f") and not patched.search("self._fn = f")  # the pattern bites
    bad = {name: [m.group(0).strip() for m in patched.finditer(src)] for name, src in sources.items()}
    assert not any(bad.values()), bad
    assert not any("setattr(" in src for src in sources.values())
