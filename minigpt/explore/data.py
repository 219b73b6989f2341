"""What the explorer page shows, computed from a model, its tokenizer and a prompt.

    ex = Explorer(model, tokenizer, metrics=read_metrics(run / "metrics.jsonl"))
    ids = ex.encode_prompt("ROMEO:")       # PromptError (a ValueError) for bad input
    ex.analysis(ids)                       # tokens, attention, next token, logit lens, trace
    ex.generate_one(ids, temperature=0.8, top_k=None, top_p=None, seed=1)   # minigpt.sample

One analysis of T tokens (B = 1 throughout):

- tokens: each id with its vocabulary entry (`piece`: the BPE piece with its `</w>`, or the
  character);
- attention: for layer l and head h the weights P[l][h][i][j] = softmax_j(q_i . k_j / sqrt(hs))
  over the keys j <= i (row i holds i + 1 numbers), computed in float64 from the very q and k
  that each layer's attention op received in one forward pass of the model in eval mode (an
  observer in minigpt.config.observers picks them up; no copy of the model's forward code);
- next: the logits of the last position, float64 (V,), from which the page recomputes the
  next-token probabilities for any temperature, top-k and top-p with minigpt.sample's formula
  (`minigpt.sample.next_token_probabilities`, the distribution pick_token draws from);
- lens: the logit lens: the residual stream after the embeddings and after each block, h_l
  (T, C), put through the model's own output layer (`GPT.lm_logits`, the tied W_e^T; GPT-1 has
  no final LayerNorm, so nothing else stands between the last block and the logits), softmax,
  the top tokens per position. The last layer's lens is the model's output itself;
- trace: `minigpt.trace` of one forward and backward pass with the prompt as its own targets
  (tokens 0..T-2 predict tokens 1..T-1), eval mode: every op, its shapes, statistics and
  gradient norms, and each parameter's gradient norm (None with a one-token prompt).
"""
from __future__ import annotations

import math
import numbers
import threading

import numpy as np

from .. import dispatch
from ..backend import get_array_module, to_numpy
from ..ops.attention import attention_mask
from ..sample import generate, next_token_probabilities
from ..settings import config, using
from ..trace import trace

__all__ = ["Explorer", "PromptError", "MAX_TOKENS", "LENS_TOP"]

MAX_TOKENS = 128   # longest prompt shown (attention is T x T per head; the page stays quick)
LENS_TOP = 3       # tokens kept per position and layer in the logit lens
DIGITS = 8         # decimals kept of attention weights and lens probabilities (JSON size)


class PromptError(ValueError):
    """The prompt (or a list of token ids) cannot be shown: empty, too long, unknown chars."""


