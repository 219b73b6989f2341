"""minigpt.gradcheck is itself a tool students and graders rely on: these tests prove that it
fails when a backward is wrong, says clearly where, and only accepts float64.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

import minigpt.functional as F
from minigpt import Function, GradcheckError, Tensor, gradcheck


class SquareWrongBackward(Function):
    """y = x^2 with a deliberately wrong backward: dx = g * x (the factor 2 is missing)."""

    def forward(self, x):
        self.save(x)
        return x * x

    def backward(self, g):
        (x,) = self.saved
        return (g * x,)


class ScaleSecondWrong(Function):
    """y = a * b with a right gradient for a and a wrong one (off by 1%) for b."""

    def forward(self, a, b):
        self.save(a, b)
        return a * b

    def backward(self, g):
        a, b = self.saved
        return g * b, g * a * 1.01


class SoftmaxZeroBackward(Function):
    """softmax with backward returning 0: right only when the upstream gradient is uniform
    (softmax rows sum to 1, so sum(softmax) has zero gradient)."""

    def forward(self, x):
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    def backward(self, g):
        return (np.zeros_like(g),)


class NaNBackward(Function):
    """y = 2x with a backward that returns NaN."""

    def forward(self, x):
        return 2 * x

    def backward(self, g):
        return (g * np.nan,)


def test_gradcheck_passes_a_correct_backward():
    """A right backward passes and gradcheck returns True."""
    x = Tensor(np.random.default_rng(0).standard_normal((3, 4)), requires_grad=True)
    assert gradcheck(lambda x: (x * x).tanh(), [x]) is True


def test_gradcheck_fails_on_a_wrong_backward_and_names_input_index_and_values():
    """The missing factor 2 is caught; the message names the input, the worst index, the
    analytic and numeric values and the relative error, and the values are the true ones."""
    x = Tensor(np.array([1.0, -2.0, 3.0]), requires_grad=True)
    with pytest.raises(GradcheckError) as info:
        gradcheck(lambda x: SquareWrongBackward.apply(x), [x], seed=0)
    msg = str(info.value)
    assert "input 0" in msg and "relative error" in msg
    m = re.search(r"index \((\d+),\): analytic (\S+), numeric (\S+), relative error (\S+)", msg)
    assert m, msg
    i, analytic, numeric, rel = int(m[1]), float(m[2]), float(m[3].rstrip(",")), float(m[4])
    upstream = np.random.default_rng(0).standard_normal(3)  # what gradcheck used with seed=0
    expected_worst = int(np.argmax(np.abs(upstream * x.data)))  # error = |G x|
    assert i == expected_worst
    np.testing.assert_allclose(analytic, upstream[i] * x.data[i], rtol=1e-6)
    np.testing.assert_allclose(numeric, 2 * upstream[i] * x.data[i], rtol=1e-6)
    np.testing.assert_allclose(rel, 0.5, rtol=1e-3)
    assert isinstance(info.value, AssertionError)  # pytest reports it as a failed check


def test_gradcheck_names_the_wrong_input_and_catches_a_one_percent_error():
    """Only b's gradient is wrong, by 1%: the error names input 1 (or the given name)."""
    rng = np.random.default_rng(1)
    a = Tensor(rng.standard_normal(4), requires_grad=True)
    b = Tensor(rng.standard_normal(4), requires_grad=True)
    with pytest.raises(GradcheckError, match=r"input 1 \(shape \(4,\)\)"):
        gradcheck(lambda a, b: ScaleSecondWrong.apply(a, b), [a, b])
    with pytest.raises(GradcheckError, match="weight"):
        gradcheck(lambda a, b: ScaleSecondWrong.apply(a, b), [a, b], names=["x", "weight"])


def test_random_upstream_catches_what_an_all_ones_upstream_hides():
    """A softmax whose backward returns 0 looks right under an all-ones upstream gradient
    (d sum(softmax) / dx = 0); gradcheck's random upstream exposes it."""
    x = Tensor(np.random.default_rng(2).standard_normal((2, 5)), requires_grad=True)
    # what a check with an all-ones upstream would compare: both sides ~0
    eps = 1e-6
    for idx in np.ndindex(x.shape):
        xp, xm = x.data.copy(), x.data.copy()
        xp[idx] += eps
        xm[idx] -= eps
        s = (SoftmaxZeroBackward().forward(xp).sum() - SoftmaxZeroBackward().forward(xm).sum())
        assert abs(s / (2 * eps)) < 1e-8
    with pytest.raises(GradcheckError):
        gradcheck(lambda x: SoftmaxZeroBackward.apply(x), [x])
    assert gradcheck(lambda x: F.softmax(x), [x])  # the real softmax passes


