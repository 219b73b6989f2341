"""The tiny autograd: every elementary op's backward against numerical gradients, and the
behaviour of `Tensor.backward` (accumulation, freed graphs, no_grad, deep graphs, bad input).

Data comes from NumPy generators seeded by hypothesis, so each example is reproducible.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minigpt
from minigpt import Function, Tensor, gradcheck, no_grad
from minigpt.autograd import GradientSums
from conftest import tensor32, tensor64

seeds = st.integers(0, 2**32 - 1)
small_shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=3)
broadcast_pairs = hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3,
                                                    min_side=1, max_side=3)


def away_from_zero(rng, shape):
    """float64 values in +-[0.5, 2]: safe denominators."""
    sign = np.where(rng.random(shape) < 0.5, -1.0, 1.0)
    return Tensor(sign * rng.uniform(0.5, 2.0, shape), requires_grad=True)


# ---- gradient checks of the elementary ops ---------------------------------------------------

@given(broadcast_pairs, seeds)
def test_gradcheck_add_sub_mul_with_broadcasting(shapes, seed):
    """+, - and * send the right gradient to both operands, summed over broadcast axes."""
    rng = np.random.default_rng(seed)
    a, b = (tensor64(rng, *s) for s in shapes.input_shapes)
    assert gradcheck(lambda a, b: a + b, [a, b])
    assert gradcheck(lambda a, b: a - b, [a, b])
    assert gradcheck(lambda a, b: a * b, [a, b])


@given(broadcast_pairs, seeds)
def test_gradcheck_div_with_broadcasting(shapes, seed):
    """a / b: da = g / b and db = -g a / b^2, each summed over broadcast axes."""
    rng = np.random.default_rng(seed)
    a = tensor64(rng, *shapes.input_shapes[0])
    b = away_from_zero(rng, shapes.input_shapes[1])
    assert gradcheck(lambda a, b: a / b, [a, b])


@given(small_shapes, seeds)
def test_gradcheck_python_scalar_operands_and_neg(shape, seed):
    """Python numbers on either side (x*2.5, 3-x, 1/x, ...) and -x differentiate correctly."""
    rng = np.random.default_rng(seed)
    x = away_from_zero(rng, shape)
    assert gradcheck(lambda x: 2.5 * x + 1.0, [x])
    assert gradcheck(lambda x: 3 - x * 0.5, [x])
    assert gradcheck(lambda x: 1.0 / x - x / 4, [x])
    assert gradcheck(lambda x: -x, [x])


@given(hnp.mutually_broadcastable_shapes(signature="(n,k),(k,m)->(n,m)", max_dims=2,
                                         min_side=1, max_side=3), seeds)
def test_gradcheck_batched_matmul_with_broadcasting(shapes, seed):
    """(..., n, k) @ (..., k, m) with broadcast batch dims (including a plain 2-D operand)."""
    rng = np.random.default_rng(seed)
    a, b = (tensor64(rng, *s) for s in shapes.input_shapes)
    assert gradcheck(lambda a, b: a @ b, [a, b])


@given(st.data(), small_shapes, seeds)
def test_gradcheck_sum_and_mean(data, shape, seed):
    """sum/mean over None, one axis (negative too) or several axes, with and without keepdims."""
    ndim = len(shape)
    axis = data.draw(st.one_of(
        st.none(),
        st.integers(-ndim, ndim - 1) if ndim else st.none(),
        hnp.valid_tuple_axes(ndim)), label="axis")
    keepdims = data.draw(st.booleans(), label="keepdims")
    x = tensor64(np.random.default_rng(seed), *shape)
    assert gradcheck(lambda x: x.sum(axis=axis, keepdims=keepdims), [x])
    assert gradcheck(lambda x: x.mean(axis=axis, keepdims=keepdims), [x])


@given(small_shapes, seeds)
def test_gradcheck_reshape(shape, seed):
    """reshape to a flat vector, to a column, and with a -1: the gradient is g reshaped back."""
    x = tensor64(np.random.default_rng(seed), *shape)
    n = x.size
    assert gradcheck(lambda x: x.reshape(-1), [x])
    assert gradcheck(lambda x: x.reshape(n, 1), [x])
    assert gradcheck(lambda x: x.reshape((1, -1)) * x.reshape(n, 1), [x])  # an outer product


@given(st.data(), hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=3), seeds)
def test_gradcheck_transpose_and_permute(data, shape, seed):
    """transpose() (reverse), .T and permute(any permutation): the gradient un-permutes."""
    perm = data.draw(st.permutations(range(len(shape))), label="perm")
    x = tensor64(np.random.default_rng(seed), *shape)
    assert gradcheck(lambda x: x.transpose(), [x])
    assert gradcheck(lambda x: x.T, [x])
    assert gradcheck(lambda x: x.permute(*perm), [x])
    assert gradcheck(lambda x: x.transpose(perm), [x])


@given(st.data(), hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4), seeds)
def test_gradcheck_basic_indexing_and_slicing(data, shape, seed):
    """Integers, slices with steps, negative indices, Ellipsis and None: backward scatters g."""
    index = data.draw(hnp.basic_indices(shape, allow_newaxis=True), label="index")
    x = tensor64(np.random.default_rng(seed), *shape)
    assert gradcheck(lambda x: x[index], [x])


@given(st.data(), hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4), seeds)
def test_gradcheck_fancy_indexing_with_repeats(data, shape, seed):
    """Integer-array indices (repeats allowed) must scatter-*add*: x[[0, 0]] gives row 0 2*g."""
    index = data.draw(hnp.integer_array_indices(
        shape, result_shape=hnp.array_shapes(min_dims=1, max_dims=2, max_side=5)), label="index")
    x = tensor64(np.random.default_rng(seed), *shape)
    assert gradcheck(lambda x: x[index], [x])


def test_repeated_index_accumulates_exactly():
    """x[[0, 0, 2]].sum() puts gradient 2 on element 0, 0 on element 1 and 1 on element 2."""
    x = Tensor(np.arange(3.0), requires_grad=True)
    x[[0, 0, 2]].sum().backward()
    np.testing.assert_array_equal(x.grad, [2.0, 0.0, 1.0])


def test_gradcheck_boolean_mask_and_mixed_index():
    """A boolean mask and a fancy+slice combination also differentiate (scatter-add)."""
    rng = np.random.default_rng(0)
    x = tensor64(rng, 4, 3)
    mask = rng.random((4, 3)) < 0.5
    assert gradcheck(lambda x: x[mask], [x])
    assert gradcheck(lambda x: x[[3, 0, 3], 1:], [x])
    assert gradcheck(lambda x: x[Tensor(np.array([1, 1]))], [x])  # an index held in a Tensor


@given(st.data(), hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=3), seeds,
       st.integers(1, 3))
def test_gradcheck_concatenate_and_stack(data, shape, seed, n):
    """concatenate (pieces of different lengths) and stack (a new axis) route g to each input."""
    ndim = len(shape)
    axis = data.draw(st.integers(-ndim, ndim - 1), label="axis")
    rng = np.random.default_rng(seed)
    pieces = []
    for i in range(n):  # piece i has length i+1 along `axis`
        s = list(shape)
        s[axis] = i + 1
        pieces.append(tensor64(rng, *s))
    assert gradcheck(lambda *xs: minigpt.concatenate(xs, axis=axis), pieces)
    same = [tensor64(rng, *shape) for _ in range(n)]
    assert gradcheck(lambda *xs: minigpt.concatenate(xs, axis=axis), same)
    stack_axis = data.draw(st.integers(-ndim - 1, ndim), label="stack_axis")
    assert gradcheck(lambda *xs: minigpt.stack(xs, axis=stack_axis), same)


@given(small_shapes, seeds)
def test_gradcheck_exp_log_tanh(shape, seed):
    """exp, log (on positive inputs) and tanh, alone and composed."""
    rng = np.random.default_rng(seed)
    x = tensor64(rng, *shape)
    pos = Tensor(rng.uniform(0.5, 2.0, shape), requires_grad=True)
    assert gradcheck(lambda x: x.exp(), [x])
    assert gradcheck(lambda x: x.log(), [pos])
    assert gradcheck(lambda x: x.tanh(), [x])
    assert gradcheck(lambda x: (x.tanh() * 2.0).exp().log(), [x])


# ---- backward() behaviour -------------------------------------------------------------------

def test_gradients_accumulate_across_backward_calls():
    """Two backward calls on two separate graphs add up in .grad (as in PyTorch)."""
    x = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    (x * x).sum().backward()  # d/dx = 2x
    np.testing.assert_array_equal(x.grad, [2.0, 4.0, 6.0])
    (x * 3.0).sum().backward()  # + 3
    np.testing.assert_array_equal(x.grad, [5.0, 7.0, 9.0])


def test_second_backward_over_freed_graph_raises():
    """After backward() the saved arrays are freed: a second backward raises RuntimeError."""
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = (x * x).exp().sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()


def test_retain_graph_allows_a_second_backward():
    """With retain_graph=True the graph survives and the second backward adds the same grad."""
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    first = x.grad.copy()
    y.backward()
    np.testing.assert_array_equal(x.grad, 2 * first)


def test_no_grad_records_no_graph():
    """Inside no_grad() results have no creator and do not require grad; the flag is restored
    afterwards, even when the block raises."""
    x = Tensor(np.ones(3), requires_grad=True)
    with no_grad():
        assert not minigpt.is_grad_enabled()
        y = (x * 2.0).sum()
    assert minigpt.is_grad_enabled()
    assert y.creator is None and not y.requires_grad
    with pytest.raises(RuntimeError):
        y.backward()
    with pytest.raises(KeyError):
        with no_grad():
            raise KeyError("boom")
    assert minigpt.is_grad_enabled()


def test_shared_subexpression_gets_summed_gradients():
    """x used several times (y = x*x + x, z = y + y) receives the sum of all its paths."""
    x = Tensor(np.array([-1.0, 0.5, 2.0]), requires_grad=True)
    y = x * x + x
    z = (y + y).sum()  # dz/dx = 2 (2x + 1)
    z.backward()
    np.testing.assert_allclose(x.grad, 2 * (2 * x.data + 1), rtol=0, atol=0)


def test_diamond_graph_visits_each_node_once():
    """a -> (b, c) -> d: the topological order runs a's backward after both b and c."""
    a = Tensor(np.array([0.3, -0.7]), requires_grad=True)
    h = a.tanh()  # shared interior node
    d = (h * 2.0 + h.exp()).sum()
    d.backward()
    t = np.tanh(a.data)
    np.testing.assert_allclose(a.grad, (2.0 + np.exp(t)) * (1 - t * t), rtol=1e-15)


