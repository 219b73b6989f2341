"""Where GPT-1's released tokenizer files are: a HuggingFace folder or OpenAI's original release.

    vocab.json + merges.txt                       HuggingFace `openai-gpt` (or a minigpt save)
    encoder_bpe_40000.json + vocab_40000.bpe      OpenAI's finetune-transformer-lm release (the
                                                  .bpe file's first line is a header)
A minigpt tokenizer_config.json beside them supplies options and special tokens; anything else
there (HuggingFace's own tokenizer_config.json) is ignored.
"""
from __future__ import annotations

from pathlib import Path

from ..untrusted import cut
from .files import (CONFIG_FILE, MAX_CONFIG_BYTES, MERGES_FILE, VOCAB_FILE, bpe_options,
                    check_config, read_json)

__all__ = ["GPT1_SPECIAL_TOKENS", "GPT1_VOCAB_SIZE", "OPENAI_ENCODER_FILE", "OPENAI_MERGES_FILE",
           "pretrained_files"]

GPT1_SPECIAL_TOKENS = ("_start_", "_delimiter_", "_classify_")
GPT1_VOCAB_SIZE = 40478
OPENAI_ENCODER_FILE = "encoder_bpe_40000.json"
OPENAI_MERGES_FILE = "vocab_40000.bpe"


def pretrained_files(directory: Path) -> tuple[Path, Path, bool, dict]:
    """(vocab file, merges file, whether the merges file always has a header line, the
    BPETokenizer options of a minigpt tokenizer_config.json there, else {})."""
    if not directory.is_dir():
        raise FileNotFoundError(f"tokenizer directory not found: {directory}")
    options: dict = {}
    config_path = directory / CONFIG_FILE
    if config_path.is_file():
        config = read_json(config_path, max_bytes=MAX_CONFIG_BYTES)
        # ours has a "type"; HuggingFace's own tokenizer_config.json has none and is ignored
        if isinstance(config, dict) and "type" in config:
            config = check_config(config, config_path)
            if config["type"] != "bpe":
                raise ValueError(f"{config_path}: this directory holds a {cut(config['type'])} "
                                 f"tokenizer, not BPE; use load_tokenizer()")
            options = bpe_options(config)
    if (directory / VOCAB_FILE).is_file() or (directory / MERGES_FILE).is_file():
        return directory / VOCAB_FILE, directory / MERGES_FILE, False, options
    openai = (directory / OPENAI_ENCODER_FILE, directory / OPENAI_MERGES_FILE)
    if openai[0].is_file() or openai[1].is_file():
        return openai[0], openai[1], True, options
    raise FileNotFoundError(
        f"{directory}: no tokenizer files: expected {VOCAB_FILE} + {MERGES_FILE} "
        f"(HuggingFace) or {OPENAI_ENCODER_FILE} + {OPENAI_MERGES_FILE} (OpenAI)")
