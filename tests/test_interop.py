"""GPT-1 weights in and out of minigpt: parity with `transformers`, both layouts, bad input.

transformers and torch are optional test dependencies: the parity tests skip, saying why, when
either is missing; the OpenAI-layout and bad-input tests need neither.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minigpt import GPT, GPTConfig, no_grad
from minigpt import safetensors as st
from minigpt.interop import GPT1_N_HEAD, PretrainedFormatError

try:
    import torch
    import transformers
    from transformers import (OpenAIGPTConfig, OpenAIGPTDoubleHeadsModel,
                              OpenAIGPTLMHeadModel, OpenAIGPTModel)
except ImportError as e:  # optional dependencies
    torch = transformers = None
    _HF_REASON = f"transformers/torch not installed ({e}); parity tests need both"
else:
    _HF_REASON = ""
    transformers.logging.set_verbosity_error()

requires_hf = pytest.mark.skipif(transformers is None, reason=_HF_REASON or "present")

ROOT = Path(__file__).resolve().parents[1]
V, T, C, L, H = 100, 16, 32, 2, 4  # vocab, n_positions, n_embd, n_layer, n_head


# ------------------------------------------------------------------------------ helpers

def _hf_config(**kw):
    base = dict(vocab_size=V, n_positions=T, n_embd=C, n_layer=L, n_head=H,
                embd_pdrop=0.0, attn_pdrop=0.0, resid_pdrop=0.0, summary_first_dropout=0.0)
    return OpenAIGPTConfig(**{**base, **kw})


def _randomize_torch(model, seed=0):
    """Weights larger than the 0.02 init, and LayerNorm gains/biases away from 1/0, so every
    path (GELU's curved part, LN affine terms, biases) influences the logits."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1:
                base = 1.0 if name.endswith(("ln_1.weight", "ln_2.weight")) else 0.0
                p.copy_(base + 0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.15 * torch.randn(p.shape, generator=g))
    return model


def _randomize_minigpt(model, seed=0):
    rng = np.random.default_rng(seed)
    for name, p in model.named_parameters():
        if p.data.ndim == 1:
            base = 1.0 if name.endswith(("ln_1.weight", "ln_2.weight")) else 0.0
            p.data = (base + 0.2 * rng.standard_normal(p.shape)).astype(p.dtype)
        else:
            p.data = (0.15 * rng.standard_normal(p.shape)).astype(p.dtype)
    return model


def _hf_logits(hf, ids, mask=None):
    with torch.no_grad():
        out = hf(torch.as_tensor(ids), attention_mask=None if mask is None
                 else torch.as_tensor(mask, dtype=torch.float32))
    return out.logits.numpy()


def _params_equal(model, expected: dict):
    own = dict(model.named_parameters())
    assert set(own) == set(expected)
    for k, p in own.items():
        np.testing.assert_array_equal(p.data, expected[k], err_msg=k)


@pytest.fixture(scope="module")
def hf_lm(tmp_path_factory):
    """(transformers OpenAIGPTLMHeadModel with random weights, the directory it saved)."""
    if transformers is None:
        pytest.skip(_HF_REASON)
    torch.manual_seed(0)
    hf = _randomize_torch(OpenAIGPTLMHeadModel(_hf_config())).eval()
    d = tmp_path_factory.mktemp("hf_lm")
    hf.save_pretrained(d)
    return hf, d


@pytest.fixture(scope="module")
def ids():
    return np.random.default_rng(1).integers(0, V, size=(3, T))


# ------------------------------------------------------------------- transformers -> minigpt

@requires_hf
def test_hf_safetensors_logits_parity(hf_lm, ids):
    hf, d = hf_lm
    assert {"config.json", "model.safetensors"} <= set(os.listdir(d))
    model = GPT.from_pretrained(d)
    assert model.config == GPTConfig(vocab_size=V, n_ctx=T, n_layer=L, n_embd=C, n_head=H,
                                     embd_pdrop=0.0, attn_pdrop=0.0, resid_pdrop=0.0)
    assert not model.training and model.pretrained_heads == {}
    with no_grad():
        ours = model(ids).data
    ref = _hf_logits(hf, ids)
    assert ours.dtype == np.float32
    assert np.abs(ref).max() > 1.0  # the random weights make the comparison meaningful
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-5)
    # loading twice gives the same model
    with no_grad():
        np.testing.assert_array_equal(GPT.from_pretrained(d)(ids).data, ours)


