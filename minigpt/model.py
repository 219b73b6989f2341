"""The GPT-1 model (Radford et al. 2018), with HuggingFace `OpenAIGPTModel` parameter names.

    h_0 = U W_e + W_p                         token embedding + learned position embedding
    n   = ln_1(h + attn(h))                   post-LN block: LayerNorm *after* each residual
    h'  = ln_2(n + mlp(n))                    (no final LayerNorm after the last block)
    logits = h_n W_e^T                        output tied to the token embedding

Parameter names (`tokens_embed.weight`, `h.0.attn.c_attn.weight`, ...) and layouts (linear
weights stored (in, out)) equal HuggingFace's, so state dicts move between the two by name.
"""
from __future__ import annotations

import dataclasses
import json
import math
import numbers
from dataclasses import dataclass

import numpy as np

from . import dispatch
from . import functional as F
from . import interop
from .autograd import Function, Tensor
from .checks import short_list
from .untrusted import cut
from .backend import get_array_module
from .nn import Dropout, Embedding, LayerNorm, Linear, Module, ModuleList, Parameter


@dataclass
class GPTConfig:
    """GPT-1's hyper-parameters; the defaults are the paper's model (116.5M parameters)."""

    vocab_size: int = 40478
    n_ctx: int = 512          # context length (HuggingFace calls it n_positions)
    n_layer: int = 12
    n_embd: int = 768
    n_head: int = 12
    embd_pdrop: float = 0.1
    attn_pdrop: float = 0.1
    resid_pdrop: float = 0.1
    layer_norm_epsilon: float = 1e-5
    initializer_range: float = 0.02  # weights and embeddings ~ N(0, 0.02); biases 0, LN gain 1
    dtype: str = "float32"

    def __post_init__(self):
        """Types and ranges, and the ceilings (MAX_SIZES, MAX_PARAMETERS), checked before any
        weight exists: a config read from a damaged or hostile file (n_embd 1e9, `true`) is a
        short ValueError naming the field, not a huge allocation."""
        for name in ("vocab_size", "n_ctx", "n_layer", "n_embd", "n_head"):
            value = getattr(self, name)
            if (isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer))
                    or value <= 0):
                raise ValueError(f"GPTConfig.{name} must be a positive integer, got {cut(value)}")
            if value > MAX_SIZES[name]:
                raise ValueError(f"GPTConfig.{name}={value:,} is above minigpt's ceiling of "
                                 f"{MAX_SIZES[name]:,} (damaged config?)")
        if self.n_embd % self.n_head:
            raise ValueError(f"GPTConfig.n_embd ({self.n_embd}) must be divisible by "
                             f"n_head ({self.n_head})")
        for name, low, high in (("embd_pdrop", 0.0, 1.0), ("attn_pdrop", 0.0, 1.0),
                                ("resid_pdrop", 0.0, 1.0), ("layer_norm_epsilon", 0.0, math.inf),
                                ("initializer_range", 0.0, math.inf)):
            value = getattr(self, name)
            ok = (not isinstance(value, (bool, np.bool_)) and isinstance(value, numbers.Real)
                  and math.isfinite(value) and (low <= value < high))
            if not ok or (name == "layer_norm_epsilon" and value == 0):
                rng = "in [0, 1)" if high == 1.0 else ("> 0" if name == "layer_norm_epsilon"
                                                       else ">= 0")
                raise ValueError(f"GPTConfig.{name} must be a finite number {rng}, got "
                                 f"{cut(value)}")
        if not isinstance(self.dtype, str) or self.dtype not in ("float32", "float64"):
            raise ValueError(f"GPTConfig.dtype must be 'float32' or 'float64', got "
                             f"{cut(self.dtype)}")
        n = self.num_parameters()
        if n > MAX_PARAMETERS:
            raise ValueError(f"GPTConfig describes {n:,} parameters, above minigpt's ceiling of "
                             f"{MAX_PARAMETERS:,} (damaged config?)")

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        """name -> shape of every parameter GPT(config) holds, computed without building it
        (loaders compare these with a weights file's header before allocating anything)."""
        V, T, C, L = self.vocab_size, self.n_ctx, self.n_embd, self.n_layer
        shapes = {"tokens_embed.weight": (V, C), "positions_embed.weight": (T, C)}
        layer = {"attn.c_attn.weight": (C, 3 * C), "attn.c_attn.bias": (3 * C,),
                 "attn.c_proj.weight": (C, C), "attn.c_proj.bias": (C,),
                 "ln_1.weight": (C,), "ln_1.bias": (C,),
                 "mlp.c_fc.weight": (C, 4 * C), "mlp.c_fc.bias": (4 * C,),
                 "mlp.c_proj.weight": (4 * C, C), "mlp.c_proj.bias": (C,),
                 "ln_2.weight": (C,), "ln_2.bias": (C,)}
        for i in range(L):
            shapes.update({f"h.{i}.{k}": v for k, v in layer.items()})
        return shapes

    def num_parameters(self) -> int:
        """Number of parameters of GPT(config) (arithmetic only: nothing is built)."""
        V, T, C, L = (int(x) for x in (self.vocab_size, self.n_ctx, self.n_embd, self.n_layer))
        return (V + T) * C + L * (12 * C * C + 13 * C)

    def check_weights(self, found: dict, source, *, dtype: bool = True) -> None:
        """Compare a weights file's {name: (dtype name, shape)} (safetensors.read_shapes) with
        this config's parameters before anything is allocated: the same names, the same shapes
        and (with `dtype`) the config's own dtype: an I32 tensor is refused, never
        reinterpreted as floats. ValueError naming `source` and the first mismatches."""
        want = self.parameter_shapes()
        missing = [k for k in want if k not in found]
        unexpected = [k for k in found if k not in want]
        if missing or unexpected:
            parts = [f"missing {short_list(missing, 6, quote=True)}"] if missing else []
            if unexpected:
                parts.append(f"unexpected {short_list(map(cut, unexpected), 6)}")
            raise ValueError(f"{source}: tensor names do not match GPT-1 with n_layer="
                             f"{self.n_layer}: " + "; ".join(parts))
        stored_as = SAFETENSORS_DTYPES[self.dtype]
        for name, shape in want.items():
            got_dtype, got_shape = found[name]
            if tuple(got_shape) != shape:
                raise ValueError(
                    f"{source}: {name} has shape {cut(tuple(got_shape))}, but the config "
                    f"(n_embd={self.n_embd}, n_ctx={self.n_ctx}, vocab_size={self.vocab_size}) "
                    f"needs {shape}")
            if dtype and got_dtype != stored_as:
                raise ValueError(f"{source}: {name} is stored as {got_dtype}, but the config's "
                                 f"dtype {self.dtype} needs {stored_as}")

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "GPTConfig":
        """A config from a dict read from a file: unknown fields, wrong types and sizes above
        the ceilings are a ValueError naming the field (__post_init__)."""
        if not isinstance(d, dict):
            raise ValueError(f"GPTConfig: expected a JSON object, got {cut(d)}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"GPTConfig: unknown fields {short_list(map(cut, unknown))}")
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def preset(cls, name: str, **overrides) -> "GPTConfig":
        """A named configuration: gpt1 (the paper's) or a laptop-sized one."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})


# Ceilings for a config read from a file (far above GPT-1's 40478 / 512 / 12 / 768 / 12).
MAX_SIZES = {"vocab_size": 2**24, "n_ctx": 2**20, "n_layer": 1024, "n_embd": 2**16,
             "n_head": 2**16}
MAX_PARAMETERS = 2**35           # 34 billion parameters
SAFETENSORS_DTYPES = {"float32": "F32", "float64": "F64"}   # how checkpoints store each dtype

PRESETS = {
    "gpt1": dict(vocab_size=40478, n_ctx=512, n_layer=12, n_embd=768, n_head=12),
    # laptop presets; vocab_size is normally replaced by the tokenizer's
    "tiny": dict(vocab_size=65, n_ctx=64, n_layer=4, n_embd=128, n_head=4),
    "small": dict(vocab_size=512, n_ctx=128, n_layer=6, n_embd=384, n_head=6),
    # `minigpt demo`: tiny without dropout (1000 steps are too few to overfit 4M characters)
    "demo": dict(vocab_size=65, n_ctx=64, n_layer=4, n_embd=128, n_head=4,
                 embd_pdrop=0.0, attn_pdrop=0.0, resid_pdrop=0.0),
}


def chosen(op: str, *arrays, memo: dict | None = None, site: str = "", **options):
    """dispatch.choose(op, *arrays, **options), remembered in `memo` (a dict kept for one pass,
    GPT.decode's) under `site`, the call site (one op on one set of input shapes within the
    pass): the choice is made once per site and pass, not once per layer. The mode and the
    registry cannot change within a pass, and choose() costs as much as a small op."""
    if memo is None:
        return dispatch.choose(op, *arrays, **options)
    impl = memo.get(site)
    if impl is None:
        impl = memo[site] = dispatch.choose(op, *arrays, **options)
    return impl


def forward_only(op: str, *arrays, memo: dict | None = None, site: str = "", **options):
    """The implementation of `op` that minigpt.dispatch picks for these arrays (the same one
    F.<op> would run; see chosen), run on plain arrays with no graph (Function.run_forward)."""
    return chosen(op, *arrays, memo=memo, site=site, **options).run_forward(*arrays, **options)


class KVCache:
    """Keys and values of every layer for KV-cache decoding (GPT.decode), allocated once for
    the whole context: k[i] and v[i] are layer i's (B, nh, n_ctx, hs), of which the first
    `length` positions are filled. A new token's keys and values are written in place: no
    concatenation, whose copy of the whole cache per token grew with the text."""

    def __init__(self, config: "GPTConfig", batch: int = 1, xp=np, dtype=None):
        """dtype: the model's weights' (default config.dtype; a model cast with astype() has
        another, and GPT.decode refuses a cache that would round its keys)."""
        shape = (config.n_layer, batch, config.n_head, config.n_ctx, config.n_embd // config.n_head)
        dtype = np.dtype(config.dtype if dtype is None else dtype)
        self.k = xp.empty(shape, dtype=dtype)  # (L, B, nh, n_ctx, hs)
        self.v = xp.empty(shape, dtype=dtype)
        self.length = 0

    @property
    def batch(self) -> int:
        return self.k.shape[1]


class Attention(Module):
    """Masked multi-head self-attention: c_attn (C -> 3C, q k v in that order), then c_proj."""

    def __init__(self, cfg: GPTConfig, rng):
        super().__init__()
        C, dt, std = cfg.n_embd, np.dtype(cfg.dtype), cfg.initializer_range
        self.n_head = cfg.n_head
        self.attn_pdrop = cfg.attn_pdrop
        self.c_attn = Linear(C, 3 * C, std=std, dtype=dt, rng=rng)
        self.c_proj = Linear(C, C, std=std, dtype=dt, rng=rng)
        self.resid_dropout = Dropout(cfg.resid_pdrop)

    def forward(self, x: Tensor, padding_mask=None, cache: dict | None = None) -> Tensor:
        B, T, C = x.shape
        nh, hs = self.n_head, C // self.n_head
        qkv = self.c_attn(x)  # (B, T, 3C)
        qkv = qkv.reshape(B, T, 3, nh, hs)  # (B, T, 3, nh, hs)
        # split, then move the heads forward: the gradients of the three slices are then
        # summed in (B, T, 3, nh, hs), which is qkv's own layout (no copy back to (B, T, 3C))
        q, k, v = (qkv[:, :, i].transpose(0, 2, 1, 3) for i in range(3))  # each (B, nh, T, hs)
        if cache is not None:  # incremental decoding: prepend the keys/values seen so far
            xp = get_array_module(k.data)
            if "k" in cache:
                k = Tensor(xp.concatenate([cache["k"], k.data], axis=2))  # (B, nh, Tk, hs)
                v = Tensor(xp.concatenate([cache["v"], v.data], axis=2))
            cache["k"], cache["v"] = k.data, v.data
        p = self.attn_pdrop if self.training else 0.0
        y = F.attention(q, k, v, causal=True, padding_mask=padding_mask, dropout_p=p)
        y = y.transpose(0, 2, 1, 3).reshape(B, T, C)  # (B, nh, T, hs) -> (B, T, C)
        return self.resid_dropout(self.c_proj(y))

    def decode(self, x, k_cache, v_cache, past: int, memo=None):
        """forward() on arrays for GPT.decode: x (B, T, C) at positions past..past+T-1; their
        keys and values are written into k_cache, v_cache (B, nh, n_ctx, hs) in place."""
        B, T, C = x.shape
        nh, hs = self.n_head, C // self.n_head
        qkv = forward_only("linear", x, self.c_attn.weight.data, self.c_attn.bias.data,
                           memo=memo, site="attn.c_attn")  # (B, T, 3C)
        qkv = qkv.reshape(B, T, 3, nh, hs).transpose(2, 0, 3, 1, 4)  # (3, B, nh, T, hs)
        Tk = past + T
        k_cache[:, :, past:Tk] = qkv[1]  # (B, nh, T, hs) appended in place
        v_cache[:, :, past:Tk] = qkv[2]
        y = forward_only("attention", qkv[0], k_cache[:, :, :Tk], v_cache[:, :, :Tk], causal=True,
                         padding_mask=None, dropout_p=0.0, rng=None, memo=memo,
                         site="attn")  # (B, nh, T, hs)
        y = y.transpose(0, 2, 1, 3).reshape(B, T, C)  # (B, nh, T, hs) -> (B, T, C)
        return forward_only("linear", y, self.c_proj.weight.data, self.c_proj.bias.data,
                            memo=memo, site="attn.c_proj")


class MLP(Module):
    """Position-wise feed-forward: c_fc (C -> 4C), GELU, c_proj (4C -> C)."""

    def __init__(self, cfg: GPTConfig, rng):
        super().__init__()
        C, dt, std = cfg.n_embd, np.dtype(cfg.dtype), cfg.initializer_range
        self.c_fc = Linear(C, 4 * C, std=std, dtype=dt, rng=rng)
        self.c_proj = Linear(4 * C, C, std=std, dtype=dt, rng=rng)
        self.dropout = Dropout(cfg.resid_pdrop)

    def forward(self, x: Tensor) -> Tensor:
        # gelu(c_fc(x)) as one op: on the GPU the bias add and GELU are one kernel (07)
        h = F.linear_gelu(x, self.c_fc.weight, self.c_fc.bias)
        return self.dropout(self.c_proj(h))

    def decode(self, x, memo=None):
        """forward() on arrays for GPT.decode (no dropout)."""
        w, b = self.c_fc.weight.data, self.c_fc.bias.data
        fused = chosen("linear_gelu", x, w, b, memo=memo, site="mlp.linear_gelu")
        if isinstance(fused, type) and issubclass(fused, Function):  # one op (the GPU kernel)
            h = fused.run_forward(x, w, b)
        else:  # the reference linear_gelu: linear, then gelu, each dispatched on its own
            h = forward_only("linear", x, w, b, memo=memo, site="mlp.c_fc")
            h = forward_only("gelu", h, memo=memo, site="mlp.gelu")
        return forward_only("linear", h, self.c_proj.weight.data, self.c_proj.bias.data,
                            memo=memo, site="mlp.c_proj")


class Block(Module):
    """GPT-1's post-LN block: n = ln_1(x + attn(x));  h = ln_2(n + mlp(n))."""

    def __init__(self, cfg: GPTConfig, rng):
        super().__init__()
        dt = np.dtype(cfg.dtype)
        self.attn = Attention(cfg, rng)
        self.ln_1 = LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon, dtype=dt)
        self.mlp = MLP(cfg, rng)
        self.ln_2 = LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon, dtype=dt)

    def forward(self, x: Tensor, padding_mask=None, cache=None) -> Tensor:
        n = self.ln_1(x + self.attn(x, padding_mask, cache))
        return self.ln_2(n + self.mlp(n))

    def decode(self, x, k_cache, v_cache, past: int, memo=None):
        """forward() on arrays for GPT.decode; the residual sums are written into the fresh
        outputs of attn and mlp (x + a == a + x exactly: the same numbers as forward)."""
        a = self.attn.decode(x, k_cache, v_cache, past, memo)
        a += x  # (B, T, C)
        n = forward_only("layer_norm", a, self.ln_1.weight.data, self.ln_1.bias.data,
                         eps=self.ln_1.eps, memo=memo, site="ln")
        m = self.mlp.decode(n, memo)
        m += n
        return forward_only("layer_norm", m, self.ln_2.weight.data, self.ln_2.bias.data,
                            eps=self.ln_2.eps, memo=memo, site="ln")