def test_deep_chain_does_not_hit_recursion_limit():
    """5000 chained ops backpropagate (the topological sort is iterative, not recursive)."""
    x = Tensor(np.array([1.0]), requires_grad=True)
    y = x
    for _ in range(5000):
        y = y * 1.0001 + 0.0
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [1.0001 ** 5000], rtol=1e-10)


def test_leaf_gradients_are_independent_arrays():
    """a + b hands the same array to both inputs; each leaf must own its .grad, so an in-place
    update of one (gradient clipping) does not change the other."""
    a = Tensor(np.ones(3), requires_grad=True)
    b = Tensor(np.ones(3), requires_grad=True)
    upstream = np.array([1.0, 2.0, 3.0])
    (a + b).backward(upstream)
    assert a.grad is not b.grad
    a.grad *= 0.5
    np.testing.assert_array_equal(b.grad, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(upstream, [1.0, 2.0, 3.0])  # the caller's array untouched


def test_backward_needs_scalar_or_matching_grad():
    """A non-scalar needs an explicit gradient of its shape; a wrong shape is a ValueError."""
    x = Tensor(np.ones((2, 3)), requires_grad=True)
    y = x * 2.0
    with pytest.raises(RuntimeError, match=r"\(2, 3\)"):
        y.backward()
    with pytest.raises(ValueError, match=r"\(3, 2\).*\(2, 3\)"):
        y.backward(np.ones((3, 2)))
    with pytest.raises(RuntimeError, match="does not require grad"):
        Tensor(np.ones(2)).sum().backward()


def test_ndarray_on_the_left_defers_to_tensor():
    """ndarray * Tensor and ndarray @ Tensor produce Tensors that stay in the graph."""
    x = Tensor(np.ones((2, 2)), requires_grad=True)
    y = np.full((2, 2), 3.0) * x
    z = np.eye(2) @ y
    assert isinstance(y, Tensor) and isinstance(z, Tensor)
    z.sum().backward()
    np.testing.assert_array_equal(x.grad, np.full((2, 2), 3.0))


# ---- bad input --------------------------------------------------------------------------------

@pytest.mark.parametrize("op", [lambda a, b: a + b, lambda a, b: a - b,
                                lambda a, b: a * b, lambda a, b: a / b],
                         ids=["add", "sub", "mul", "div"])
def test_elementwise_shape_mismatch_names_both_shapes(op):
    """(2, 3) and (4,) do not broadcast: ValueError naming both shapes."""
    a, b = Tensor(np.ones((2, 3))), Tensor(np.ones(4))
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4,\)"):
        op(a, b)


