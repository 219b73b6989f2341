"""minigpt.trace: the op order, shapes and statistics of a traced pass, its gradient norms
against autograd's own `.grad`, the tables, and `minigpt trace` on a checkpoint."""
import numpy as np
import pytest

import minigpt
from minigpt import autograd, cli
from minigpt.settings import config
from minigpt.tokenizers import CharTokenizer
from minigpt.trace import Trace

# the ops that carry the model's arithmetic (shape ops, adds and dropout are left out here)
MAIN_OPS = {"Embedding", "Linear", "Attention", "LayerNorm", "GELU", "CrossEntropy"}


def tiny_model(n_layer=2, dtype="float64", vocab=13):
    cfg = minigpt.GPTConfig(vocab_size=vocab, n_ctx=16, n_layer=n_layer, n_embd=12, n_head=3,
                            dtype=dtype)
    model = minigpt.GPT(cfg, seed=3)
    model.eval()
    return model


def batch(vocab=13, B=2, T=7, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, vocab, (B, T)), rng.integers(0, vocab, (B, T))


@pytest.mark.parametrize("mode", ["reference", "auto"])
def test_op_order_of_a_gpt(mode):
    model = tiny_model(n_layer=2)
    with minigpt.use(mode):
        tr = minigpt.trace(model, *batch())
    impls = {r.impl for r in tr.ops if r.op in MAIN_OPS}
    assert impls == {"reference"} if mode == "reference" else impls <= {"reference", "fast"}
    assert {r.impl for r in tr.ops if r.op not in MAIN_OPS} == {""}  # autograd's own ops
    got = [(r.op, r.module) for r in tr.ops if r.op in MAIN_OPS]
    expected = [("Embedding", "tokens_embed"), ("Embedding", "positions_embed")]
    for i in range(2):
        expected += [("Linear", f"h.{i}.attn.c_attn"), ("Attention", f"h.{i}.attn"),
                     ("Linear", f"h.{i}.attn.c_proj"), ("LayerNorm", f"h.{i}.ln_1"),
                     ("Linear", f"h.{i}.mlp"), ("GELU", f"h.{i}.mlp"),  # F.linear_gelu(c_fc)
                     ("Linear", f"h.{i}.mlp.c_proj"), ("LayerNorm", f"h.{i}.ln_2")]
    expected += [("Linear", "GPT.lm_logits"), ("CrossEntropy", "GPT.loss")]
    assert got == expected
    # the backward visits every op once, the loss first, and an op only after all its users
    steps = {r.index: r.backward_step for r in tr.ops}
    assert sorted(steps.values()) == list(range(len(tr.ops)))
    assert tr.backward_ops[0].op == "CrossEntropy"
    for r in tr.ops:
        for src in r.inputs:
            if src.startswith("#"):
                assert steps[int(src[1:])] > steps[r.index]


def test_shapes_and_sources():
    model = tiny_model(n_layer=1)
    idx, targets = batch(B=3, T=5)
    tr = minigpt.trace(model, idx, targets)
    by_op = {}
    for r in tr.ops:
        by_op.setdefault(r.op, []).append(r)
        for src, shape in zip(r.inputs, r.input_shapes):
            if src.startswith("#"):  # an input made by an earlier op has that op's output shape
                k = int(src[1:])
                assert k < r.index and tr.ops[k].shape == shape
            elif src != "input":  # a parameter, by name
                assert shape == tr.param(src).shape
    assert by_op["Embedding"][0].shape == (3, 5, 12)
    assert by_op["Attention"][0].input_shapes == [(3, 3, 5, 4)] * 3  # (B, nh, T, hs)
    assert by_op["GELU"][0].shape == (3, 5, 48)
    assert by_op["CrossEntropy"][0].shape == () and tr.ops[-1].op == "CrossEntropy"
    assert all(r.dtype == "float64" for r in tr.ops)


def test_statistics_and_loss_match_a_plain_pass():
    model = tiny_model(n_layer=1)
    idx, targets = batch()
    logits = model(idx).data
    loss = model.loss(idx, targets).item()
    tr = minigpt.trace(model, idx, targets)
    assert tr.loss == pytest.approx(loss, rel=1e-12)
    lm = [r for r in tr.ops if r.op == "Linear" and r.module == "GPT.lm_logits"][0]
    assert lm.shape == logits.shape
    assert lm.mean == pytest.approx(logits.mean(), rel=1e-10)
    assert lm.std == pytest.approx(logits.std(), rel=1e-10)
    assert lm.absmax == pytest.approx(np.abs(logits).max(), rel=1e-12)
    ln = [r for r in tr.ops if r.op == "LayerNorm"][0]  # gain 1, bias 0 at init: rows have
    assert abs(ln.mean) < 1e-12 and 0.95 < ln.std < 1.0  # mean 0, std sqrt(var / (var + eps))
    assert tr.ops[-1].grad_norm == 1.0  # dL/dL


