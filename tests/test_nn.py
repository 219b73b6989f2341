"""minigpt.nn: parameter registration and names, state dicts, train/eval, zero_grad, and the
four layer modules (Linear, Embedding, LayerNorm, Dropout).
"""
from __future__ import annotations

import numpy as np
import pytest

import minigpt.functional as F
from minigpt import Tensor, gradcheck
from minigpt.nn import Dropout, Embedding, LayerNorm, Linear, Module, ModuleList, Parameter


class Block(Module):
    def __init__(self, rng):
        super().__init__()
        self.ln = LayerNorm(4)
        self.fc = Linear(4, 6, rng=rng)
        self.drop = Dropout(0.5, rng=np.random.default_rng(0))

    def forward(self, x):
        return self.drop(F.gelu(self.fc(self.ln(x))))


class TinyNet(Module):
    """wte -> two blocks (ModuleList) -> head, a miniature of GPT-1's structure."""

    def __init__(self, seed=0):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.wte = Embedding(10, 4, rng=rng)
        self.h = ModuleList([Block(rng), Block(rng)])
        self.proj = Linear(6, 4, rng=rng)
        self.head = Linear(4, 10, bias=False, rng=rng)

    def forward(self, idx):
        x = self.wte(idx)
        for block in self.h:
            x = self.proj(block(x))
        return self.head(x)


EXPECTED_NAMES = [
    "wte.weight",
    "h.0.ln.weight", "h.0.ln.bias", "h.0.fc.weight", "h.0.fc.bias",
    "h.1.ln.weight", "h.1.ln.bias", "h.1.fc.weight", "h.1.fc.bias",
    "proj.weight", "proj.bias",
    "head.weight",
]


def test_named_parameters_names_and_order():
    """Dotted names in assignment order, ModuleList children as h.0, h.1 (HuggingFace style)."""
    net = TinyNet()
    assert [name for name, _ in net.named_parameters()] == EXPECTED_NAMES
    assert net.parameters() == [p for _, p in net.named_parameters()]
    assert all(isinstance(p, Parameter) and p.requires_grad for p in net.parameters())
    assert net.num_parameters() == 10 * 4 + 2 * (4 + 4 + 24 + 6) + 24 + 4 + 40


def test_shared_parameter_appears_once():
    """A Parameter held by two modules (weight tying) is listed once, under its first name."""
    shared = Parameter(np.ones((3, 3)))

    class Tied(Module):
        def __init__(self):
            super().__init__()
            self.a = Linear(3, 3)
            self.b = Linear(3, 3)
            self.a.weight = shared
            self.b.weight = shared
            self.again = self.a  # the same module under a second name

    names = [n for n, _ in Tied().named_parameters()]
    assert names == ["a.weight", "a.bias", "b.bias"]
    assert sum(p is shared for p in Tied().parameters()) == 1


def test_attribute_reassignment_updates_registration():
    """Setting a parameter attribute to None (Linear(bias=False)) or a plain value removes it."""
    lin = Linear(2, 3, bias=False)
    assert [n for n, _ in lin.named_parameters()] == ["weight"]
    lin.weight = np.zeros((2, 3))  # a plain array is not a parameter
    assert lin.parameters() == []


def test_module_without_super_init_raises():
    """Forgetting super().__init__() gives a clear error, not an AttributeError later."""
    class Broken(Module):
        def __init__(self):
            self.w = Parameter(np.ones(2))

    with pytest.raises(RuntimeError, match="super"):
        Broken()