def test_shape_errors_of_structural_ops_name_the_shapes():
    """matmul (core and batch dims), reshape, concatenate and stack name the shapes involved."""
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 5\)"):
        Tensor(np.ones((2, 3))) @ Tensor(np.ones((4, 5)))
    with pytest.raises(ValueError, match=r"\(2, 3, 4\).*\(3, 4, 5\)"):
        Tensor(np.ones((2, 3, 4))) @ Tensor(np.ones((3, 4, 5)))
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4,\)"):
        Tensor(np.ones((2, 3))).reshape(4)
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2, 4\)"):
        minigpt.concatenate([Tensor(np.ones((2, 3))), Tensor(np.ones((2, 4)))], axis=0)
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3, 2\)"):
        minigpt.stack([Tensor(np.ones((2, 3))), Tensor(np.ones((3, 2)))])
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        Tensor(np.ones((2, 3))).permute(0, 0)


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.float16, np.bool_])
def test_non_float_data_raises_type_error(dtype):
    """Integer, bool or float16 data where float32/64 math is needed raises TypeError,
    both as an operand and when asking for requires_grad."""
    data = np.ones(3, dtype=dtype)
    with pytest.raises(TypeError, match=np.dtype(dtype).name):
        Tensor(data, requires_grad=True)
    with pytest.raises(TypeError, match=np.dtype(dtype).name):
        Tensor(data).exp()
    with pytest.raises(TypeError, match=np.dtype(dtype).name):
        Tensor(np.ones(3, dtype=np.float32)) + Tensor(data)