class GPT(Module):
    """GPT-1. `model(idx)` -> logits (B, T, vocab); `model.hidden_states(idx)` -> h_n (B, T, C)."""

    config_class = GPTConfig   # what from_pretrained builds the configuration with

    def __init__(self, config: GPTConfig, seed: int = 0):
        super().__init__()
        self.config = config
        rng = np.random.default_rng(seed)  # initial weights depend only on the seed
        dt, std = np.dtype(config.dtype), config.initializer_range
        self.tokens_embed = Embedding(config.vocab_size, config.n_embd, std=std, dtype=dt, rng=rng)
        self.positions_embed = Embedding(config.n_ctx, config.n_embd, std=std, dtype=dt, rng=rng)
        self.drop = Dropout(config.embd_pdrop)
        self.h = ModuleList(Block(config, rng) for _ in range(config.n_layer))

    def _check_input(self, idx, past_length: int = 0):
        if isinstance(idx, Tensor):
            idx = idx.data
        if not hasattr(idx, "ndim"):
            idx = np.asarray(idx)
        if idx.ndim != 2:
            raise ValueError(f"GPT expects token ids of shape (B, T), got shape {idx.shape}")
        if idx.dtype.kind not in "iu":
            raise TypeError(f"GPT expects integer token ids, got dtype {idx.dtype}")
        T = idx.shape[1]
        if T == 0:
            raise ValueError("GPT got an empty sequence (T = 0)")
        if past_length + T > self.config.n_ctx:
            raise ValueError(f"sequence length {past_length + T} exceeds the context limit "
                             f"n_ctx={self.config.n_ctx}")
        if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= self.config.vocab_size):
            bad = int(idx.min()) if int(idx.min()) < 0 else int(idx.max())
            raise ValueError(f"token id {bad} is outside the vocabulary [0, "
                             f"{self.config.vocab_size})")
        return idx

    def hidden_states(self, idx, padding_mask=None, cache: list | None = None) -> Tensor:
        """h_n (B, T, C), the last block's output, for fine-tuning heads.

        cache: a list (one dict per layer) filled with keys/values for incremental decoding;
        pass the same list again with only the new tokens. Use under `no_grad()`.
        """
        past = 0
        if cache is not None and cache and "k" in cache[0]:
            past = cache[0]["k"].shape[2]
        idx = self._check_input(idx, past)
        xp = get_array_module(self.tokens_embed.weight.data)
        idx = xp.asarray(idx)
        B, T = idx.shape
        if padding_mask is not None and cache is not None:
            raise ValueError("padding_mask is not supported together with a KV cache")
        pos = xp.arange(past, past + T)[None, :]  # (1, T)
        h = self.tokens_embed(idx) + self.positions_embed(pos)  # (B, T, C) + (1, T, C)
        h = self.drop(h)
        if cache is not None and not cache:
            cache.extend({} for _ in range(len(self.h)))
        for i, block in enumerate(self.h):
            h = block(h, padding_mask, None if cache is None else cache[i])
        return h

    def forward(self, idx, padding_mask=None, cache: list | None = None) -> Tensor:
        h = self.hidden_states(idx, padding_mask, cache)
        return self.lm_logits(h)

    def decode(self, idx, cache: KVCache):
        """Next-token logits (B, V), an array, after the tokens idx (B, T); their keys and values
        are appended to `cache` (a KVCache of this model's config and batch size).

        The forward pass for sampling: no graph, no dropout, no observers; each op is the
        implementation minigpt.dispatch picks (the one forward() runs), called on arrays
        (Function.run_forward); only the last position goes through the output layer. Pass the
        prompt first, then one new token per call. The logits equal forward()'s at the last
        position (tests/test_sample.py: 1e-6 in float32, 1e-12 in float64)."""
        idx = self._check_input(idx, cache.length)
        if idx.shape[0] != cache.batch:
            raise ValueError(f"GPT.decode: {idx.shape[0]} sequences for a cache of batch "
                             f"{cache.batch}; make a KVCache(config, batch={idx.shape[0]})")
        if cache.k.dtype != self.tokens_embed.weight.dtype:
            raise ValueError(f"GPT.decode: a {cache.k.dtype} cache for {self.tokens_embed.weight.dtype} "
                             f"weights; make KVCache(config, dtype={str(self.tokens_embed.weight.dtype)!r})")
        xp = get_array_module(self.tokens_embed.weight.data)
        idx = xp.asarray(idx)
        T, past = idx.shape[1], cache.length
        memo = {}  # call site -> the implementation, chosen once for this pass
        h = forward_only("embedding", self.tokens_embed.weight.data, idx=idx, memo=memo,
                         site="embedding")  # (B, T, C)
        h = h + self.positions_embed.weight.data[past:past + T]  # + (T, C)
        for i, block in enumerate(self.h):
            h = block.decode(h, cache.k[i], cache.v[i], past, memo)
        cache.length = past + T
        return forward_only("linear", h[:, -1], self.tokens_embed.weight.data.T,
                            memo=memo, site="lm_head")  # (B, C) @ (C, V)

    def lm_logits(self, h: Tensor) -> Tensor:
        """logits = h @ W_e^T: the token embedding doubles as the output layer (tied)."""
        return F.linear(h, self.tokens_embed.weight.T)  # (B, T, C) @ (C, V) -> (B, T, V)

    def loss(self, idx, targets, padding_mask=None, ignore_index: int = -100) -> Tensor:
        """Mean next-token cross-entropy (L1 of the paper, averaged) of idx against targets."""
        return F.cross_entropy(self(idx, padding_mask), targets, ignore_index=ignore_index)

    def resize_token_embeddings(self, vocab_size: int, seed: int = 0) -> None:
        """Grow the vocabulary (e.g. fine-tuning's start/delimiter/extract tokens): existing
        rows are kept, new rows drawn N(0, initializer_range) like the others."""
        old = self.tokens_embed.weight
        V, C = old.shape
        if vocab_size < V:
            raise ValueError(f"resize_token_embeddings can only grow the vocabulary ({V} -> {vocab_size})")
        if vocab_size == V:
            return
        xp = get_array_module(old.data)
        rng = np.random.default_rng(seed)
        new_rows = rng.standard_normal((vocab_size - V, C)) * self.config.initializer_range
        weight = xp.concatenate([old.data, xp.asarray(new_rows.astype(old.dtype))], axis=0)
        self.tokens_embed.weight = Parameter(weight)
        self.config = dataclasses.replace(self.config, vocab_size=vocab_size)

    # ---- interop with the released GPT-1 weights (implemented in interop.py) ---------------
    # interop.py never imports this module: it receives the class (and `config_class`) as an
    # argument, so the dependency runs one way, model -> interop.
    @classmethod
    def from_pretrained(cls, path, **options) -> "GPT":
        """Load HuggingFace (`config.json` + `model.safetensors`/`pytorch_model.bin`) or the
        original OpenAI release (`params_shapes.json` + `params_*.npy`) weights.
        options: n_head= (OpenAI's layout does not record it), dtype= ("float32"/"float64")."""
        return interop.load_pretrained(cls, path, **options)

    def save_pretrained(self, path, tokenizer=None, *, include_heads: bool = False):
        """Write `config.json` + `model.safetensors` that `transformers` loads as
        OpenAIGPTLMHeadModel (OpenAIGPTDoubleHeadsModel with include_heads); returns the path."""
        return interop.save_pretrained(self, path, tokenizer=tokenizer,
                                       include_heads=include_heads)