@requires_hf
def test_hf_padding_mask_parity(hf_lm, ids):
    hf, d = hf_lm
    model = GPT.from_pretrained(d)
    lengths = np.array([T, 11, 5])
    # right padding: every query sees at least key 0, so every position is comparable
    right = (np.arange(T)[None, :] < lengths[:, None]).astype(np.int64)
    with no_grad():
        ours = model(ids, padding_mask=right).data
    np.testing.assert_allclose(ours, _hf_logits(hf, ids, right), rtol=0, atol=1e-5)
    # left padding: compare the real tokens' rows (a padded query that sees no real key outputs
    # zeros in minigpt; transformers' additive masks give it arbitrary values)
    left = right[:, ::-1].copy()
    with no_grad():
        ours = model(ids, padding_mask=left).data
    ref = _hf_logits(hf, ids, left)
    real = left.astype(bool)
    np.testing.assert_allclose(ours[real], ref[real], rtol=0, atol=1e-5)


@requires_hf
def test_hf_gradient_parity(hf_lm, ids):
    hf, d = hf_lm
    model = GPT.from_pretrained(d)
    model.train()  # dropout is 0 in this config: train mode must equal eval mode
    rng = np.random.default_rng(2)
    targets = rng.integers(0, V, size=ids.shape)
    mask = (np.arange(T)[None, :] < np.array([T, 12, 7])[:, None]).astype(np.int64)
    targets[mask == 0] = -100  # padded positions do not count

    loss = model.loss(ids, targets, padding_mask=mask)
    model.zero_grad()
    loss.backward()

    hf.train()
    hf.zero_grad()
    logits = hf(torch.as_tensor(ids), attention_mask=torch.as_tensor(mask, dtype=torch.float32)).logits
    ref_loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), torch.as_tensor(targets).reshape(-1),
                                                 ignore_index=-100)
    ref_loss.backward()
    hf.eval()
    assert abs(float(loss.data) - ref_loss.item()) < 1e-5

    ref = {n[len("transformer."):]: p.grad.numpy() for n, p in hf.named_parameters()}
    ours = {n: p.grad for n, p in model.named_parameters()}
    assert set(ours) == set(ref)  # lm_head.weight is tied: one parameter, tokens_embed.weight
    scale = max(np.abs(g).max() for g in ref.values())
    worst = max(np.abs(ours[n] - ref[n]).max() for n in ref)
    assert worst <= 1e-4 * scale, f"max |grad diff| {worst:.3g} vs largest gradient {scale:.3g}"


@requires_hf
def test_hf_model_key_set_and_pytorch_bin(tmp_path, hf_lm, ids):
    """OpenAIGPTModel's keys (no `transformer.` prefix), from pytorch_model.bin."""
    hf, _ = hf_lm
    d = tmp_path / "base"
    d.mkdir()
    hf.config.to_json_file(d / "config.json")
    base_state = hf.transformer.state_dict()
    assert "tokens_embed.weight" in base_state
    torch.save(base_state, d / "pytorch_model.bin")
    model = GPT.from_pretrained(d)
    _params_equal(model, {k: v.numpy() for k, v in base_state.items()})
    # and the LM-head key set (with a tied lm_head.weight present) from a .bin too
    d2 = tmp_path / "lm"
    d2.mkdir()
    hf.config.to_json_file(d2 / "config.json")
    full = hf.state_dict()
    assert "lm_head.weight" in full and "transformer.h.0.attn.c_attn.weight" in full
    # buffers that older transformers versions saved with the weights are ignored
    full["transformer.h.0.attn.bias"] = torch.tril(torch.ones(T, T)).view(1, 1, T, T)
    full["transformer.position_ids"] = torch.arange(T)
    torch.save(full, d2 / "pytorch_model.bin")
    with no_grad():
        np.testing.assert_allclose(GPT.from_pretrained(d2)(ids).data, _hf_logits(hf, ids),
                                   rtol=0, atol=1e-5)