def test_mixing_float32_and_float64_raises_type_error():
    """No silent promotion: float32 op float64 (Tensor or ndarray) raises TypeError."""
    a = Tensor(np.ones(3, dtype=np.float32))
    b = Tensor(np.ones(3, dtype=np.float64))
    for op in (lambda: a + b, lambda: a * b, lambda: b - a, lambda: a / b.data,
               lambda: minigpt.concatenate([a, b])):
        with pytest.raises(TypeError, match="float32.*float64|float64.*float32"):
            op()


def test_float32_stays_float32_through_elementary_ops():
    """Every elementary op, with Python and NumPy scalar operands, keeps float32 forward and
    backward (NumPy 2 would promote through a float64 scalar)."""
    rng = np.random.default_rng(0)
    x = tensor32(rng, 2, 3)
    w = tensor32(rng, 3, 2)
    ops = {
        "add": lambda: x + 1.5, "radd": lambda: 1.5 + x, "sub": lambda: x - 2,
        "rsub": lambda: 2.0 - x, "mul": lambda: x * 0.1, "rmul": lambda: np.float64(0.1) * x,
        "div": lambda: x / 3.0, "rdiv": lambda: 1.0 / (x * x + 1.0), "neg": lambda: -x,
        "matmul": lambda: x @ w, "sum": lambda: x.sum(axis=0), "mean": lambda: x.mean(),
        "reshape": lambda: x.reshape(3, 2), "transpose": lambda: x.T,
        "index": lambda: x[[1, 1], 1:], "concat": lambda: minigpt.concatenate([x, x], axis=1),
        "stack": lambda: minigpt.stack([x, x]), "exp": lambda: x.exp(),
        "log": lambda: (x * x + 1.0).log(), "tanh": lambda: x.tanh(),
    }
    for name, op in ops.items():
        x.grad = w.grad = None
        y = op()
        assert y.dtype == np.float32, name
        y.backward(np.ones(y.shape, dtype=np.float32))
        assert x.grad.dtype == np.float32, name


