"""Sampling: greedy, temperature, top-k, top-p, and the KV cache against full recomputation."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from minigpt import GPT, GPTConfig
from minigpt.sample import filter_logits, generate, pick_token


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
