"""Sampling: greedy, temperature, top-k, top-p, and the KV cache against full recomputation."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from minigpt import GPT, GPTConfig
from minigpt.sample import filter_logits, generate, next_token_probabilities, pick_token


def model(n_ctx=8):
    return GPT(GPTConfig(vocab_size=17, n_ctx=n_ctx, n_layer=2, n_embd=16, n_head=2))


def test_greedy_is_argmax():
    logits = np.array([0.1, 3.0, -1.0, 2.9])
    assert pick_token(logits, 0.0, None, None, np.random.default_rng(0)) == 1


@given(st.lists(st.floats(-20, 20), min_size=2, max_size=30), st.integers(1, 30))
@settings(max_examples=50, deadline=None)
def test_top_k_keeps_exactly_the_k_largest(values, k):
    logits = np.array(values)
    out = filter_logits(logits, top_k=k)
    kept = np.isfinite(out)
    if k >= logits.size:
        assert kept.all()
    else:
        kth = np.sort(logits)[-k]
        assert np.array_equal(kept, logits >= kth)


@given(st.lists(st.floats(-10, 10), min_size=2, max_size=30), st.floats(0.05, 0.99))
@settings(max_examples=50, deadline=None)
def test_top_p_keeps_the_smallest_nucleus(values, p):
    logits = np.array(values)
    out = filter_logits(logits, top_p=p)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    kept = np.isfinite(out)
    assert probs[kept].sum() >= p - 1e-9          # the nucleus reaches p
    order = np.argsort(-logits, kind="stable")
    n = kept.sum()
    assert set(np.flatnonzero(kept)) == set(order[:n])  # and is a prefix of the sorted tokens
    assert probs[order[:n - 1]].sum() < p + 1e-9    # one token fewer would not


def test_sampling_respects_top_k_and_is_seeded():
    logits = np.array([5.0, 4.0, 0.0, -1.0])
    draws = {pick_token(logits, 1.0, 2, None, np.random.default_rng(s)) for s in range(200)}
    assert draws == {0, 1}
    m = model()
    a = generate(m, [1, 2], 10, temperature=1.0, seed=3)
    b = generate(m, [1, 2], 10, temperature=1.0, seed=3)
    assert a == b and len(a) == 10


@pytest.mark.parametrize("temperature,seed", [(0.0, None), (0.9, 5)])
def test_cache_and_recompute_generate_the_same_tokens_past_n_ctx(temperature, seed):
    """20 new tokens with n_ctx 8: the window slides; the cached path must match exactly."""
    m = model(n_ctx=8)
    with_cache = generate(m, [3, 1, 4], 20, temperature=temperature, seed=seed, use_cache=True)
    without = generate(m, [3, 1, 4], 20, temperature=temperature, seed=seed, use_cache=False)
    assert with_cache == without


def test_generate_restores_training_mode_and_validates():
    m = model().train()
    generate(m, [1], 2, temperature=0.0)
    assert m.training
    with pytest.raises(ValueError):
        generate(m, [], 2)
    with pytest.raises(ValueError):
        generate(m, [1], 2, temperature=-1)


@pytest.mark.parametrize("kwargs,match", [
    (dict(top_k=0), r"top_k must be an integer >= 1, got 0"),
    (dict(top_k=-3), r"top_k must be an integer >= 1, got -3"),
    (dict(top_k=2.5), r"top_k must be an integer >= 1, got 2\.5"),
    (dict(max_new_tokens=-5), r"max_new_tokens must be an integer >= 0, got -5"),
    (dict(top_p=0.0), r"top_p must be a number in \(0, 1\], got 0\.0"),
    (dict(top_p=1.5), r"top_p must be a number in \(0, 1\], got 1\.5"),
    (dict(temperature=-0.5), r"temperature must be a number >= 0, got -0\.5"),
    (dict(temperature=float("nan")), r"temperature must be a number >= 0, got nan"),
    (dict(seed=-1), r"seed must be an integer >= 0, got -1"),
])
def test_generate_rejects_arguments_outside_their_range(kwargs, match):
    """top_k 0 or negative used to be ignored silently and max_new_tokens -5 treated as 0."""
    args = dict(max_new_tokens=3, temperature=1.0)
    args.update(kwargs)
    n = args.pop("max_new_tokens")
    with pytest.raises(ValueError, match=match):
        generate(model(), [1], n, **args)


def test_filter_logits_rejects_a_top_k_or_top_p_outside_its_range():
    logits = np.array([1.0, 2.0, 3.0])
    for bad in (0, -1):
        with pytest.raises(ValueError, match="top_k"):
            filter_logits(logits, top_k=bad)
    for bad in (0.0, -0.1, 1.01):
        with pytest.raises(ValueError, match="top_p"):
            filter_logits(logits, top_p=bad)
    assert np.isfinite(filter_logits(logits, top_k=3, top_p=1.0)).all()  # the edges keep all
    assert generate(model(), [1], 0) == []  # zero new tokens is allowed: nothing to add


# ---- the no-grad decode path (GPT.decode, KVCache) against forward() ---------------------------

def _forward_path_tokens(m, prompt, n, temperature, seed):
    """generate() as it was before GPT.decode: forward() with the list-of-dicts cache, the
    window re-encoded when full (the path the decode step must reproduce token for token)."""
    from minigpt import no_grad
    from minigpt.sample import pick_token
    ids, rng, new, cache = list(prompt), np.random.default_rng(seed), [], None
    m.eval()
    with no_grad():
        for _ in range(n):
            if cache is not None and cache[0]["k"].shape[2] < m.config.n_ctx:
                logits = m(np.asarray([[ids[-1]]]), cache=cache)
            else:
                cache = []
                logits = m(np.asarray([ids[-m.config.n_ctx:]]), cache=cache)
            ids.append(pick_token(logits.data[0, -1], temperature, None, None, rng))
            new.append(ids[-1])
    return new


@pytest.mark.parametrize("mode", ["auto", "reference"])
@given(st.integers(1, 3), st.integers(1, 6), st.sampled_from(["float32", "float64"]),
       st.integers(0, 2**31 - 1))
@settings(max_examples=8, deadline=None)
def test_decode_logits_equal_forward_logits(mode, B, n_prompt, dtype, seed):
    """Prompt then one token at a time up to n_ctx, batch B: every step's logits equal
    forward()'s at that position (1e-6 in float32, 1e-12 in float64), in both op tiers."""
    import minigpt
    from minigpt import no_grad
    from minigpt.model import KVCache
    n_ctx = 8
    m = GPT(GPTConfig(vocab_size=23, n_ctx=n_ctx, n_layer=2, n_embd=24, n_head=3, dtype=dtype),
            seed=seed % 1000).eval()
    ids = np.random.default_rng(seed).integers(0, 23, (B, n_ctx))
    n_prompt = min(n_prompt, n_ctx)
    with minigpt.use(mode):
        with no_grad():
            full = m(ids).data  # (B, n_ctx, V)
        cache = KVCache(m.config, batch=B)
        steps = [m.decode(ids[:, :n_prompt], cache)]
        steps += [m.decode(ids[:, t:t + 1], cache) for t in range(n_prompt, n_ctx)]
    assert cache.length == n_ctx
    tol = 1e-6 if dtype == "float32" else 1e-12
    for t, logits in zip(range(n_prompt - 1, n_ctx), steps):
        assert logits.shape == (B, 23) and logits.dtype == np.dtype(dtype)
        np.testing.assert_allclose(logits, full[:, t], rtol=tol, atol=tol, err_msg=f"position {t}")


