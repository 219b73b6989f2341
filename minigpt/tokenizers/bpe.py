"""GPT-1's tokenizer: byte-pair encoding over characters, words ending in `</w>`.

Text -> normalize.py (clean, lowercase, strip accents; words) -> BPE on each word (`_bpe`: the
lowest-ranked adjacent pair first) -> ids. It trains from text (merges learned by bpe_train.py)
and loads the released GPT-1 files (pretrained.py), giving the same ids as `transformers`.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

from .. import dispatch
from ..fileio import atomic_write_text
from ..untrusted import cut
from . import bpe_train, bpe_train_fast  # noqa: F401  (they register the merge learners)
from .base import Tokenizer
from .bpe_train import END_OF_WORD
from .files import (CONFIG_FILE, MERGES_FILE, MERGES_HEADER, UNK_TOKEN, VOCAB_FILE, bpe_options,
                    read_config, read_merges, read_vocab)
from .normalize import join_words, normalize_text, pre_tokenize
from .pretrained import pretrained_files

__all__ = ["BPETokenizer"]


class BPETokenizer(Tokenizer):
    """GPT-1's byte-pair encoding over characters, with `</w>` marking the end of a word.

    Pipeline: `normalize_text` (clean, lowercase, strip accents) -> `pre_tokenize` (words) ->
    BPE on each word -> ids. A word's first symbols are its characters, the last one carrying
    `</w>` ("cat" -> c, a, t</w>); merges then fuse adjacent symbols.

    Which `transformers` path this matches: `transformers.OpenAIGPTTokenizer` as installed
    (5.x), which is built on the `tokenizers` library with BertNormalizer(lowercase=True) and
    BertPreTokenizer; the same rules as the BERT BasicTokenizer fallback that older releases
    used when ftfy or spaCy was missing (lowercase, strip accents, split on whitespace and
    punctuation; no ftfy, no `text_standardize`, no spaCy, newlines are plain whitespace).
    minigpt does NOT reproduce the original ftfy + spaCy path of OpenAI's release. Merges are
    applied as `tokenizers` does: repeatedly merge the leftmost occurrence of the
    lowest-ranked adjacent pair. tests/test_tokenizers.py checks the ids against
    OpenAIGPTTokenizer on generated text.

    Round trip: decode(encode(s)) == normalize(s) for every s whose characters the vocabulary
    knows, where normalize(s) is the normalised text's words joined by single spaces
    ("Hello, World!" -> "hello , world !"). Unknown characters become `<unk>` (id 0).

    Options: `lowercase=False` keeps case and accents (BertNormalizer's strip_accents follows
    lowercase). `keep_newlines=True` keeps each "\\n" as a word of its own (token "\\n</w>",
    like the original GPT-1 vocabulary's id 40477) instead of treating it as a space; it
    departs from transformers, so it is off by default.
    """

    type_name = "bpe"

    def __init__(self, vocab: dict[str, int], merges: Sequence[tuple[str, str]], *,
                 lowercase: bool = True, keep_newlines: bool = False,
                 unk_token: str = UNK_TOKEN, special_tokens: Iterable[str] = ()):
        if sorted(vocab.values()) != list(range(len(vocab))):
            raise ValueError(f"vocabulary ids must be exactly 0..{len(vocab) - 1}")
        super().__init__(vocab, unk_token, special_tokens)
        self.lowercase = bool(lowercase)
        self.keep_newlines = bool(keep_newlines)
        self._merges = [tuple(m) for m in merges]
        for rank, (a, b) in enumerate(self._merges):
            missing = [t for t in (a, b, a + b) if t not in vocab]
            if missing:
                raise ValueError(f"merge {rank} ({a!r}, {b!r}): {missing[0]!r} is not in the "
                                 f"vocabulary")
        # a pair listed twice takes its last rank, as in `tokenizers` and OpenAI's code
        self._ranks = {pair: rank for rank, pair in enumerate(self._merges)}
        self._cache: dict[str, tuple[int, ...]] = {}

    @property
    def merges(self) -> list[tuple[str, str]]:
        return list(self._merges)

    def _options(self) -> dict:
        return {"unk_token": self.unk_token, "lowercase": self.lowercase,
                "keep_newlines": self.keep_newlines}

    # -- text -> words
    def normalize_text(self, text: str) -> str:
        """Clean, pad CJK, strip accents and lowercase (normalize.py's steps 1-3)."""
        return normalize_text(text, self.lowercase, self.keep_newlines)

    def pre_tokenize(self, text: str) -> list[str]:
        """The words BPE runs on, in order (normalisation included)."""
        return pre_tokenize(text, self.lowercase, self.keep_newlines)

    def normalize(self, text: str) -> str:
        """What decode(encode(text)) gives back when every character is in the vocabulary."""
        return join_words(self.pre_tokenize(text))

    # -- BPE
    def _bpe(self, word: str) -> list[str]:
        """Symbols of one word after the merges: always the lowest-ranked adjacent pair first,
        leftmost on ties, one merge at a time (`tokenizers`' order)."""
        ### BEGIN SOLUTION
        symbols = list(word[:-1]) + [word[-1] + END_OF_WORD]
        ranks = self._ranks
        while len(symbols) > 1:
            best_rank, best_i = None, -1
            for i in range(len(symbols) - 1):
                r = ranks.get((symbols[i], symbols[i + 1]))
                if r is not None and (best_rank is None or r < best_rank):
                    best_rank, best_i = r, i
            if best_rank is None:
                break
            symbols[best_i:best_i + 2] = [symbols[best_i] + symbols[best_i + 1]]
        return symbols
        ### END SOLUTION

    def _encode_word(self, word: str) -> tuple[int, ...]:
        ids = self._cache.get(word)
        if ids is None:
            get, unk = self._base.get, self.unk_id
            ids = tuple(get(s, unk) for s in self._bpe(word))
            if len(self._cache) >= 200_000:  # bound memory on endless streams of new words
                self._cache.clear()
            self._cache[word] = ids
        return ids

    def tokenize(self, text: str) -> list[str]:
        """Token strings (e.g. ['hel', 'lo</w>']); unknown symbols shown as `<unk>`."""
        return [self._tokens[i] for i in self.encode(text)]

    def encode(self, text: str) -> list[int]:
        """Ids of `text`. The literal unknown token (`<unk>`, exact case) encodes to its id, as
        in `transformers`, which matches it before normalising; no other special token is ever
        produced from text, so user text cannot inject `_start_` or `_classify_`."""
        out: list[int] = []
        for i, piece in enumerate(text.split(self.unk_token)):
            if i:
                out.append(self.unk_id)
            for word in self.pre_tokenize(piece):
                out.extend(self._encode_word(word))
        return out

    def decode(self, ids, *, skip_special_tokens: bool = False) -> str:
        """Concatenate tokens; each `</w>` ends a word; words are joined by single spaces.

        Special tokens decode as words of their own. `<unk>` decodes as the text "<unk>"
        glued to its neighbours (the unknown character's word boundary is lost).
        """
        ids = self._check_ids(ids)
        special = set(self.special_ids)
        words, cur = [], []
        for i in ids:
            tok = self._tokens[i]
            if i in special:
                if cur:
                    words.append("".join(cur))
                    cur = []
                if not skip_special_tokens:
                    words.append(tok)
            elif tok.endswith(END_OF_WORD):
                cur.append(tok[:-len(END_OF_WORD)])
                words.append("".join(cur))
                cur = []
            else:
                cur.append(tok)
        if cur:
            words.append("".join(cur))
        return join_words(words)

    # -- training
    @classmethod
    def train(cls, text: str, vocab_size: int | None = None, *, num_merges: int | None = None,
              lowercase: bool = True, keep_newlines: bool = False, min_frequency: int = 2,
              special_tokens: Iterable[str] = ()) -> "BPETokenizer":
        """Learn merges from `text`, GPT-1 style.

        Vocabulary: `<unk>` (id 0), then every character seen in two forms, inside a word
        ("e") and ending one ("e</w>"), sorted; then one token per merge in the order learned.
        Give exactly one of `vocab_size` (base vocabulary size to reach, special tokens not
        counted) or `num_merges`. Training stops early when no pair occurs `min_frequency`
        times. Each step merges the most frequent adjacent pair, counted over words weighted
        by their frequency; ties go to the smallest (left, right) pair in string order, so
        the result never depends on hashing or dictionary order.

        The merges are learned by bpe_train.py's `learn_merges` (the reference: recount every
        pair after each merge) or, in ops mode "auto"/"fast", by bpe_train_fast.py (counts
        updated incrementally, a heap for the best pair: seconds for thousands of merges on a
        megabyte of text); both give the same merges.
        """
        if (vocab_size is None) == (num_merges is None):
            raise ValueError("give exactly one of vocab_size or num_merges")
        probe = cls({UNK_TOKEN: 0}, [], lowercase=lowercase, keep_newlines=keep_newlines)
        word_counts = Counter(probe.pre_tokenize(text))
        if not word_counts:
            raise ValueError("cannot train a tokenizer on empty text (no words after "
                             "normalisation)")
        chars = sorted({c for w in word_counts for c in w})
        base = sorted(set(chars) | {c + END_OF_WORD for c in chars})
        vocab = {UNK_TOKEN: 0, **{t: i + 1 for i, t in enumerate(base)}}
        if vocab_size is not None:
            if vocab_size < len(vocab):
                raise ValueError(f"vocab_size={vocab_size} is smaller than the {len(vocab)} "
                                 f"base symbols (<unk> + 2 per character) of this text")
            budget = None
        else:
            if num_merges < 0:
                raise ValueError(f"num_merges must be >= 0, got {num_merges}")
            budget = num_merges
        learn = dispatch.choose("bpe_merges")  # bpe_train.learn_merges or bpe_train_fast's
        merges = learn(word_counts, vocab, vocab_size, budget, max(1, min_frequency))
        return cls(vocab, merges, lowercase=lowercase, keep_newlines=keep_newlines,
                   special_tokens=special_tokens)

    # -- files
    def _save_files(self, directory: Path) -> None:
        lines = [MERGES_HEADER] + [f"{a} {b}" for a, b in self._merges]
        atomic_write_text(directory / MERGES_FILE, "\n".join(lines) + "\n")

    @classmethod
    def load(cls, directory) -> "BPETokenizer":
        """Load what `save` wrote (vocab.json, merges.txt, tokenizer_config.json)."""
        directory = Path(directory)
        config = read_config(directory)
        if config["type"] != cls.type_name:
            raise ValueError(f"{directory / CONFIG_FILE}: type is {cut(config['type'])}, not 'bpe'")
        return cls._from_files(directory / VOCAB_FILE, directory / MERGES_FILE,
                               header_always=False, **bpe_options(config))

    @classmethod
    def from_pretrained(cls, path, *, special_tokens: Iterable[str] = (),
                        keep_newlines: bool | None = None) -> "BPETokenizer":
        """GPT-1's tokenizer from a HuggingFace directory or OpenAI's original files.

        `path` is a directory holding either `vocab.json` + `merges.txt` (HuggingFace
        `openai-gpt`, or a minigpt save) or `encoder_bpe_40000.json` + `vocab_40000.bpe`
        (OpenAI's finetune-transformer-lm release; the .bpe file's first line is a header).
        A minigpt tokenizer_config.json beside them supplies options and special tokens;
        anything else there (HuggingFace's own tokenizer_config.json) is ignored.
        Pass special_tokens=GPT1_SPECIAL_TOKENS for fine-tuning: they get ids 40478.. .
        """
        vocab_path, merges_path, header_always, options = pretrained_files(Path(path))
        if keep_newlines is not None:
            options["keep_newlines"] = keep_newlines
        options["special_tokens"] = list(options.get("special_tokens", [])) + list(special_tokens)
        return cls._from_files(vocab_path, merges_path, header_always=header_always, **options)

    @classmethod
    def _from_files(cls, vocab_path: Path, merges_path: Path, *, header_always: bool,
                    unk_token: str = UNK_TOKEN, **options) -> "BPETokenizer":
        vocab = read_vocab(vocab_path, unk_token)
        merges = read_merges(merges_path, header_always)
        for lineno, (a, b) in merges:
            missing = [t for t in (a, b, a + b) if t not in vocab]
            if missing:
                raise ValueError(f"{merges_path}:{lineno}: merge {cut(a + ' ' + b)} uses "
                                 f"{cut(missing[0])}, which is not in {vocab_path.name}")
        return cls(vocab, [m for _, m in merges], unk_token=unk_token, **options)