# ---- gradient buffer ownership (autograd.GradientSums) ------------------------------------------

class _Fresh(Function):
    """y = x; backward returns a fresh array it remembers (to see where that array ends up)."""
    handed = []

    def forward(self, x):
        return x.copy()

    def backward(self, g):
        fresh = g * 1.0
        _Fresh.handed.append(fresh)
        return (fresh,)


def test_a_fresh_gradient_becomes_the_leaf_grad_without_a_copy():
    """The saving: a leaf keeps the array its Function returned (no copy of every parameter's
    gradient per step), but not under retain_graph (the Function may hand it out again)."""
    x = Tensor(np.ones(3), requires_grad=True)
    _Fresh.handed.clear()
    _Fresh.apply(x).backward(np.arange(3.0))
    assert x.grad is _Fresh.handed[-1]
    y = Tensor(np.ones(3), requires_grad=True)
    _Fresh.apply(y).backward(np.arange(3.0), retain_graph=True)
    assert y.grad is not _Fresh.handed[-1]
    np.testing.assert_array_equal(y.grad, np.arange(3.0))


def test_gradient_sums_add_in_place_only_into_owned_arrays():
    sums = GradientSums()
    first, second = np.ones(2), np.full(2, 2.0)
    sums.add("w", first)
    sums.add("w", second)  # first is owned: summed into it
    total = sums.take("w")
    assert total is first and sums.take("w") is None
    np.testing.assert_array_equal(total, [3.0, 3.0])
    caller = np.ones(2)
    sums.add("x", caller, borrowed=True)
    sums.add("x", np.ones(2))
    assert sums.take("x") is not caller
    np.testing.assert_array_equal(caller, [1.0, 1.0])  # the caller's array untouched
    view = np.ones((2, 2))[0]
    sums.add("v", view)
    sums.add("v", np.ones(2))
    np.testing.assert_array_equal(view, [1.0, 1.0])  # a view is never written
    twice = np.ones(2)
    sums.add("a", twice)
    sums.add("b", twice)  # handed to two places: neither may write it, nor keep it
    assert sums.keep(sums.take("a")) is not twice
    kept = GradientSums(reuse_arrays=False)
    fresh = np.ones(2)
    kept.add("k", fresh)
    assert kept.keep(kept.take("k")) is not fresh


def test_backward_reads_as_a_topological_sort_and_a_loop():
    """The traversal stays short: the bookkeeping lives in GradientSums, not in backward()."""
    import inspect
    source = inspect.getsource(Tensor.backward)
    body = [line for line in source.splitlines() if line.strip() and not line.strip().startswith("#")]
    assert len(body) <= 30, len(body)
    assert "_topological_order()" in source and "GradientSums" in source
