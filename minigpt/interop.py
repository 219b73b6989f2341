"""Load and save the released GPT-1 weights: HuggingFace `openai-gpt` and OpenAI's original files.

Layouts read by `GPT.from_pretrained(path)` (a directory; implemented by `load_pretrained`):

* HuggingFace: `config.json` (model_type "openai-gpt") + `model.safetensors` (read with
  minigpt's own reader, no torch), or a sharded `model.safetensors.index.json`, or
  `pytorch_model.bin` (needs torch). Key sets of `OpenAIGPTModel` (`tokens_embed.weight`, ...),
  `OpenAIGPTLMHeadModel` / `OpenAIGPTDoubleHeadsModel` (the same under `transformer.`, plus a
  `lm_head.weight` tied to the token embedding, which the DoubleHeads model saves *instead* of
  `transformer.tokens_embed.weight`). The multiple-choice head (`multiple_choice_head.summary.*`)
  and the sequence-classification head (`score.weight`) are kept on the returned model as
  `model.pretrained_heads` (name -> array, HuggingFace layout: nn.Linear weights are (out, in)).
* OpenAI's release (openai/finetune-transformer-lm, `model/`): `params_shapes.json` and
  `params_0.npy` .. `params_9.npy`, one flat float32 list split by the shapes: positions
  (n_ctx, C), token rows (V, C), then 12 arrays per layer (c_attn w [1, C, 3C], b; c_proj w
  [1, C, C], b; ln_1 g, b; c_fc w [1, C, 4C], b; mlp c_proj w [1, 4C, C], b; ln_2 g, b). The
  leading 1 (a width-1 convolution) is squeezed; the (in, out) layout is already minigpt's.
  The number of heads is not stored there: GPT-1's 12 unless `n_head=` says otherwise.
* A minigpt checkpoint directory (config.json with "format": "minigpt-checkpoint") is read too.

`model.save_pretrained(path)` (`save_pretrained(model, path)`) writes `config.json` + `model.safetensors` in exactly the form
`transformers.OpenAIGPTLMHeadModel.save_pretrained` writes: keys `transformer.<name>`, and no
`lm_head.weight` (transformers ties it to `transformer.tokens_embed.weight` on load).

GELU: HuggingFace's openai-gpt code has its own table `ACT_FNS = {"gelu": gelu_new, ...}`, so
`afn: "gelu"` in an openai-gpt config.json means the tanh approximation
0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), GPT-1's original and minigpt's F.gelu; it is
NOT `transformers.activations.ACT2FN["gelu"]` (the exact erf form). "gelu" is therefore the
value written and the only one accepted ("gelu_new" is not a key of that table, so
transformers itself cannot build an openai-gpt model with it).

Every bad input raises an error naming the file and the problem.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np

from . import safetensors
from .backend import to_numpy
from .checks import short_list
from .untrusted import cut, read_json

__all__ = ["load_pretrained", "save_pretrained", "PretrainedFormatError", "hf_config", "config_dict",
           "HF_CONFIG", "HF_SAFETENSORS", "HF_SAFETENSORS_INDEX", "HF_TORCH_BIN",
           "OPENAI_SHAPES", "GPT1_N_HEAD"]

HF_CONFIG = "config.json"
HF_SAFETENSORS = "model.safetensors"
HF_SAFETENSORS_INDEX = "model.safetensors.index.json"
HF_TORCH_BIN = "pytorch_model.bin"
OPENAI_SHAPES = "params_shapes.json"
MINIGPT_CHECKPOINT_FORMAT = "minigpt-checkpoint"
GPT1_N_HEAD = 12  # not stored in OpenAI's params_shapes.json

MODEL_TYPE = "openai-gpt"
ARCH_LM = "OpenAIGPTLMHeadModel"
ARCH_DOUBLE = "OpenAIGPTDoubleHeadsModel"
HEAD_PREFIXES = ("multiple_choice_head.", "score.")

# The 12 per-layer arrays of OpenAI's release, in file order: (minigpt/HF name, shape(C)).
_OPENAI_LAYER = (
    ("attn.c_attn.weight", lambda C: (C, 3 * C)),
    ("attn.c_attn.bias", lambda C: (3 * C,)),
    ("attn.c_proj.weight", lambda C: (C, C)),
    ("attn.c_proj.bias", lambda C: (C,)),
    ("ln_1.weight", lambda C: (C,)),
    ("ln_1.bias", lambda C: (C,)),
    ("mlp.c_fc.weight", lambda C: (C, 4 * C)),
    ("mlp.c_fc.bias", lambda C: (4 * C,)),
    ("mlp.c_proj.weight", lambda C: (4 * C, C)),
    ("mlp.c_proj.bias", lambda C: (C,)),
    ("ln_2.weight", lambda C: (C,)),
    ("ln_2.bias", lambda C: (C,)),
)


class PretrainedFormatError(ValueError):
    """A pretrained-weights directory is incomplete, corrupt or not GPT-1 (the message names
    the file and the problem)."""


# ================================================================================ loading

def load_pretrained(model_class, path, *, n_head: int | None = None, dtype: str = "float32"):
    """A `model_class` (GPT) holding the weights in directory `path` (HuggingFace, OpenAI
    release or minigpt). Called as `GPT.from_pretrained(path)`: this module never imports
    minigpt.model, the model class comes in as an argument (so model.py can delegate here
    without an import cycle); `model_class.config_class` is its config dataclass.

    n_head: only for OpenAI's layout, which does not record it (default 12, GPT-1's).
    dtype: "float32" (the released weights' precision) or "float64".
    The model is returned in eval mode; call `.train()` to fine-tune with dropout.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such directory")
    if not p.is_dir():
        raise PretrainedFormatError(f"{p}: expected a directory holding GPT-1 weights "
                                    f"({HF_CONFIG} + {HF_SAFETENSORS}, or {OPENAI_SHAPES} + "
                                    f"params_*.npy), got a file")
    if (p / HF_CONFIG).is_file():
        model = _load_hf(model_class, p, dtype)
    elif (p / OPENAI_SHAPES).is_file():
        model = _load_openai(model_class, p, n_head if n_head is not None else GPT1_N_HEAD,
                             dtype)
    else:
        raise FileNotFoundError(
            f"{p}: no GPT-1 weights found: expected {HF_CONFIG} with {HF_SAFETENSORS} or "
            f"{HF_TORCH_BIN} (HuggingFace openai-gpt), or {OPENAI_SHAPES} with params_0.npy.. "
            f"(OpenAI's finetune-transformer-lm release)")
    model.eval()
    return model


def _read_json(file: Path):
    """A JSON file of the weights folder, size and nesting bounded before parsing."""
    return read_json(file, kind=None, error=PretrainedFormatError)


def hf_config(config_class, d: dict, file="config.json", dtype: str = "float32"):
    """A `config_class` (GPTConfig) from a HuggingFace openai-gpt config dict (errors name
    `file`)."""
    if not isinstance(d, dict):
        raise PretrainedFormatError(f"{file}: expected a JSON object, got {type(d).__name__}")
    model_type = d.get("model_type")
    archs = d.get("architectures") or []
    if model_type is None and archs and all(str(a).startswith("OpenAIGPT") for a in archs):
        model_type = MODEL_TYPE  # very old configs had no model_type
    if model_type != MODEL_TYPE:
        raise PretrainedFormatError(
            f"{file}: model_type is {model_type!r} (architectures {archs}), not "
            f"{MODEL_TYPE!r}: minigpt loads GPT-1 (HuggingFace openai-gpt) weights only")
    afn = d.get("afn", "gelu")
    if afn != "gelu":
        raise PretrainedFormatError(
            f"{file}: afn is {afn!r}; minigpt implements GPT-1's activation only, which "
            f"openai-gpt configs call 'gelu' (the tanh approximation)")
    if not d.get("tie_word_embeddings", True):
        raise PretrainedFormatError(f"{file}: tie_word_embeddings is false; GPT-1 (and minigpt) "
                                    f"tie the output layer to the token embedding")
    defaults = config_class()
    fields = {}
    for ours, theirs in (("vocab_size", "vocab_size"), ("n_ctx", "n_positions"),
                         ("n_embd", "n_embd"), ("n_layer", "n_layer"), ("n_head", "n_head")):
        value = d.get(theirs, d.get("n_ctx") if ours == "n_ctx" else None)
        value = getattr(defaults, ours) if value is None else value
        if isinstance(value, bool) or not isinstance(value, int):
            raise PretrainedFormatError(f"{file}: {theirs} must be an integer, got {value!r}")
        fields[ours] = value
    # pytorch-pretrained-bert era configs: vocab_size + n_special rows in the embedding
    n_special = d.get("n_special", 0) or 0
    if isinstance(n_special, bool) or not isinstance(n_special, int) or n_special < 0:
        raise PretrainedFormatError(f"{file}: n_special must be a non-negative integer, got "
                                    f"{n_special!r}")
    fields["vocab_size"] += n_special
    for name in ("embd_pdrop", "attn_pdrop", "resid_pdrop", "layer_norm_epsilon",
                 "initializer_range"):
        value = d.get(name, getattr(defaults, name))
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise PretrainedFormatError(f"{file}: {name} must be a number, got {value!r}")
        fields[name] = float(value)
    try:
        return config_class(**fields, dtype=dtype)
    except ValueError as e:
        raise PretrainedFormatError(f"{file}: {e}") from None


def _load_hf(model_class, p: Path, dtype: str):
    cfg_file = p / HF_CONFIG
    d = _read_json(cfg_file)
    if isinstance(d, dict) and d.get("format") == MINIGPT_CHECKPOINT_FORMAT:
        return _load_minigpt(model_class, p, d, dtype)
    config = hf_config(model_class.config_class, d, cfg_file, dtype)
    weights, source = _read_hf_weights(p)
    return _build(model_class, config, weights, source, p)


def _read_hf_weights(p: Path) -> tuple[dict, str]:
    """(name -> array, description of the file(s)) from a HuggingFace directory."""
    st, index, binf = p / HF_SAFETENSORS, p / HF_SAFETENSORS_INDEX, p / HF_TORCH_BIN
    if st.is_file():
        return safetensors.load_file(st), str(st)
    if index.is_file():
        idx = _read_json(index)
        wmap = idx.get("weight_map") if isinstance(idx, dict) else None
        if not isinstance(wmap, dict) or not wmap:
            raise PretrainedFormatError(f"{index}: no 'weight_map' object")
        bad = [v for v in wmap.values() if not isinstance(v, str) or Path(v).name != v
               or v in ("", ".", "..")]
        if bad:
            raise PretrainedFormatError(f"{index}: weight_map names shard {cut(bad[0])}; a shard "
                                        f"must be a file name in {p} (no folders)")
        out = {}
        for shard in sorted(set(wmap.values())):
            f = p / shard
            if not f.is_file():
                raise FileNotFoundError(f"{index} lists shard {shard!r}, which is missing from {p}")
            out.update(safetensors.load_file(f))
        missing = sorted(set(wmap) - set(out))
        if missing:
            raise PretrainedFormatError(f"{index}: tensors {short_list(map(cut, missing))} are "
                                        f"listed but not found in the shards")
        return out, str(index)
    if binf.is_file():
        return _read_torch_bin(binf), str(binf)
    raise FileNotFoundError(
        f"{p}: has {HF_CONFIG} but no weights: expected {HF_SAFETENSORS}, "
        f"{HF_SAFETENSORS_INDEX} or {HF_TORCH_BIN}")


def _read_torch_bin(f: Path) -> dict:
    try:
        import torch
    except ImportError as e:
        raise ImportError(f"{f}: reading pytorch_model.bin needs the 'torch' package, which is "
                          f"not installed ({e}); pip install torch, or use a directory with "
                          f"{HF_SAFETENSORS} (read without torch)") from None
    try:
        state = torch.load(f, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle/zip errors differ between torch versions
        raise PretrainedFormatError(f"{f}: cannot read the PyTorch file ({type(e).__name__}: "
                                    f"{e}); truncated or corrupt?") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise PretrainedFormatError(f"{f}: expected a state dict, got {type(state).__name__}")
    out = {}
    for k, v in state.items():
        if not hasattr(v, "detach"):
            raise PretrainedFormatError(f"{f}: entry {k!r} is not a tensor")
        v = v.detach().cpu()
        if v.is_floating_point() and v.dtype not in (torch.float32, torch.float64):
            v = v.float()  # float16 / bfloat16 have no (or no exact) NumPy counterpart
        out[k] = v.numpy()
    return out


def _split_hf_names(weights: dict, source: str, config):
    """(minigpt state dict, lm_head or None, heads) from HuggingFace names."""
    state, heads, lm_head = {}, {}, None
    for name, arr in weights.items():
        key = name[len("transformer."):] if name.startswith("transformer.") else name
        if key == "lm_head.weight":
            lm_head = arr
        elif key.startswith(HEAD_PREFIXES):
            heads[key] = np.array(arr, dtype=np.dtype(config.dtype))
        elif key == "position_ids" or re.fullmatch(r"h\.\d+\.attn\.(bias|masked_bias)", key):
            continue  # causal-mask / position buffers older transformers saved with the weights
        elif key in state:
            raise PretrainedFormatError(f"{source}: {key!r} appears twice (with and without "
                                        f"the 'transformer.' prefix)")
        else:
            state[key] = arr
    return state, lm_head, heads


def _build(model_class, config, weights: dict, source: str, directory: Path):
    state, lm_head, heads = _split_hf_names(weights, source, config)
    if "tokens_embed.weight" not in state and lm_head is not None:
        state["tokens_embed.weight"] = lm_head  # OpenAIGPTDoubleHeadsModel saves only lm_head
    elif lm_head is not None:
        te = state["tokens_embed.weight"]
        if lm_head.shape != te.shape or not np.array_equal(lm_head, te):
            raise PretrainedFormatError(
                f"{source}: lm_head.weight {tuple(lm_head.shape)} differs from "
                f"tokens_embed.weight {tuple(te.shape)}; GPT-1 ties them and minigpt cannot "
                f"hold an untied output layer")
    te = state.get("tokens_embed.weight")
    if te is not None and te.ndim == 2 and te.shape[0] != config.vocab_size:
        raise PretrainedFormatError(
            f"{source}: tokens_embed.weight has {te.shape[0]} rows but "
            f"{directory / HF_CONFIG} says vocab_size {config.vocab_size}")
    found = {k: (None, tuple(np.shape(v))) for k, v in state.items()}
    _check_weights(config, found, source)
    model = model_class(config)
    _load_into(model, state, source)
    model.pretrained_heads = heads
    return model


def _check_weights(config, found: dict, source) -> None:
    """The names and shapes of the weights against the config (GPTConfig.check_weights),
    before the model is built: a config.json claiming n_embd 65536 beside small weights is an
    error, not an allocation. The dtype is checked per array by _load_into (floats only)."""
    try:
        config.check_weights(found, source, dtype=False)
    except ValueError as e:
        raise PretrainedFormatError(str(e)) from None


def _load_into(model, state: dict, source: str) -> None:
    """Copy the (name- and shape-checked: _check_weights) arrays into the model, refusing
    non-float dtypes and non-finite values."""
    for k in dict(model.named_parameters()):
        a = np.asarray(state[k])
        if a.dtype.kind != "f":
            raise PretrainedFormatError(f"{source}: {k} has dtype {a.dtype}, expected floats")
        if not np.isfinite(a).all():
            raise PretrainedFormatError(f"{source}: {k} holds NaN or infinite values")
    model.load_state_dict(state)


def _load_minigpt(model_class, p: Path, d: dict, dtype: str):
    cfg = {k: v for k, v in d.items() if k not in ("format", "version")}
    try:
        config = model_class.config_class.from_dict({**cfg, "dtype": dtype})
    except (TypeError, ValueError) as e:
        raise PretrainedFormatError(f"{p / HF_CONFIG}: {e}") from None
    weights, source = _read_hf_weights(p)
    return _build(model_class, config, weights, source, p)


# ---- OpenAI's original release ------------------------------------------------------------

def _shard_files(p: Path) -> list[Path]:
    found = {}
    for f in p.glob("params_*.npy"):
        m = re.fullmatch(r"params_(\d+)\.npy", f.name)
        if m:
            found[int(m.group(1))] = f
    if not found:
        raise FileNotFoundError(f"{p}: has {OPENAI_SHAPES} but no params_0.npy .. shards")
    gaps = [i for i in range(max(found) + 1) if i not in found]
    if gaps:
        raise FileNotFoundError(f"{p}: shard params_{gaps[0]}.npy is missing (found "
                                f"{len(found)} of params_0.npy .. params_{max(found)}.npy)")
    return [found[i] for i in range(len(found))]


def _npy_size(f: Path) -> int:
    """Number of values a .npy shard holds, from its header, checked against the file's size
    (so a header claiming 10^12 values in a small file is refused before np.load)."""
    try:
        with open(f, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                    else np.lib.format.read_array_header_2_0)
            shape, _, dtype = read(fh, max_header_size=10_000)
            start = fh.tell()
    except Exception as e:  # ValueError / EOFError / OSError / SyntaxError on a damaged header
        raise PretrainedFormatError(f"{f}: cannot read the .npy shard ({type(e).__name__}: "
                                    f"{cut(str(e))}); truncated or corrupt?") from None
    if dtype.kind != "f":
        raise PretrainedFormatError(f"{f}: dtype {dtype}, expected float32")
    count = math.prod(shape)
    if start + count * dtype.itemsize != f.stat().st_size:
        raise PretrainedFormatError(f"{f}: cannot read the .npy shard: its header describes "
                                    f"{cut(count)} values of {dtype}, but the file has "
                                    f"{f.stat().st_size:,} bytes (truncated or corrupt?)")
    return count


def _load_openai(model_class, p: Path, n_head: int, dtype: str):
    shapes_file = p / OPENAI_SHAPES
    shapes = _read_json(shapes_file)
    if not isinstance(shapes, list) or not all(
            isinstance(s, list) and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                                        for n in s) for s in shapes):
        raise PretrainedFormatError(f"{shapes_file}: expected a list of shapes (lists of "
                                    f"non-negative integers)")
    if len(shapes) < 14 or (len(shapes) - 2) % 12:
        raise PretrainedFormatError(
            f"{shapes_file}: {len(shapes)} arrays; GPT-1's layout has 2 + 12 per layer "
            f"(146 for 12 layers)")
    n_layer = (len(shapes) - 2) // 12
    if len(shapes[0]) != 2 or len(shapes[1]) != 2 or shapes[0][1] != shapes[1][1]:
        raise PretrainedFormatError(
            f"{shapes_file}: the first two arrays must be the position embedding (n_ctx, C) "
            f"and the token embedding (V, C); got {cut(shapes[0])} and {cut(shapes[1])}")
    n_ctx, C = shapes[0]
    vocab = shapes[1][0]
    try:  # the config's ranges and ceilings, before anything is allocated from the sizes
        config = model_class.config_class(vocab_size=vocab, n_ctx=n_ctx, n_layer=n_layer,
                                          n_embd=C, n_head=n_head, dtype=dtype)
    except ValueError as e:
        raise PretrainedFormatError(f"{shapes_file}: {e} (n_head is not stored in OpenAI's "
                                    f"files; pass n_head=)") from None
    names = ["positions_embed.weight", "tokens_embed.weight"]
    for layer in range(n_layer):
        for j, (name, shape_of) in enumerate(_OPENAI_LAYER):
            i = 2 + 12 * layer + j
            want = shape_of(C)
            got = tuple(shapes[i])
            if got != want and got != (1,) + want:
                raise PretrainedFormatError(
                    f"{shapes_file}: array {i} (layer {layer} {name}) has shape {cut(list(got))}, "
                    f"expected {[1, *want] if len(want) == 2 else list(want)} for n_embd={C}")
            names.append(f"h.{layer}.{name}")
    sizes = [math.prod(s) for s in shapes]
    total = sum(sizes)
    files = _shard_files(p)
    held = sum(_npy_size(f) for f in files)   # from the shards' headers (checked against sizes)
    if held != total:
        raise PretrainedFormatError(
            f"{p}: the {len(files)} shards (params_0.npy .. {files[-1].name}) hold {held:,} "
            f"values but {shapes_file} describes {total:,}: a shard is missing or truncated, "
            f"or the shapes file does not belong to these shards")
    flat = np.empty(total, dtype=np.float32)
    filled = 0
    for f in files:
        try:
            a = np.load(f, allow_pickle=False)
        except Exception as e:  # ValueError / EOFError / OSError on a truncated file
            raise PretrainedFormatError(f"{f}: cannot read the .npy shard ({type(e).__name__}: "
                                        f"{e}); truncated or corrupt?") from None
        if a.dtype.kind != "f":
            raise PretrainedFormatError(f"{f}: dtype {a.dtype}, expected float32")
        if filled + a.size > total:
            raise PretrainedFormatError(
                f"{f}: the shards hold more values than {shapes_file} describes ({total}); "
                f"the shapes file does not belong to these shards")
        flat[filled:filled + a.size] = a.ravel()
        filled += a.size
    if filled != total:
        raise PretrainedFormatError(
            f"{files[-1].parent}: the {len(files)} shards (params_0.npy .. "
            f"{files[-1].name}) hold {filled} values but {shapes_file} describes {total}: "
            f"a shard is missing or truncated")
    if not np.isfinite(flat).all():
        raise PretrainedFormatError(f"{p}: the params_*.npy shards hold NaN or infinite values")
    state, offset = {}, 0
    for name, shape, size in zip(names, shapes, sizes):
        arr = flat[offset:offset + size].reshape(shape)
        state[name] = arr[0] if len(shape) == 3 else arr  # squeeze the width-1 conv axis
        offset += size
    model = model_class(config)
    _load_into(model, state, str(shapes_file))
    model.pretrained_heads = {}
    return model


# ================================================================================= saving

def config_dict(config, architecture: str = ARCH_LM) -> dict:
    """The HuggingFace openai-gpt config.json for `config`."""
    return {
        "architectures": [architecture],
        "model_type": MODEL_TYPE,
        "afn": "gelu",  # openai-gpt's "gelu" is the tanh form (see the module docstring)
        "vocab_size": int(config.vocab_size),
        "n_positions": int(config.n_ctx),
        "n_embd": int(config.n_embd),
        "n_layer": int(config.n_layer),
        "n_head": int(config.n_head),
        "embd_pdrop": float(config.embd_pdrop),
        "attn_pdrop": float(config.attn_pdrop),
        "resid_pdrop": float(config.resid_pdrop),
        "layer_norm_epsilon": float(config.layer_norm_epsilon),
        "initializer_range": float(config.initializer_range),
        "summary_type": "cls_index",
        "summary_use_proj": True,
        "summary_activation": None,
        "summary_proj_to_labels": True,
        "summary_first_dropout": 0.1,
        "tie_word_embeddings": True,
        "dtype": "float32",
    }


def save_pretrained(model, path, tokenizer=None, *, include_heads: bool = False) -> Path:
    """Write `path/config.json` + `path/model.safetensors` for transformers' openai-gpt.

    The weights are stored in float32 under `transformer.<name>` with no `lm_head.weight`,
    exactly what `OpenAIGPTLMHeadModel.save_pretrained` writes, so
    `OpenAIGPTLMHeadModel.from_pretrained(path)` reports no missing or unexpected keys.
    tokenizer: optional; its vocab.json + merges.txt (+ minigpt's tokenizer_config.json) are
    written beside the weights, so `minigpt sample --ckpt path` works.
    include_heads: also write `model.pretrained_heads`'s multiple-choice head and declare the
    architecture OpenAIGPTDoubleHeadsModel.
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise FileExistsError(f"{p} exists and is not a directory")
    p.mkdir(parents=True, exist_ok=True)
    arch = ARCH_LM
    tensors = {f"transformer.{name}": to_numpy(arr).astype(np.float32)
               for name, arr in model.state_dict().items()}
    if include_heads:
        heads = getattr(model, "pretrained_heads", None) or {}
        mc = {k: v for k, v in heads.items() if k.startswith("multiple_choice_head.")}
        if not mc:
            raise ValueError("save_pretrained(include_heads=True): the model has no "
                             "multiple_choice_head arrays in model.pretrained_heads")
        tensors.update({k: to_numpy(v).astype(np.float32) for k, v in mc.items()})
        arch = ARCH_DOUBLE
    cfg = config_dict(model.config, arch)
    tmp = p / f".{HF_CONFIG}.tmp"
    tmp.write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
    tmp.replace(p / HF_CONFIG)
    safetensors.save_file(tensors, p / HF_SAFETENSORS, metadata={"format": "pt"})
    if tokenizer is not None:
        tokenizer.save(p)
    return p