def test_state_dict_round_trip():
    """state_dict keys are the parameter names; loading one net's state into another makes
    their outputs identical; the load copies (later edits of the source do not leak in)."""
    a, b = TinyNet(seed=0), TinyNet(seed=1)
    a.eval(), b.eval()
    idx = np.array([[1, 2, 3], [3, 3, 9]])
    assert not np.allclose(a(idx).data, b(idx).data)
    state = a.state_dict()
    assert list(state) == EXPECTED_NAMES
    assert state["wte.weight"] is a.wte.weight.data  # the parameters' own arrays
    b.load_state_dict(state)
    np.testing.assert_array_equal(a(idx).data, b(idx).data)
    state["wte.weight"][:] = 0.0
    assert not np.all(b.wte.weight.data == 0.0)
    for (_, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        assert p.dtype == q.dtype == np.float32


def test_load_state_dict_accepts_tensors_and_clears_grads():
    """Values may be Tensors as well as arrays; stale gradients are dropped on load."""
    lin = Linear(2, 3)
    lin.weight.grad = np.ones((2, 3), dtype=np.float32)
    lin.load_state_dict({"weight": Tensor(np.full((2, 3), 2.0, np.float32)),
                         "bias": np.zeros(3, np.float32)})
    np.testing.assert_array_equal(lin.weight.data, 2.0)
    assert lin.weight.grad is None


def snapshot(module):
    return {n: p.data.copy() for n, p in module.named_parameters()}


def assert_unchanged(module, before):
    for n, p in module.named_parameters():
        np.testing.assert_array_equal(p.data, before[n], err_msg=n)


def test_load_state_dict_missing_and_unexpected_keys():
    """Missing or unexpected keys raise KeyError naming them, and nothing is loaded;
    strict=False loads what matches."""
    net = TinyNet()
    before = snapshot(net)
    state = {k: np.zeros_like(v) for k, v in TinyNet(seed=3).state_dict().items()}
    missing = dict(state)
    del missing["h.1.fc.bias"]
    with pytest.raises(KeyError, match=r"missing keys: \['h.1.fc.bias'\]"):
        net.load_state_dict(missing)
    assert_unchanged(net, before)
    extra = dict(state, **{"h.2.fc.bias": np.zeros(6, np.float32)})
    with pytest.raises(KeyError, match=r"unexpected keys: \['h.2.fc.bias'\]"):
        net.load_state_dict(extra)
    assert_unchanged(net, before)
    net.load_state_dict(missing, strict=False)
    np.testing.assert_array_equal(net.wte.weight.data, 0.0)
    np.testing.assert_array_equal(net.h[1].fc.bias.data, before["h.1.fc.bias"])


def test_load_state_dict_shape_mismatch_names_parameter_and_shapes():
    """A wrong shape raises ValueError naming the parameter and both shapes; no parameter
    (not even those before it in order) is changed."""
    net = TinyNet()
    before = snapshot(net)
    state = {k: np.zeros_like(v) for k, v in net.state_dict().items()}
    state["h.1.fc.weight"] = np.zeros((6, 4), np.float32)  # transposed: (out, in)
    with pytest.raises(ValueError, match=r"'h.1.fc.weight'.*\(4, 6\).*\(6, 4\)"):
        net.load_state_dict(state)
    assert_unchanged(net, before)


def test_train_and_eval_propagate_to_every_submodule():
    """eval() / train() set .training on the whole tree (ModuleList children included),
    return the module, and switch dropout off / on."""
    net = TinyNet()
    modules = [m for _, m in net.named_modules()]
    assert len(modules) == 1 + 1 + 1 + 2 * 4 + 1 + 1
    assert net.eval() is net
    assert not any(m.training for m in modules)
    x = Tensor(np.ones((2, 6), np.float32))
    assert net.h[0].drop(x) is x
    assert net.train() is net
    assert all(m.training for m in modules)
    assert net.h[0].drop(x) is not x


def test_zero_grad_clears_every_gradient():
    """After backward every parameter has a gradient; zero_grad() sets them all to None."""
    net = TinyNet()
    out = net(np.array([[1, 2]]))
    F.cross_entropy(out, np.array([[3, 4]])).backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_parameter_must_be_float():
    """A Parameter holds float32/float64 data: integer data is a TypeError."""
    with pytest.raises(TypeError, match="int64"):
        Parameter(np.arange(3))


def test_layer_modules_match_functional_and_pass_gradcheck():
    """Linear, Embedding and LayerNorm modules compute exactly their F ops (float32 by default),
    and in float64 (astype) their parameters pass gradcheck through the module call."""
    rng = np.random.default_rng(0)
    lin, emb, ln = Linear(3, 2, rng=rng), Embedding(5, 3, rng=rng), LayerNorm(3)
    x = Tensor(rng.standard_normal((2, 3)).astype(np.float32))
    idx = np.array([[0, 4, 4]])
    assert lin.weight.shape == (3, 2) and lin.weight.dtype == np.float32
    np.testing.assert_array_equal(lin(x).data, F.linear(x, lin.weight, lin.bias).data)
    np.testing.assert_array_equal(emb(idx).data, F.embedding(idx, emb.weight).data)
    np.testing.assert_array_equal(ln(x).data, F.layer_norm(x, ln.weight, ln.bias).data)
    for m in (lin, emb, ln):
        m.astype(np.float64)
    x64 = Tensor(x.data.astype(np.float64), requires_grad=True)
    assert gradcheck(lambda x, w, b: lin(x), [x64, lin.weight, lin.bias])
    assert gradcheck(lambda w: emb(idx), [emb.weight])
    assert gradcheck(lambda x, w, b: ln(x), [x64, ln.weight, ln.bias])


def test_dropout_module_is_reproducible_and_checks_p():
    """nn.Dropout with a seeded generator repeats its masks; p outside [0, 1) is rejected."""
    x = Tensor(np.ones((4, 8)))
    a = Dropout(0.5, rng=np.random.default_rng(11))(x).data
    b = Dropout(0.5, rng=np.random.default_rng(11))(x).data
    np.testing.assert_array_equal(a, b)
    assert set(np.unique(a)) <= {0.0, 2.0}
    with pytest.raises(ValueError, match="dropout probability"):
        Dropout(1.0)
