"""minigpt.dispatch: the modes, the environment variable, the context manager, supports(),
implementations(), and that the public ops really run the implementation the mode names."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import minigpt
import minigpt.functional as F
from minigpt import Tensor, dispatch
from minigpt.autograd import Function

OPS = ["attention", "cross_entropy", "dropout", "embedding", "gelu", "layer_norm", "linear",
       "log_softmax", "softmax"]


class _Ref(Function):
    def forward(self, x):
        return x + 1

    def backward(self, g):
        return (g,)


class _Fast(_Ref):
    pass


class _Cuda(_Ref):
    pass


@pytest.fixture
def toy_op():
    """A throw-away op 'toy' with all three implementations; the cuda one only on size > 2."""
    dispatch.register("toy", "reference", _Ref)
    dispatch.register("toy", "fast", _Fast)
    dispatch.register("toy", "cuda", _Cuda, supports=lambda x: x.size > 2)
    yield
    for impl in dispatch.IMPLS:
        dispatch.unregister("toy", impl)


@pytest.fixture(autouse=True)
def restore_mode():
    before = dispatch.current_mode()
    yield
    minigpt.use(before)


def test_default_mode_is_auto_and_picks_fast_on_numpy(toy_op):
    assert dispatch.current_mode() == "auto"
    assert dispatch.choose("toy", np.zeros(5)) is _Fast
    assert minigpt.implementations()["toy"] == "fast"


def test_modes_pick_their_implementation(toy_op):
    minigpt.use("reference")
    assert dispatch.choose("toy", np.zeros(5)) is _Ref
    assert minigpt.implementations()["toy"] == "reference"
    minigpt.use("fast")
    assert dispatch.choose("toy", np.zeros(5)) is _Fast
    minigpt.use("auto")
    assert dispatch.choose("toy", np.zeros(5)) is _Fast


def test_fast_falls_back_to_reference_when_an_op_has_no_fast_version(toy_op):
    dispatch.unregister("toy", "fast")
    assert dispatch.choose("toy", np.zeros(5)) is _Ref
    assert minigpt.implementations()["toy"] == "reference"


def test_cuda_implementations_never_take_numpy_arrays(toy_op):
    """supports() would accept size 5, but a "cuda" implementation takes CuPy arrays only."""
    assert dispatch.choose("toy", np.zeros(5)) is _Fast


def test_use_as_context_manager_restores_the_mode_even_on_error(toy_op):
    with minigpt.use("reference"):
        assert dispatch.current_mode() == "reference"
        with minigpt.use("fast"):
            assert dispatch.choose("toy", np.zeros(1)) is _Fast
        assert dispatch.current_mode() == "reference"
    assert dispatch.current_mode() == "auto"
    with pytest.raises(ZeroDivisionError):
        with minigpt.use("reference"):
            1 / 0
    assert dispatch.current_mode() == "auto"


def test_bad_mode_names_the_allowed_values():
    with pytest.raises(ValueError, match="auto, fast, reference"):
        minigpt.use("quick")
    assert dispatch.current_mode() == "auto"
    with pytest.raises(ValueError, match="unknown implementation"):
        dispatch.register("toy", "gpu", _Ref)


def test_unknown_op_is_a_clear_error():
    with pytest.raises(KeyError, match="no implementation of op 'nope'"):
        dispatch.choose("nope", np.zeros(1))


def test_apply_unwraps_tensors_and_runs_the_chosen_class(toy_op):
    x = Tensor(np.zeros(3), requires_grad=True)
    with minigpt.use("reference"):
        y = dispatch.apply("toy", x)
    assert type(y.creator) is _Ref
    assert type(dispatch.apply("toy", x).creator) is _Fast


def test_implementations_lists_every_public_op():
    impls = minigpt.implementations()
    assert set(OPS) <= set(impls)
    with minigpt.use("reference"):
        assert all(impl == "reference" for impl in minigpt.implementations().values())


@pytest.mark.parametrize("mode", ["reference", "fast"])
def test_public_ops_run_the_implementation_the_mode_names(mode):
    """F.layer_norm etc. build their node with the class that implementations() names."""
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((2, 3, 4)), requires_grad=True)
    w, b = Tensor(np.ones(4), requires_grad=True), Tensor(np.zeros(4), requires_grad=True)
    with minigpt.use(mode):
        picked = minigpt.implementations()
        nodes = {"layer_norm": F.layer_norm(x, w, b), "gelu": F.gelu(x),
                 "linear": F.linear(x, Tensor(np.ones((4, 2)), requires_grad=True)),
                 "softmax": F.softmax(x), "log_softmax": F.log_softmax(x)}
        for op, y in nodes.items():
            assert type(y.creator) is dispatch.registered()[op][picked[op]], op


def run_python(code: str, **env):
    full_env = {**os.environ, **env}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=full_env, cwd=os.path.dirname(os.path.dirname(__file__)))


def test_environment_variable_sets_the_start_mode():
    r = run_python("import minigpt; print(minigpt.dispatch.current_mode(), "
                   "minigpt.implementations()['layer_norm'])", MINIGPT_OPS="reference")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["reference", "reference"]


def test_environment_variable_with_a_bad_value_warns_and_import_still_works():
    r = run_python("import minigpt; print(minigpt.dispatch.current_mode())", MINIGPT_OPS="fastest")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["auto"]
    assert "OpsModeWarning" in r.stderr
    assert "MINIGPT_OPS='fastest'" in r.stderr and "auto, fast, reference" in r.stderr
