"""GPT-1 model: configuration, parameter names, gradients, causality, learning."""
import numpy as np
import pytest

import minigpt
from minigpt import GPT, GPTConfig, gradcheck
from minigpt.autograd import no_grad


def tiny_config(**kw):
    base = dict(vocab_size=13, n_ctx=8, n_layer=2, n_embd=8, n_head=2,
                embd_pdrop=0.0, attn_pdrop=0.0, resid_pdrop=0.0)
    base.update(kw)
    return GPTConfig(**base)


def test_gpt1_preset_has_the_papers_parameter_count():
    """116,534,784 parameters with the 40,478-token vocabulary (facts file)."""
    cfg = GPTConfig.preset("gpt1")
    C, L, V, T = cfg.n_embd, cfg.n_layer, cfg.vocab_size, cfg.n_ctx
    per_block = (C * 3 * C + 3 * C) + (C * C + C) + 2 * C + (C * 4 * C + 4 * C) + (4 * C * C + C) + 2 * C
    assert V * C + T * C + L * per_block == 116_534_784
    assert (cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.n_ctx) == (12, 768, 12, 512)
    assert cfg.embd_pdrop == cfg.attn_pdrop == cfg.resid_pdrop == 0.1
    assert cfg.layer_norm_epsilon == 1e-5 and cfg.initializer_range == 0.02


def test_built_model_matches_the_formula_count():
    cfg = tiny_config()
    model = GPT(cfg)
    C, L, V, T = cfg.n_embd, cfg.n_layer, cfg.vocab_size, cfg.n_ctx
    per_block = 12 * C * C + 13 * C
    assert model.num_parameters() == V * C + T * C + L * per_block


@pytest.mark.parametrize("bad", [dict(n_embd=10, n_head=3), dict(n_layer=0), dict(vocab_size=-1),
                                 dict(n_head=0), dict(attn_pdrop=1.0)])
def test_bad_config_raises(bad):
    with pytest.raises(ValueError):
        tiny_config(**bad)


def test_unknown_preset_names_the_choices():
    with pytest.raises(ValueError, match="tiny"):
        GPTConfig.preset("huge")


def test_parameter_names_are_huggingfaces():
    model = GPT(tiny_config(n_layer=1))
    names = [n for n, _ in model.named_parameters()]
    assert names == [
        "tokens_embed.weight", "positions_embed.weight",
        "h.0.attn.c_attn.weight", "h.0.attn.c_attn.bias",
        "h.0.attn.c_proj.weight", "h.0.attn.c_proj.bias",
        "h.0.ln_1.weight", "h.0.ln_1.bias",
        "h.0.mlp.c_fc.weight", "h.0.mlp.c_fc.bias",
        "h.0.mlp.c_proj.weight", "h.0.mlp.c_proj.bias",
        "h.0.ln_2.weight", "h.0.ln_2.bias"]
    sd = model.state_dict()
    assert sd["h.0.attn.c_attn.weight"].shape == (8, 24)  # (in, out) like Conv1D
    assert sd["h.0.mlp.c_proj.weight"].shape == (32, 8)


def test_initialisation_follows_gpt1():
    model = GPT(GPTConfig(vocab_size=500, n_ctx=64, n_layer=1, n_embd=128, n_head=4))
    sd = model.state_dict()
    assert abs(sd["tokens_embed.weight"].std() - 0.02) < 0.001
    assert abs(sd["h.0.mlp.c_fc.weight"].std() - 0.02) < 0.001
    assert np.all(sd["h.0.attn.c_attn.bias"] == 0) and np.all(sd["h.0.ln_1.weight"] == 1)
    assert sd["tokens_embed.weight"].dtype == np.float32


def test_whole_model_gradcheck_float64_every_parameter():
    """Every parameter, the tied embedding (used twice) included, against central differences."""
    model = GPT(tiny_config(dtype="float64"))
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 13, (2, 5))
    targets = rng.integers(0, 13, (2, 5))
    names, params = zip(*model.named_parameters())
    assert gradcheck(lambda *ps: model.loss(idx, targets), params, names=list(names))


def test_whole_model_gradcheck_with_padding_mask():
    model = GPT(tiny_config(dtype="float64", n_layer=1))
    rng = np.random.default_rng(1)
    idx = rng.integers(0, 13, (2, 6))
    mask = np.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    targets = np.where(mask == 1, rng.integers(0, 13, (2, 6)), -100)
    names, params = zip(*model.named_parameters())
    assert gradcheck(lambda *ps: model.loss(idx, targets, padding_mask=mask), params, names=list(names))