def test_gradcheck_fails_on_nan_gradients():
    """A NaN analytic gradient is a failure (NaN compares False with every tolerance)."""
    x = Tensor(np.ones(3), requires_grad=True)
    with pytest.raises(GradcheckError, match="nan"):
        gradcheck(lambda x: NaNBackward.apply(x), [x])


def test_gradcheck_perturbs_non_contiguous_inputs():
    """Inputs that are transposed views (not contiguous) are perturbed in place too, and the
    input values are restored afterwards."""
    base = np.random.default_rng(3).standard_normal((4, 3))
    x = Tensor(base.T, requires_grad=True)  # a non-contiguous (3, 4) view
    before = x.data.copy()
    assert gradcheck(lambda x: x.exp() * 2.0, [x])
    np.testing.assert_array_equal(x.data, before)
    with pytest.raises(GradcheckError):
        gradcheck(lambda x: SquareWrongBackward.apply(x), [x])
    np.testing.assert_array_equal(x.data, before)


def test_gradcheck_rejects_float32_inputs():
    """float32 central differences drown in rounding: a float32 input is a TypeError."""
    x = Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    with pytest.raises(TypeError, match="float32.*float64"):
        gradcheck(lambda x: x * 2.0, [x])


def test_gradcheck_needs_an_input_that_requires_grad():
    """Nothing to check is a ValueError, not a silent pass."""
    with pytest.raises(ValueError, match="requires_grad"):
        gradcheck(lambda x: x * 2.0, [Tensor(np.ones(3))])


def test_gradcheck_only_checks_inputs_that_require_grad():
    """A constant input (requires_grad=False) is used but not checked."""
    rng = np.random.default_rng(4)
    x = Tensor(rng.standard_normal(3), requires_grad=True)
    c = Tensor(rng.standard_normal(3))
    assert gradcheck(lambda x, c: x * c, [x, c])


class TooManyGrads(Function):
    """y = 2x with a backward that returns two gradients for its one input."""

    def forward(self, x):
        return 2 * x

    def backward(self, g):
        return 2 * g, g


class TooFewGrads(Function):
    """y = a * b with a backward that forgets b's gradient."""

    def forward(self, a, b):
        self.save(a, b)
        return a * b

    def backward(self, g):
        a, b = self.saved
        return (g * b,)


def test_a_backward_returning_the_wrong_number_of_gradients_is_reported():
    """Extra (or missing) gradients used to be dropped by zip(); the error names the Function
    and both counts, in gradcheck and in a plain backward()."""
    x = Tensor(np.ones(3), requires_grad=True)
    with pytest.raises(RuntimeError, match=r"TooManyGrads\.backward returned 2 gradients for 1 input"):
        gradcheck(lambda x: TooManyGrads.apply(x), [x])
    with pytest.raises(RuntimeError, match=r"TooManyGrads\.backward returned 2 gradients for 1 input"):
        TooManyGrads.apply(x).sum().backward()
    a = Tensor(np.ones(2), requires_grad=True)
    b = Tensor(np.ones(2), requires_grad=True)
    with pytest.raises(RuntimeError, match=r"TooFewGrads\.backward returned 1 gradient for 2 inputs"):
        gradcheck(lambda a, b: TooFewGrads.apply(a, b), [a, b])


def test_a_function_returning_an_ndarray_is_a_short_type_error():
    """fn must build its output from Tensors; an ndarray result (computed on x.data) has no
    backward, which used to surface as a raw AttributeError inside gradcheck."""
    x = Tensor(np.ones(3), requires_grad=True)
    with pytest.raises(TypeError, match=r"returned a numpy\.ndarray, not a Tensor") as info:
        gradcheck(lambda x: x.data * 2.0, [x])
    assert "x.data" in str(info.value)  # the hint names the likely mistake
    with pytest.raises(TypeError, match="does not require grad"):
        gradcheck(lambda x: Tensor(x.data * 2.0), [x])  # a Tensor cut off from the graph