def _softmax64(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _top_tokens(p) -> list:
    """The LENS_TOP likeliest ids of each row of p (T, V), likeliest first (ties: lower id)."""
    k = min(LENS_TOP, p.shape[-1])
    cand = np.argpartition(-p, k - 1, axis=-1)[:, :k]  # (T, k), unordered
    rows = []
    for t, ids in enumerate(cand):
        ids = sorted((int(j) for j in ids), key=lambda j: (-p[t, j], j))
        rows.append([{"id": j, "p": round(float(p[t, j]), DIGITS)} for j in ids])
    return rows


class _AttentionInputs:
    """An autograd observer that keeps the (q, k) of every attention op it sees, in order."""

    def __init__(self):
        classes = dispatch.registered().get("attention", {}).values()
        self.classes = tuple(classes)
        self.seen: list[tuple[np.ndarray, np.ndarray]] = []

    def forward(self, fn, inputs, output) -> None:
        if isinstance(fn, self.classes):
            q, k = inputs[0].data, inputs[1].data
            self.seen.append((to_numpy(q).astype(np.float64), to_numpy(k).astype(np.float64)))

    def backward(self, fn, grad_output, grads) -> None:
        pass


def _clean(x):
    """A float for JSON: NaN and inf become None (JSON has neither)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


class Explorer:
    """A model and its tokenizer, ready to answer the page's questions (thread-safe: one
    computation at a time, as tracing and sampling use the model's state)."""

    def __init__(self, model, tokenizer, *, metrics=None, source: str = "",
                 metrics_warnings=(), max_tokens: int = MAX_TOKENS):
        if tokenizer is None:
            raise ValueError("the explorer needs the model's tokenizer to read a prompt")
        self.model = model
        self.tokenizer = tokenizer
        self.metrics = list(metrics or [])
        self.metrics_warnings = list(metrics_warnings)
        self.source = str(source)
        self.max_tokens = min(int(max_tokens), model.config.n_ctx)
        self.lock = threading.Lock()
        model.eval()

    # ---- input -------------------------------------------------------------------------------
    def encode_prompt(self, prompt) -> list[int]:
        """The prompt's ids, or PromptError naming what is wrong (and what to do)."""
        if not isinstance(prompt, str):
            raise PromptError(f"the prompt must be text, got {type(prompt).__name__}")
        if not prompt:
            raise PromptError("the prompt is empty; type some text")
        tok = self.tokenizer
        ids = tok.encode(prompt)
        if not ids:
            raise PromptError("the prompt encodes to no tokens (only spaces or characters the "
                              "tokenizer drops?); type some words")
        unk = getattr(tok, "unk_id", None)
        if unk is not None and unk in ids:
            bad = sorted({c for c in prompt if unk in tok.encode(c)})
            if bad:
                shown = ", ".join(repr(c) for c in bad[:8]) + (" ..." if len(bad) > 8 else "")
                raise PromptError(f"the prompt has characters outside the model's vocabulary: "
                                  f"{shown}; the model never saw them in training, remove them")
            raise PromptError(f"the prompt has {ids.count(unk)} pieces outside the model's "
                              f"vocabulary (read as {tok.unk_token!r}); rephrase it")
        return self.check_ids(ids)

    def check_ids(self, ids) -> list[int]:
        """ids as a list of ints in the vocabulary, 1 to max_tokens of them; PromptError if not."""
        if not isinstance(ids, (list, tuple)) or not all(
                isinstance(i, numbers.Integral) and not isinstance(i, bool) for i in ids):
            raise PromptError("ids must be a list of integer token ids")
        if not ids:
            raise PromptError("the prompt is empty; type some text")
        V = self.model.config.vocab_size
        bad = [i for i in ids if not 0 <= i < V]
        if bad:
            raise PromptError(f"token id {bad[0]} is outside the vocabulary [0, {V})")
        if len(ids) > self.max_tokens:
            raise PromptError(f"the prompt is {len(ids)} tokens; the explorer shows at most "
                              f"{self.max_tokens} (the model's context is "
                              f"{self.model.config.n_ctx}); shorten it")
        return [int(i) for i in ids]

    # ---- what the page shows ----------------------------------------------------------------
    def info(self) -> dict:
        """The model, its vocabulary (id -> piece) and the run's loss curves."""
        cfg = self.model.config
        tok = self.tokenizer
        return {
            "source": self.source,
            "config": {k: getattr(cfg, k) for k in ("vocab_size", "n_ctx", "n_layer", "n_embd",
                                                    "n_head", "dtype")},
            "parameters": int(self.model.num_parameters()),
            "tokenizer": getattr(tok, "type_name", type(tok).__name__),
            "vocab": [tok.id_to_token(i) for i in range(tok.vocab_size)],
            "max_tokens": self.max_tokens,
            "metrics": self._metrics(),
        }

    def _metrics(self) -> dict | None:
        if not self.metrics:
            return None
        train = [[r["step"], _clean(r["loss"])] for r in self.metrics]
        val = [[r["step"], _clean(r["val_loss"])] for r in self.metrics
               if isinstance(r.get("val_loss"), (int, float))]
        return {"train": train, "val": val, "warnings": self.metrics_warnings}

    def analysis(self, ids) -> dict:
        """Everything the page shows for these token ids (see the module docstring)."""
        ids = self.check_ids(list(ids))
        with self.lock:
            attention, lens, logits = self._forward(ids)
            traced = self._trace(ids)
        tok = self.tokenizer
        return {
            "tokens": [{"id": i, "piece": tok.id_to_token(i)} for i in ids],
            "text": tok.decode(ids),
            "attention": attention,
            "next": {"logits": [float(x) for x in logits]},
            "lens": lens,
            "trace": traced,
        }

    def _forward(self, ids):
        model = self.model
        xp = get_array_module(model.tokens_embed.weight.data)
        idx = xp.asarray([ids])  # (1, T)
        T = len(ids)
        observer = _AttentionInputs()
        top = []  # the logit lens: per layer, per position, the LENS_TOP likeliest tokens

        def read(h):  # h (1, T, C) through the tied output layer -> logits (T, V), float64
            logits = to_numpy(model.lm_logits(h).data[0]).astype(np.float64)  # (T, V)
            top.append(_top_tokens(_softmax64(logits)))
            return logits

        with using(observers=[*config.observers, observer], grad_enabled=False):
            # the residual stream after the embeddings and after each block: h_0 .. h_L
            pos = xp.arange(T)[None, :]  # (1, T)
            h = model.drop(model.tokens_embed(idx) + model.positions_embed(pos))  # (1, T, C)
            logits = read(h)
            for block in model.h:
                h = block(h)
                logits = read(h)  # the last one is the model's output
        if len(observer.seen) != model.config.n_layer:
            raise RuntimeError(f"expected one attention op per layer ({model.config.n_layer}), "
                               f"saw {len(observer.seen)}")
        visible = attention_mask(T, T, True)  # (T, T) True = key j visible to query i
        attention = []
        for q, k in observer.seen:  # each (1, nh, T, hs)
            hs = q.shape[-1]
            scores = q[0] @ k[0].transpose(0, 2, 1) / math.sqrt(hs)  # (nh, T, T)
            scores = np.where(visible[None], scores, -np.inf)
            P = _softmax64(scores)  # (nh, T, T)
            attention.append([[np.round(P[h, i, :i + 1], DIGITS).tolist() for i in range(T)]
                              for h in range(P.shape[0])])
        names = ["embeddings"] + [f"h.{i}" for i in range(model.config.n_layer)]
        return attention, {"layers": names, "top": top}, logits[-1]

    def _trace(self, ids):
        if len(ids) < 2:
            return None  # nothing to predict: no loss, no backward pass
        model = self.model
        xp = get_array_module(model.tokens_embed.weight.data)
        arr = xp.asarray([ids])  # (1, T)
        tr = trace(model, arr[:, :-1], arr[:, 1:])
        model.zero_grad()  # the trace leaves this pass's gradients; nothing here uses them
        ops = [{"index": r.index, "op": r.op, "impl": r.impl, "module": r.module,
                "inputs": r.inputs, "input_shapes": [list(s) for s in r.input_shapes],
                "shape": list(r.shape), "mean": _clean(r.mean), "std": _clean(r.std),
                "absmax": _clean(r.absmax), "grad_norm": _clean(r.grad_norm),
                "input_grad_norms": [_clean(g) for g in r.input_grad_norms],
                "backward_step": r.backward_step} for r in tr.ops]
        params = [{"name": p.name, "shape": list(p.shape), "norm": _clean(p.norm),
                   "grad_norm": _clean(p.grad_norm)} for p in tr.params]
        return {"loss": _clean(tr.loss), "ops": ops, "params": params,
                "targets": "the prompt itself: token t predicts token t + 1"}

    def generate_one(self, ids, temperature: float = 0.8, top_k=None, top_p=None,
                     seed=None) -> int:
        """One token drawn by minigpt.sample.generate with these settings (ValueError outside
        their ranges); PromptError if the ids already fill the explorer's window."""
        ids = self.check_ids(list(ids))
        if len(ids) >= self.max_tokens:
            raise PromptError(f"the text is {len(ids)} tokens, the most the explorer shows; "
                              "shorten the prompt to generate more")
        with self.lock:
            return generate(self.model, ids, 1, temperature=temperature, top_k=top_k,
                            top_p=top_p, seed=seed)[0]
