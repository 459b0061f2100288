"""Tests for natgrad.linalg.operators on every backend."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse
import scipy.sparse.linalg

from helpers import from_numpy, to_numpy
from natgrad.linalg import (
    LinearOperator,
    aslinearoperator,
    from_matvec,
    identity,
    shifted,
)


@pytest.fixture
def mats():
    rng = np.random.default_rng(0)
    return rng.standard_normal((6, 6)), rng.standard_normal((6, 6)), rng.standard_normal((6, 3))


def test_dense_operator_vector_and_block(xp, mats):
    A, _, X = mats
    op = aslinearoperator(from_numpy(xp, A))
    assert op.shape == (6, 6) and op.xp is xp
    np.testing.assert_allclose(to_numpy(op @ from_numpy(xp, X)), A @ X, rtol=1e-13)
    np.testing.assert_allclose(to_numpy(op.matvec(from_numpy(xp, X[:, 0]))), A @ X[:, 0], rtol=1e-13)
    np.testing.assert_allclose(to_numpy(op.T @ from_numpy(xp, X)), A.T @ X, rtol=1e-13)
    np.testing.assert_allclose(to_numpy(op.to_dense()), A)


def test_combinators_match_dense_algebra(xp, mats):
    A, B, X = mats
    a, b = aslinearoperator(from_numpy(xp, A)), aslinearoperator(from_numpy(xp, B))
    Xb = from_numpy(xp, X)
    cases = {
        "sum": (a + b, A + B),
        "difference": (a - b, A - B),
        "scaled": (2.5 * a, 2.5 * A),
        "right-scaled": (a * -0.5, -0.5 * A),
        "negated": (-a, -A),
        "product": (a @ b, A @ B),
        "damped": (a + 0.3 * identity(6), A + 0.3 * np.eye(6)),
        "identity": (a + identity(6), A + np.eye(6)),
        "shifted()": (shifted(a, 2.0), A + 2.0 * np.eye(6)),
        "damping of damped": (shifted(shifted(a, 1.0), 0.5), A + 1.5 * np.eye(6)),
        "transpose of product": ((a @ b).T, (A @ B).T),
    }
    for name, (op, dense) in cases.items():
        np.testing.assert_allclose(to_numpy(op @ Xb), dense @ X, rtol=1e-12, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(to_numpy(op.T @ Xb), dense.T @ X, rtol=1e-12, atol=1e-12, err_msg=name)


def test_from_matvec_applies_blocks_columnwise(xp, mats):
    A, _, X = mats
    Ax = from_numpy(xp, A)
    calls = []

    def mv(v):
        calls.append(tuple(v.shape))
        return Ax @ v

    op = from_matvec(mv, (6, 6), xp.float64)
    np.testing.assert_allclose(to_numpy(op @ from_numpy(xp, X)), A @ X, rtol=1e-13)
    assert calls == [(6,)] * 3  # the callable only ever sees vectors
    np.testing.assert_allclose(to_numpy(op.to_dense(xp)), A, rtol=1e-13)

    mm_op = from_matvec(mv, (6, 6), xp.float64, matmat=lambda V: Ax @ V)
    calls.clear()
    np.testing.assert_allclose(to_numpy(mm_op @ from_numpy(xp, X)), A @ X, rtol=1e-13)
    assert calls == []


def test_from_matvec_transpose_needs_rmatvec(mats):
    A, _, X = mats
    op = from_matvec(lambda v: A @ v, (6, 6), np.float64)
    with pytest.raises(NotImplementedError, match="transpose"):
        op.T @ X[:, 0]
    op_t = from_matvec(lambda v: A @ v, (6, 6), np.float64, rmatvec=lambda v: A.T @ v)
    np.testing.assert_allclose(op_t.T @ X, A.T @ X, rtol=1e-13)
    with pytest.raises(ValueError, match="pass xp"):
        op.to_dense()


def test_scipy_operators_are_wrapped(mats):
    A, _, X = mats
    sp_op = scipy.sparse.linalg.aslinearoperator(A)
    op = aslinearoperator(sp_op)
    np.testing.assert_allclose(op @ X, A @ X, rtol=1e-13)
    sparse = scipy.sparse.random(6, 6, density=0.5, random_state=1, format="csr")
    op = aslinearoperator(sparse)
    np.testing.assert_allclose(op @ X, sparse.toarray() @ X, rtol=1e-13)
    np.testing.assert_allclose(op.T @ X, sparse.toarray().T @ X, rtol=1e-13)


def test_aslinearoperator_returns_operators_unchanged(mats):
    op = aslinearoperator(mats[0])
    assert aslinearoperator(op) is op
    assert isinstance(op, LinearOperator)


def test_bad_operands_are_named(xp, mats):
    A, B, _ = mats
    op = aslinearoperator(from_numpy(xp, A))
    with pytest.raises(ValueError, match=r"x must have shape \(6,\) or \(6, k\)"):
        op @ from_numpy(xp, np.ones(5))
    with pytest.raises(ValueError, match=r"x must have shape"):
        op @ from_numpy(xp, np.ones((6, 2, 2)))
    with pytest.raises(ValueError, match="A must be a 2-D array"):
        aslinearoperator(from_numpy(xp, np.ones(3)))
    with pytest.raises(TypeError, match="A must be a 2-D array, a scipy LinearOperator"):
        aslinearoperator([[1.0, 0.0], [0.0, 1.0]])
    with pytest.raises(ValueError, match="cannot add operators"):
        op + aslinearoperator(from_numpy(xp, np.ones((6, 5))))
    with pytest.raises(ValueError, match="cannot multiply operators"):
        aslinearoperator(from_numpy(xp, np.ones((6, 5)))) @ aslinearoperator(from_numpy(xp, np.ones((6, 5))))
    with pytest.raises(ValueError, match=r"A \+ damping·I needs a square A"):
        shifted(from_numpy(xp, np.ones((6, 5))), 1.0)
    with pytest.raises(TypeError, match="matvec must be callable"):
        from_matvec(3.0, (2, 2), np.float64)
    with pytest.raises(ValueError, match="shape must be a pair"):
        from_matvec(lambda v: v, (2, 2, 2), np.float64)
    # arrays, 0-d included, are no scale factors (as documented): NumPy used to
    # broadcast over the operator, turning op * [2, 3] into an object array
    for c in (from_numpy(xp, np.array(2.0)), from_numpy(xp, np.array([2.0, 3.0]))):
        with pytest.raises(TypeError, match=r"scaled only by a number .* got an array of shape"):
            op * c
        with pytest.raises(TypeError):  # array_api_strict refuses it itself, with its own words
            c * op
    np.testing.assert_allclose(to_numpy((op * np.float64(2.0)) @ from_numpy(xp, np.ones(6))),
                               2.0 * A @ np.ones(6), rtol=1e-12)


def test_operators_do_not_mutate_inputs(xp, mats):
    A, B, X = mats
    Ax, Xx = from_numpy(xp, A), from_numpy(xp, X)
    op = (aslinearoperator(Ax) + 2.0 * identity(6)) @ aslinearoperator(from_numpy(xp, B))
    op @ Xx
    np.testing.assert_array_equal(to_numpy(Ax), A)
    np.testing.assert_array_equal(to_numpy(Xx), X)


def test_sum_with_an_identity_of_another_size_is_rejected():
    A = aslinearoperator(np.random.default_rng(7).standard_normal((4, 4)))
    with pytest.raises(ValueError, match=r"cannot add operators of shapes \(4, 4\) and \(5, 5\)"):
        A + identity(5)
    with pytest.raises(ValueError, match="cannot add operators"):
        A + 0.5 * identity(3)
    with pytest.raises(ValueError, match="cannot add operators"):
        identity(3) + A
