"""Tokenizers: characters, and GPT-1's byte-pair encoding (BPE).

Two tokenizers share one small interface (`encode`, `decode`, `vocab_size`, `token_to_id`,
`id_to_token`, `add_special_tokens`, `save`), and `load_tokenizer(directory)` brings back
whichever one a directory holds:

* `CharTokenizer`: one id per character. The demo's tokenizer: tiny vocabulary, exact round
  trip, and a loss in nats per character that needs no conversion.
* `BPETokenizer`: GPT-1's subword tokenizer. Words end with `</w>`, merges are learned by
  pair frequency, text is lowercased, and `<unk>` is id 0. It trains from text and it loads
  the released GPT-1 files (`from_pretrained`), giving the same ids as `transformers`.

Files a tokenizer writes with `save(directory)`:

    vocab.json              base vocabulary, token -> id (HuggingFace layout)
    merges.txt              BPE only: "#version: 0.2", then one merge "left right" per line
    tokenizer_config.json   {"type": "char" | "bpe", "special_tokens": [...], "options": {...}}

Special tokens (GPT-1's fine-tuning `_start_`, `_delimiter_`, `_classify_`) are not in
vocab.json: they are listed in tokenizer_config.json and appended after the base vocabulary
when loading, which keeps vocab.json + merges.txt loadable by `transformers` unchanged.
`encode` never produces a special token from plain text (a user's text that happens to
contain "_start_" stays text); code that builds fine-tuning inputs asks for their ids with
`token_to_id`.
"""
from pathlib import Path

from ..untrusted import cut
from .base import Tokenizer
from .bpe import BPETokenizer
from .bpe_train import END_OF_WORD, learn_merges, merge_symbols, pair_counts
from .char import CharTokenizer
from .files import CONFIG_FILE, MERGES_FILE, UNK_TOKEN, VOCAB_FILE, read_config
from .pretrained import GPT1_SPECIAL_TOKENS, GPT1_VOCAB_SIZE

__all__ = ["Tokenizer", "CharTokenizer", "BPETokenizer", "load_tokenizer", "GPT1_SPECIAL_TOKENS",
           "GPT1_VOCAB_SIZE", "END_OF_WORD", "UNK_TOKEN", "CONFIG_FILE", "VOCAB_FILE",
           "MERGES_FILE", "pair_counts", "merge_symbols", "learn_merges"]


def load_tokenizer(directory):
    """Load the tokenizer saved in `directory`, whichever kind tokenizer_config.json names."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"tokenizer directory not found: {directory}")
    config = read_config(directory)
    kinds = {"char": CharTokenizer, "bpe": BPETokenizer}
    if config["type"] not in kinds:
        raise ValueError(f"{directory / CONFIG_FILE}: unknown tokenizer type {cut(config['type'])} "
                         f"(expected one of {sorted(kinds)})")
    return kinds[config["type"]].load(directory)