@pytest.mark.parametrize("temperature,seed", [(0.0, None), (1.0, 7), (0.7, 11)])
def test_decode_path_samples_the_tokens_of_the_forward_path(temperature, seed):
    """The same tokens for a seed as the forward() path with its list cache, past n_ctx."""
    m = GPT(GPTConfig(vocab_size=31, n_ctx=8, n_layer=2, n_embd=32, n_head=4), seed=3)
    prompt = [5, 2, 9]
    got = generate(m, prompt, 25, temperature=temperature, seed=seed)
    assert got == _forward_path_tokens(m, prompt, 25, temperature, seed)


def test_decode_records_no_graph_and_checks_its_inputs():
    from minigpt.model import KVCache
    m = model()
    cache = KVCache(m.config)
    logits = m.decode(np.array([[1, 2]]), cache)  # outside no_grad: still no graph
    assert isinstance(logits, np.ndarray) and all(p.grad is None for p in m.parameters())
    with pytest.raises(ValueError, match="batch"):
        m.decode(np.array([[1], [2]]), cache)
    with pytest.raises(ValueError, match="exceeds the context"):
        m.decode(np.zeros((1, 7), dtype=np.int64), cache)  # 2 + 7 > n_ctx 8
    with pytest.raises(ValueError, match="outside the vocabulary"):
        m.decode(np.array([[17]]), cache)


def test_next_token_probabilities_is_what_pick_token_draws_from():
    logits = np.array([2.0, 1.0, 0.5, -1.0, 3.0])
    p = next_token_probabilities(logits, 0.8, top_k=3, top_p=None)
    assert p.dtype == np.float64 and abs(p.sum() - 1) < 1e-12 and (p > 0).sum() == 3
    draws = [pick_token(logits, 0.8, 3, None, np.random.default_rng(s)) for s in range(50)]
    expected = [int(np.random.default_rng(s).choice(5, p=p)) for s in range(50)]
    assert draws == expected
    assert np.array_equal(next_token_probabilities(logits, 0.0), np.eye(5)[4])


def test_decode_follows_a_model_cast_to_float64():
    """model.astype(float64) leaves config.dtype as it was: generate's cache follows the
    weights (a float32 cache would round every key), and decode refuses a mismatched one."""
    from minigpt.model import KVCache
    m = model().astype(np.float64)
    assert m.config.dtype == "float32"
    a = generate(m, [1, 2, 3], 12, temperature=0.0)
    assert a == generate(m, [1, 2, 3], 12, temperature=0.0, use_cache=False)
    with pytest.raises(ValueError, match="float32 cache for float64 weights"):
        m.decode(np.array([[1]]), KVCache(m.config))
    logits = m.decode(np.array([[1, 2]]), KVCache(m.config, dtype=np.float64))
    assert logits.dtype == np.float64