@pytest.mark.parametrize("dtype,rtol", [("float64", 1e-12), ("float32", 1e-5)])
def test_gradient_norms_equal_the_parameters_grad(dtype, rtol):
    model = tiny_model(n_layer=2, dtype=dtype)
    idx, targets = batch()
    for p in model.parameters():  # stale gradients must not leak into the trace
        p.grad = np.ones_like(p.data)
    tr = minigpt.trace(model, idx, targets)
    assert [p.name for p in tr.params] == [n for n, _ in model.named_parameters()]
    for name, p in model.named_parameters():
        rec = tr.param(name)
        assert p.grad is not None and rec.grad_norm is not None
        assert rec.grad_norm == pytest.approx(np.linalg.norm(p.grad.astype(np.float64)), rel=rtol)
        assert rec.norm == pytest.approx(np.linalg.norm(p.data.astype(np.float64)), rel=1e-6)
    # the tied embedding gets two contributions (the lookup and the output layer)
    uses = [r for r in tr.ops if "tokens_embed.weight" in r.inputs]
    assert [r.op for r in uses] == ["Embedding", "Transpose"]
    # and the traced gradients equal a plain backward's
    model.zero_grad()
    model.loss(idx, targets).backward()
    for name, p in model.named_parameters():
        assert tr.param(name).grad_norm == pytest.approx(np.linalg.norm(p.grad.astype(np.float64)),
                                                         rel=rtol)


def test_op_gradient_norms_follow_the_chain():
    model = tiny_model(n_layer=1)
    tr = minigpt.trace(model, *batch())
    for r in tr.ops:
        for src, n in zip(r.inputs, r.input_grad_norms):
            if src.startswith("#") and n is not None:
                producer = tr.ops[int(src[1:])]
                users = [u for u in tr.ops if src in u.inputs]
                if len(users) == 1:  # one user: the gradient it returns is all the producer gets
                    assert producer.grad_norm == pytest.approx(n, rel=1e-12)


def test_forward_only_and_observer_cleanup():
    model = tiny_model(n_layer=1)
    idx, _ = batch()
    tr = minigpt.trace(model, idx)  # logits (B, T, V): not a scalar, so no backward
    assert tr.loss is None and tr.ops[-1].shape == (2, 7, 13)
    assert all(r.grad_norm is None for r in tr.ops)
    assert all(p.grad_norm is None for p in tr.params)
    assert config.observers == []

    def broken(model, idx, targets):
        model(idx)
        raise KeyError("boom")

    with pytest.raises(KeyError):
        minigpt.trace(model, idx, forward=broken)
    assert config.observers == []
    with minigpt.no_grad(), pytest.raises(RuntimeError, match="no_grad"):
        minigpt.trace(model, idx)


def test_tables():
    model = tiny_model(n_layer=1)
    tr = minigpt.trace(model, *batch())
    assert isinstance(tr, Trace)
    text = str(tr)
    lines = text.splitlines()
    assert lines[0].startswith("loss ")
    for part, n in (("forward", len(tr.ops)), ("backward", len(tr.ops)),
                    ("params", len(tr.params))):
        assert f"{part} ({n} rows)" in text
        assert len(tr.rows(part)[1]) == n
    for name, _ in model.named_parameters():
        assert name in text
    short = tr.table("forward", max_rows=6)
    assert "rows ..." in short and len(short.splitlines()) == 1 + 1 + 1 + 7
    html = tr._repr_html_()
    assert html.count("<table>") == 3 and "h.0.ln_1" in html
    with pytest.raises(ValueError, match="unknown table"):
        tr.table("sideways")
    with pytest.raises(KeyError, match="no parameter"):
        tr.param("h.9.nothing")


def test_cli_on_a_checkpoint(tmp_path, capsys):
    from minigpt.training import save_checkpoint
    text = "to be or not to be"
    tok = CharTokenizer.train(text)
    model = tiny_model(n_layer=1, dtype="float32", vocab=tok.vocab_size)
    save_checkpoint(tmp_path / "ckpt", model, tok)
    rc = cli.main(["trace", "--ckpt", str(tmp_path / "ckpt"), "--prompt", "not to be"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "9 tokens" in out and "forward (" in out and "params (" in out
    assert "CrossEntropy" in out and "h.0.attn.c_attn.weight" in out
    # one token: nothing to predict, a forward-only trace
    rc = cli.main(["trace", "--ckpt", str(tmp_path / "ckpt"), "--prompt", "t", "--max-rows", "4"])
    out = capsys.readouterr().out
    assert rc == 0 and "backward (" not in out and "rows ..." in out
