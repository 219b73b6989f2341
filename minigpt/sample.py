"""Text generation: temperature, top-k and top-p (nucleus) sampling with a KV cache.

With the cache, each new token costs one position through the network: the keys and values of
earlier positions are kept per layer and reused (tests check the logits equal a full
recomputation). GPT-1's positions are absolute and learned, so once the text is longer than
n_ctx the window slides: the last n_ctx tokens are re-encoded from position 0 at every step,
exactly as without a cache (positions shift, so cached keys would be stale).
"""
from __future__ import annotations

import numpy as np

from .autograd import no_grad
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


def pick_token(logits, temperature: float, top_k, top_p, rng: np.random.Generator) -> int:
    """Greedy (argmax) when temperature is 0, else a draw from the filtered softmax."""
    logits = to_numpy(logits).astype(np.float64)
    if temperature == 0:
        return int(np.argmax(logits))
    z = filter_logits(logits / temperature, top_k, top_p)
    p = np.exp(z - z.max())
    p /= p.sum()
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
    try:
        with no_grad():
            cache = None
            for _ in range(max_new_tokens):
                if use_cache and cache is not None and len(cache) and cache[0]["k"].shape[2] < n_ctx:
                    logits = model(xp.asarray([[ids[-1]]]), cache=cache)
                else:  # first step, no cache, or the window is full: encode the last tokens
                    window = ids[-n_ctx:]
                    cache = [] if use_cache else None
                    logits = model(xp.asarray([window]), cache=cache)
                token = pick_token(logits.data[0, -1], temperature, top_k, top_p, rng)
                ids.append(token)
                new.append(token)
                if on_token is not None:
                    on_token(token)
    finally:
        model.train(was_training)
    return new