def test_tied_embedding_gradient_is_sum_of_both_uses():
    """d loss / d W_e = (input-embedding part) + (output-layer part): removing either changes it."""
    model = GPT(tiny_config(dtype="float64", n_layer=1))
    rng = np.random.default_rng(2)
    idx, targets = rng.integers(0, 13, (1, 4)), rng.integers(0, 13, (1, 4))
    model.loss(idx, targets).backward()
    total = model.tokens_embed.weight.grad.copy()
    # output-layer part alone: gradient of the loss through h_n @ W^T with h_n held fixed
    model.zero_grad()
    h = model.hidden_states(idx).detach()
    W = model.tokens_embed.weight
    minigpt.functional.cross_entropy(minigpt.functional.linear(h, W.T), targets).backward()
    out_part = W.grad.copy()
    assert np.abs(total - out_part).max() > 1e-6  # the input use contributes too
    assert np.abs(out_part).max() > 1e-6


def test_causality_future_tokens_never_change_earlier_logits():
    model = GPT(tiny_config()).eval()
    rng = np.random.default_rng(3)
    idx = rng.integers(0, 13, (3, 8))
    with no_grad():
        base = model(idx).data
        for t in range(7):
            changed = idx.copy()
            changed[:, t + 1:] = rng.integers(0, 13, changed[:, t + 1:].shape)
            out = model(changed).data
            np.testing.assert_array_equal(out[:, :t + 1], base[:, :t + 1])


def test_padding_never_changes_real_positions():
    """Right padding: logits at real positions equal those of the unpadded sequence."""
    model = GPT(tiny_config()).eval()
    rng = np.random.default_rng(4)
    idx = rng.integers(0, 13, (1, 5))
    padded = np.concatenate([idx, rng.integers(0, 13, (1, 3))], axis=1)
    mask = np.array([[1] * 5 + [0] * 3])
    with no_grad():
        a = model(idx).data
        b = model(padded, padding_mask=mask).data
    np.testing.assert_allclose(b[:, :5], a, rtol=1e-5, atol=1e-6)


def test_input_errors_name_the_limit():
    model = GPT(tiny_config())
    with pytest.raises(ValueError, match="n_ctx=8"):
        model(np.zeros((1, 9), dtype=np.int64))
    with pytest.raises(ValueError, match="13"):
        model(np.array([[1, 13]]))
    with pytest.raises(ValueError, match="-1"):
        model(np.array([[-1, 2]]))
    with pytest.raises(TypeError):
        model(np.zeros((1, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        model(np.zeros(3, dtype=np.int64))


def test_overfits_one_batch():
    minigpt.manual_seed(0)
    model = GPT(GPTConfig.preset("tiny", embd_pdrop=0.0, attn_pdrop=0.0, resid_pdrop=0.0))
    opt = minigpt.optim.Adam(model.parameters(), lr=3e-3, weight_decay=0.0)
    idx = np.random.default_rng(0).integers(0, 65, (4, 33))
    for _ in range(60):
        loss = model.loss(idx[:, :-1], idx[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05


def _train_losses(seed):
    minigpt.manual_seed(seed)
    model = GPT(tiny_config(embd_pdrop=0.1, attn_pdrop=0.1, resid_pdrop=0.1), seed=seed)
    opt = minigpt.optim.Adam(model.parameters(), lr=1e-2)
    rng = np.random.default_rng(seed)
    losses = []
    for _ in range(5):
        idx = rng.integers(0, 13, (2, 8))
        loss = model.loss(idx[:, :-1], idx[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_same_seed_same_losses_with_dropout():
    assert _train_losses(5) == _train_losses(5)
    assert _train_losses(5) != _train_losses(6)


def test_kv_cache_gives_the_same_logits_as_recomputing():
    model = GPT(tiny_config(n_ctx=16)).eval()
    idx = np.random.default_rng(7).integers(0, 13, (2, 12))
    with no_grad():
        full = model(idx).data
        cache = []
        step_logits = [model(idx[:, :4], cache=cache).data]
        for t in range(4, 12):
            step_logits.append(model(idx[:, t:t + 1], cache=cache).data)
    np.testing.assert_allclose(np.concatenate(step_logits, axis=1), full, rtol=1e-5, atol=1e-6)


def test_kv_cache_refuses_to_pass_n_ctx():
    model = GPT(tiny_config()).eval()
    with no_grad():
        cache = []
        model(np.zeros((1, 8), dtype=np.int64), cache=cache)
        with pytest.raises(ValueError, match="n_ctx"):
            model(np.zeros((1, 1), dtype=np.int64), cache=cache)


def test_hidden_states_shape_and_post_ln():
    """No final LayerNorm... but the last op of each block *is* ln_2, so each row of h_n is
    normalised (mean 0, var 1 before the gain/bias, which start at 1 and 0)."""
    model = GPT(tiny_config()).eval()
    with no_grad():
        h = model.hidden_states(np.array([[1, 2, 3]])).data
    assert h.shape == (1, 3, 8)
    np.testing.assert_allclose(h.mean(-1), 0, atol=1e-5)
    np.testing.assert_allclose(h.var(-1), 1, atol=1e-3)