@requires_hf
def test_hf_base_model_safetensors(tmp_path, ids):
    torch.manual_seed(3)
    base = _randomize_torch(OpenAIGPTModel(_hf_config()), seed=3).eval()
    base.save_pretrained(tmp_path)
    model = GPT.from_pretrained(tmp_path)
    with no_grad():
        h = model.hidden_states(ids).data
    with torch.no_grad():
        ref = base(torch.as_tensor(ids)).last_hidden_state.numpy()
    np.testing.assert_allclose(h, ref, rtol=0, atol=1e-5)


@requires_hf
def test_hf_double_heads_keeps_head(tmp_path, ids):
    torch.manual_seed(4)
    hf = _randomize_torch(OpenAIGPTDoubleHeadsModel(_hf_config()), seed=4).eval()
    hf.save_pretrained(tmp_path / "dh")
    # transformers saves lm_head.weight here, not transformer.tokens_embed.weight
    keys = set(st.load_file(tmp_path / "dh" / "model.safetensors"))
    assert "multiple_choice_head.summary.weight" in keys
    model = GPT.from_pretrained(tmp_path / "dh")
    heads = model.pretrained_heads
    assert set(heads) == {"multiple_choice_head.summary.weight",
                          "multiple_choice_head.summary.bias"}
    np.testing.assert_array_equal(heads["multiple_choice_head.summary.weight"],
                                  hf.multiple_choice_head.summary.weight.detach().numpy())
    assert heads["multiple_choice_head.summary.weight"].shape == (1, C)  # nn.Linear (out, in)
    # the multiple-choice logit at a classify position, and the LM logits, match transformers
    x = ids[None, :2]  # (batch 1, 2 choices, T)
    cls = np.array([[T - 1, 9]])
    with torch.no_grad():
        out = hf(torch.as_tensor(x), mc_token_ids=torch.as_tensor(cls))
    with no_grad():
        h = model.hidden_states(x[0]).data  # (2, T, C)
        lm = model(x[0]).data
    w, b = heads["multiple_choice_head.summary.weight"], heads["multiple_choice_head.summary.bias"]
    mc = h[np.arange(2), cls[0]] @ w.T + b
    np.testing.assert_allclose(mc[:, 0], out.mc_logits.numpy()[0], rtol=0, atol=1e-5)
    np.testing.assert_allclose(lm, out.logits.numpy()[0], rtol=0, atol=1e-5)
    # written back as a DoubleHeads checkpoint that transformers loads completely
    model.save_pretrained(tmp_path / "back", include_heads=True)
    back, info = OpenAIGPTDoubleHeadsModel.from_pretrained(tmp_path / "back",
                                                           output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    with torch.no_grad():
        again = back.eval()(torch.as_tensor(x), mc_token_ids=torch.as_tensor(cls))
    np.testing.assert_allclose(again.mc_logits.numpy(), out.mc_logits.numpy(), rtol=0, atol=1e-5)


# ------------------------------------------------------------------- minigpt -> transformers

@requires_hf
def test_save_pretrained_loads_in_transformers(tmp_path, ids):
    cfg = GPTConfig(vocab_size=V, n_ctx=T, n_layer=L, n_embd=C, n_head=H, embd_pdrop=0.0,
                    attn_pdrop=0.0, resid_pdrop=0.0)
    model = _randomize_minigpt(GPT(cfg, seed=5), seed=5).eval()
    model.save_pretrained(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["config.json", "model.safetensors"]
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "openai-gpt" and config["afn"] == "gelu"
    assert config["architectures"] == ["OpenAIGPTLMHeadModel"]
    keys = set(st.load_file(tmp_path / "model.safetensors"))
    assert "transformer.tokens_embed.weight" in keys and "lm_head.weight" not in keys

    hf, info = OpenAIGPTLMHeadModel.from_pretrained(tmp_path, output_loading_info=True)
    assert info["missing_keys"] == set() and info["unexpected_keys"] == set()
    assert not info["mismatched_keys"] and not info["error_msgs"]
    assert hf.lm_head.weight.data_ptr() == hf.transformer.tokens_embed.weight.data_ptr()
    hf.eval()
    with no_grad():
        ours = model(ids).data
    np.testing.assert_allclose(_hf_logits(hf, ids), ours, rtol=0, atol=1e-5)
    # and round trip through minigpt is exact
    _params_equal(GPT.from_pretrained(tmp_path), dict(model.state_dict()))


def test_save_pretrained_round_trip_without_transformers(tmp_path):
    model = _randomize_minigpt(GPT(GPTConfig(vocab_size=50, n_ctx=8, n_layer=1, n_embd=16,
                                             n_head=2)), seed=6)
    model.save_pretrained(tmp_path / "out")
    back = GPT.from_pretrained(tmp_path / "out")
    assert back.config == model.config
    _params_equal(back, dict(model.state_dict()))


# ------------------------------------------------------------------ OpenAI's original layout

def _openai_release(directory: Path, n_ctx=T, vocab=V, C=C, n_layer=L, n_shards=10, seed=7):
    """Random arrays in finetune-transformer-lm's model/ layout; returns the expected state."""
    rng = np.random.default_rng(seed)
    shapes = [[n_ctx, C], [vocab, C]]
    for _ in range(n_layer):
        shapes += [[1, C, 3 * C], [3 * C], [1, C, C], [C], [C], [C],
                   [1, C, 4 * C], [4 * C], [1, 4 * C, C], [C], [C], [C]]
    arrays = [rng.standard_normal(s).astype(np.float32) * 0.3 for s in shapes]
    flat = np.concatenate([a.ravel() for a in arrays])
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "params_shapes.json").write_text(json.dumps(shapes))
    for i, chunk in enumerate(np.array_split(flat, n_shards)):
        np.save(directory / f"params_{i}.npy", chunk)
    names = ["positions_embed.weight", "tokens_embed.weight"]
    per_layer = ["attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight",
                 "attn.c_proj.bias", "ln_1.weight", "ln_1.bias", "mlp.c_fc.weight",
                 "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias", "ln_2.weight",
                 "ln_2.bias"]
    names += [f"h.{i}.{n}" for i in range(n_layer) for n in per_layer]
    return {n: (a[0] if a.ndim == 3 else a) for n, a in zip(names, arrays)}


def test_openai_layout_loads(tmp_path):
    expected = _openai_release(tmp_path)
    assert len(expected) == 2 + 12 * L
    model = GPT.from_pretrained(tmp_path, n_head=H)
    assert model.config == GPTConfig(vocab_size=V, n_ctx=T, n_layer=L, n_embd=C, n_head=H)
    _params_equal(model, expected)
    assert model.pretrained_heads == {}
    # the default head count is GPT-1's 12, which 32 does not divide: a clear error
    with pytest.raises(PretrainedFormatError, match=r"params_shapes\.json.*n_head"):
        GPT.from_pretrained(tmp_path)
    assert GPT1_N_HEAD == 12


def test_openai_layout_default_heads_and_logits(tmp_path):
    # width 48 takes the default 12 heads; the loaded model equals one built from the arrays
    expected = _openai_release(tmp_path, C=48, n_layer=1, n_shards=3)
    model = GPT.from_pretrained(tmp_path)
    assert model.config.n_head == 12 and model.config.n_layer == 1
    ref = GPT(model.config, seed=123)
    ref.load_state_dict(expected)
    x = np.random.default_rng(0).integers(0, V, size=(2, T))
    with no_grad():
        np.testing.assert_array_equal(model(x).data, ref.eval()(x).data)


# -------------------------------------------------------------------------------- bad input

def _small_hf_dir(d: Path, **cfg_over) -> Path:
    model = GPT(GPTConfig(vocab_size=V, n_ctx=T, n_layer=1, n_embd=C, n_head=H))
    model.save_pretrained(d)
    if cfg_over:
        cfg = json.loads((d / "config.json").read_text())
        cfg.update(cfg_over)
        (d / "config.json").write_text(json.dumps(cfg))
    return d


def test_bad_missing_directory_and_weights(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such directory"):
        GPT.from_pretrained(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match=r"no GPT-1 weights.*config\.json.*params_shapes"):
        GPT.from_pretrained(tmp_path)
    d = _small_hf_dir(tmp_path / "hf")
    (d / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"config\.json but no weights.*model\.safetensors"):
        GPT.from_pretrained(d)
    with pytest.raises(PretrainedFormatError, match="expected a directory"):
        GPT.from_pretrained(d / "config.json")


def test_bad_config(tmp_path):
    d = _small_hf_dir(tmp_path / "gpt2", model_type="gpt2", architectures=["GPT2LMHeadModel"])
    with pytest.raises(PretrainedFormatError, match=r"config\.json: model_type is 'gpt2'.*GPT-1"):
        GPT.from_pretrained(d)
    d = _small_hf_dir(tmp_path / "relu", afn="relu")
    with pytest.raises(PretrainedFormatError, match=r"config\.json: afn is 'relu'"):
        GPT.from_pretrained(d)
    d = _small_hf_dir(tmp_path / "heads", n_head=5)
    with pytest.raises(PretrainedFormatError, match=r"config\.json:.*divisible"):
        GPT.from_pretrained(d)
    d = _small_hf_dir(tmp_path / "json")
    (d / "config.json").write_text('{"model_type": "openai-gpt", ')
    with pytest.raises(PretrainedFormatError, match=r"config\.json: not valid JSON"):
        GPT.from_pretrained(d)


def test_bad_shapes(tmp_path):
    d = _small_hf_dir(tmp_path / "ctx", n_positions=T * 2)
    with pytest.raises(PretrainedFormatError,
                       match=r"model\.safetensors: positions_embed\.weight has shape \(16, 32\)"):
        GPT.from_pretrained(d)
    d = _small_hf_dir(tmp_path / "vocab", vocab_size=V + 1)
    with pytest.raises(PretrainedFormatError, match=r"model\.safetensors: tokens_embed.*100 rows"
                                                    r".*config\.json says vocab_size 101"):
        GPT.from_pretrained(d)
    d = _small_hf_dir(tmp_path / "layers", n_layer=2)
    with pytest.raises(PretrainedFormatError, match=r"model\.safetensors:.*missing.*h\.1\."):
        GPT.from_pretrained(d)
    # an untied lm_head
    d = _small_hf_dir(tmp_path / "untied")
    w = st.load_file(d / "model.safetensors")
    w["lm_head.weight"] = w["transformer.tokens_embed.weight"] + 1
    st.save_file(w, d / "model.safetensors")
    with pytest.raises(PretrainedFormatError, match=r"model\.safetensors: lm_head\.weight.*differs"):
        GPT.from_pretrained(d)
    # an extra tensor minigpt does not know
    d = _small_hf_dir(tmp_path / "extra")
    w = st.load_file(d / "model.safetensors")
    w["transformer.h.0.attn.rotary"] = np.zeros(3, np.float32)
    st.save_file(w, d / "model.safetensors")
    with pytest.raises(PretrainedFormatError, match=r"model\.safetensors:.*unexpected.*rotary"):
        GPT.from_pretrained(d)


def test_bad_truncated_files(tmp_path):
    d = _small_hf_dir(tmp_path / "st")
    f = d / "model.safetensors"
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(st.SafetensorsError, match=r"model\.safetensors.*truncated"):
        GPT.from_pretrained(d)
    _openai_release(tmp_path / "oa", n_shards=4)
    shard = tmp_path / "oa" / "params_2.npy"
    shard.write_bytes(shard.read_bytes()[:-64])
    with pytest.raises(PretrainedFormatError, match=r"params_2\.npy: cannot read.*truncated"):
        GPT.from_pretrained(tmp_path / "oa", n_head=H)
    _openai_release(tmp_path / "gap", n_shards=4)
    (tmp_path / "gap" / "params_1.npy").unlink()
    with pytest.raises(FileNotFoundError, match=r"params_1\.npy is missing"):
        GPT.from_pretrained(tmp_path / "gap", n_head=H)
    _openai_release(tmp_path / "last", n_shards=4)
    (tmp_path / "last" / "params_3.npy").unlink()
    with pytest.raises(PretrainedFormatError, match=r"3 shards.*params_shapes\.json describes"):
        GPT.from_pretrained(tmp_path / "last", n_head=H)


def test_bad_openai_shapes(tmp_path):
    _openai_release(tmp_path / "a")
    f = tmp_path / "a" / "params_shapes.json"
    shapes = json.loads(f.read_text())
    shapes[2] = [1, C, 2 * C]  # c_attn of the wrong width
    f.write_text(json.dumps(shapes))
    with pytest.raises(PretrainedFormatError, match=r"params_shapes\.json: array 2 \(layer 0 "
                                                    r"attn\.c_attn\.weight\) has shape"):
        GPT.from_pretrained(tmp_path / "a", n_head=H)
    f.write_text(json.dumps(shapes[:-1]))
    with pytest.raises(PretrainedFormatError, match=r"params_shapes\.json: 25 arrays"):
        GPT.from_pretrained(tmp_path / "a", n_head=H)


@requires_hf
def test_bad_pytorch_bin(tmp_path, monkeypatch):
    d = _small_hf_dir(tmp_path / "bin")
    w = st.load_file(d / "model.safetensors")
    (d / "model.safetensors").unlink()
    torch.save({k: torch.from_numpy(v) for k, v in w.items()}, d / "pytorch_model.bin")
    GPT.from_pretrained(d)  # reads fine
    monkeypatch.setitem(sys.modules, "torch", None)  # as if torch were not installed
    with pytest.raises(ImportError, match=r"pytorch_model\.bin.*'torch' package"):
        GPT.from_pretrained(d)
    monkeypatch.undo()
    f = d / "pytorch_model.bin"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(PretrainedFormatError, match=r"pytorch_model\.bin: cannot read"):
        GPT.from_pretrained(d)


# ---------------------------------------------------------------- `minigpt sample` on HF dirs

def _write_hf_tokenizer(d: Path) -> list[str]:
    """A small GPT-1-style vocab.json + merges.txt (HuggingFace layout); returns the vocab."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = ["<unk>"] + list(letters) + [c + "</w>" for c in letters] + list(".,!?")
    vocab += [c + "</w>" for c in ".,!?"]
    merges = [("t", "h"), ("th", "e</w>"), ("c", "a"), ("ca", "t</w>"), ("i", "s</w>")]
    vocab += [a + b for a, b in merges]
    (d / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (d / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    return vocab


@requires_hf
def test_cli_sample_on_hf_directory(tmp_path):
    tokenizers = pytest.importorskip("minigpt.tokenizers", reason="tokenizer not available")
    d = tmp_path / "hf"
    d.mkdir()
    vocab = _write_hf_tokenizer(d)
    torch.manual_seed(8)
    hf = _randomize_torch(OpenAIGPTLMHeadModel(_hf_config(vocab_size=len(vocab))), seed=8).eval()
    hf.save_pretrained(d)

    tok = tokenizers.BPETokenizer.from_pretrained(d)
    prompt = "The cat is"
    ids = tok.encode(prompt)
    assert ids == [vocab.index("the</w>"), vocab.index("cat</w>"), vocab.index("is</w>")]
    seq = list(ids)
    for _ in range(6):  # transformers' greedy continuation
        seq.append(int(_hf_logits(hf, np.array([seq]))[0, -1].argmax()))
    expected = tok.decode(ids) + "".join(tok.decode([t]) for t in seq[len(ids):])

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "minigpt", "sample", "--ckpt", str(d),
                        "--prompt", prompt, "--max-new-tokens", "6", "--temperature", "0"],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.rstrip("\n") == expected


def test_save_pretrained_writes_tokenizer(tmp_path):
    tokenizers = pytest.importorskip("minigpt.tokenizers", reason="tokenizer not available")
    src = tmp_path / "tok"
    src.mkdir()
    vocab = _write_hf_tokenizer(src)
    tok = tokenizers.BPETokenizer.from_pretrained(src)
    model = GPT(GPTConfig(vocab_size=len(vocab), n_ctx=T, n_layer=1, n_embd=C, n_head=H))
    out = model.save_pretrained(tmp_path / "out", tokenizer=tok)
    assert {"config.json", "model.safetensors", "vocab.json", "merges.txt"} <= set(os.listdir(out))
    again = tokenizers.BPETokenizer.from_pretrained(out)
    assert again.encode("the cat is.") == tok.encode("the cat is.")
    sys.path.insert(0, str(ROOT))
    from minigpt.cli import load_for_inference
    m, t = load_for_inference(out)
    assert m.config == model.config and t.encode("cat") == tok.encode("cat")


# ------------------------------------------------------------------ tools/gpt1_president.py

@requires_hf
def test_president_script_runs_offline(tmp_path):
    """The real-weights check runs end to end (here on random weights, so it must say FAILED)."""
    cfg = GPTConfig(vocab_size=40478, n_ctx=20, n_layer=1, n_embd=8, n_head=2)
    _randomize_minigpt(GPT(cfg), seed=9).save_pretrained(tmp_path)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "gpt1_president.py"), str(tmp_path),
                        "--compare-transformers"], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "expected: [481, 4735, 544, 246, 963" in r.stdout
    assert "transformers: greedy ids equal" in r.stdout and "FAILED" in r.stdout


def test_cli_sample_on_openai_release_directory(tmp_path):
    """`minigpt sample --ckpt DIR` on the original release layout (params_*.npy + encoder/.bpe)
    continues greedily exactly as the model loaded by GPT.from_pretrained does."""
    d = tmp_path / "model"
    d.mkdir()
    vocab = _write_hf_tokenizer(d)
    (d / "encoder_bpe_40000.json").write_text((d / "vocab.json").read_text())
    (d / "vocab_40000.bpe").write_text((d / "merges.txt").read_text())
    (d / "vocab.json").unlink()
    (d / "merges.txt").unlink()
    _openai_release(d, vocab=len(vocab), C=48, n_layer=1)
    model = GPT.from_pretrained(d)
    from minigpt.sample import generate
    from minigpt.tokenizers import BPETokenizer
    tok = BPETokenizer.from_pretrained(d)
    ids = tok.encode("the cat is")
    expected = tok.decode(ids) + "".join(
        tok.decode([t]) for t in generate(model, ids, 5, temperature=0.0))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "minigpt", "sample", "--ckpt", str(d), "--prompt",
                        "the cat is", "--max-new-tokens", "5", "--temperature", "0"],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.rstrip("\n") == expected
