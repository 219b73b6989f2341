"""Text generation: temperature, top-k and top-p (nucleus) sampling with a KV cache.

With the cache, each new token costs one position through the network: the keys and values of
earlier positions are kept per layer (model.KVCache, allocated once) and reused, and the step
runs GPT.decode, the forward pass on arrays with no autograd graph (tests check the logits
equal forward()'s and the tokens those of a full recomputation). GPT-1's positions are absolute and learned, so once the text is longer than
n_ctx the window slides: the last n_ctx tokens are re-encoded from position 0 at every step,
exactly as without a cache (positions shift, so cached keys would be stale).
"""
from __future__ import annotations

import numpy as np

from .autograd import no_grad
from .model import KVCache
from .backend import get_array_module, to_numpy
from .checks import nonneg_float, nonneg_int, positive_int, probability


def filter_logits(logits: np.ndarray, top_k: int | None = None, top_p: float | None = None) -> np.ndarray:
    """Set to -inf every logit outside the top-k and outside the top-p nucleus (1-D, float64).

    top_k: None or an integer >= 1 (at least the vocabulary size keeps everything);
    top_p: None or a number in (0, 1] (1 keeps everything). Anything else is a ValueError.
    """
    positive_int.optional(top_k, "top_k")
    probability.optional(top_p, "top_p")
    logits = logits.astype(np.float64, copy=True)
    if top_k is not None and top_k < logits.size:
        kth = np.partition(logits, -top_k)[-top_k]
        logits[logits < kth] = -np.inf
    if top_p is not None and top_p < 1.0:
        order = np.argsort(-logits, kind="stable")
        probs = np.exp(logits[order] - logits[order[0]])
        probs /= probs.sum()
        cum = np.cumsum(probs)
        cut = int(np.searchsorted(cum, top_p)) + 1  # keep the smallest prefix reaching top_p
        logits[order[cut:]] = -np.inf
    return logits


def next_token_probabilities(logits, temperature: float, top_k=None, top_p=None) -> np.ndarray:
    """The distribution pick_token draws the next token from, float64 (V,), for the logits
    (V,) of the last position: all mass on the argmax when temperature is 0 (greedy), else
    softmax(filter_logits(logits / temperature, top_k, top_p))."""
    logits = to_numpy(logits).astype(np.float64)
    if temperature == 0:
        p = np.zeros_like(logits)
        p[int(np.argmax(logits))] = 1.0
        return p
    z = filter_logits(logits / temperature, top_k, top_p)
    p = np.exp(z - z.max())
    p /= p.sum()
    return p


def pick_token(logits, temperature: float, top_k, top_p, rng: np.random.Generator) -> int:
    """Greedy (argmax) when temperature is 0, else a draw from next_token_probabilities."""
    p = next_token_probabilities(logits, temperature, top_k, top_p)
    if temperature == 0:
        return int(np.argmax(p))  # the argmax of the logits (p is one-hot there)
    return int(rng.choice(p.size, p=p))


def generate(model, prompt_ids, max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
             use_cache: bool = True, on_token=None) -> list[int]:
    """Continue `prompt_ids` (a list of ints) by max_new_tokens tokens; returns the new ids.

    on_token: optional callback called with each new id (for streaming output).
    Ranges (ValueError outside them): max_new_tokens >= 0, temperature >= 0 (0 = greedy),
    top_k None or >= 1, top_p None or in (0, 1], seed None or >= 0.

    Stopping early (Ctrl-C, or an exception in on_token) leaves the tokens streamed so far
    with on_token; the model is put back in its training mode either way.
    """
    nonneg_int(max_new_tokens, "max_new_tokens")
    nonneg_float(temperature, "temperature")
    positive_int.optional(top_k, "top_k")
    probability.optional(top_p, "top_p")
    nonneg_int.optional(seed, "seed")
    ids = [int(i) for i in prompt_ids]
    if not ids:
        raise ValueError("generate needs a non-empty prompt (at least one token id)")
    n_ctx = model.config.n_ctx
    rng = np.random.default_rng(seed)
    xp = get_array_module(model.tokens_embed.weight.data)
    was_training = model.training
    model.eval()
    new = []
    cache = (KVCache(model.config, batch=1, xp=xp, dtype=model.tokens_embed.weight.dtype)
             if use_cache and max_new_tokens else None)
    try:
        with no_grad():
            for _ in range(max_new_tokens):
                if cache is None:  # no cache: the whole window through forward()
                    logits = model(xp.asarray([ids[-n_ctx:]])).data[0, -1]
                elif 0 < cache.length < n_ctx:  # one new token through the cached decode step
                    logits = model.decode(xp.asarray([[ids[-1]]]), cache)[0]
                else:  # first step, or the window is full: encode the last n_ctx tokens afresh
                    cache.length = 0
                    logits = model.decode(xp.asarray([ids[-n_ctx:]]), cache)[0]
                token = pick_token(logits, temperature, top_k, top_p, rng)
                ids.append(token)
                new.append(token)
                if on_token is not None:
                    on_token(token)
    finally:
        model.train(was_training)
    return new
