"""GPT-1's input transformations: examples -> token sequences.

The five input transformations (the paper's Figure 1; `s`, `$`, `e` are the special tokens
start `_start_`, delimiter `_delimiter_` and extract `_classify_`):

    classify   s text e                        the head reads h at e
    entail     s premise $ hypothesis e        the head reads h at e
    similar    s a $ b e   and   s b $ a e     both through the model; h at the two e summed
    choice     s context $ answer_k e          one sequence per choice k; a score each
    tag        s w_1 ... w_n $ w_1 ... w_n     a label per word, on its first sub-token in the
                                               second copy (which has seen the whole sentence)

Truncation (as GPT-1's release did it: keep each segment's first tokens): a single text keeps
at most n_ctx - 2 tokens; each segment of a two-segment input (premise/hypothesis, a/b,
context/answer) keeps at most n_ctx // 2 - 2 (the release's multiple-choice rule); a tagged
sentence keeps the words whose tokens fit twice in n_ctx - 2. Every truncation is counted and the
counts are printed (`Truncation.report`), never silent.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from ..checks import short_list
from .examples import SPECIAL_TOKENS, TASKS, Example, TaskDataError

__all__ = ["add_special_tokens", "special_ids", "Truncation", "Encoded", "TaskEncoder"]


# ----------------------------------------------------------------------------- special tokens

def add_special_tokens(tokenizer) -> dict:
    """Give the tokenizer GPT-1's start/delimiter/extract tokens (kept if already present);
    returns their ids. The model's embedding must then grow to `tokenizer.vocab_size` rows."""
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
    return special_ids(tokenizer)


def special_ids(tokenizer) -> dict:
    try:
        start, delim, extract = (tokenizer.token_to_id(t) for t in SPECIAL_TOKENS)
    except KeyError:
        raise ValueError(f"the tokenizer has no fine-tuning special tokens {SPECIAL_TOKENS}; "
                         "call minigpt.tasks.add_special_tokens(tokenizer) first") from None
    return {"start": start, "delim": delim, "extract": extract}


# ----------------------------------------------------------------------------- transformations

class Truncation:
    """Counts of truncated segments, per segment name, so warnings are visible and exact."""

    def __init__(self):
        self.examples = 0
        self.truncated_examples = 0
        self.segments = Counter()      # segment name -> number truncated
        self.limits = {}               # segment name -> token limit
        self._current = False

    def start_example(self):
        self.examples += 1
        self._current = False

    def mark(self, name: str, limit: int) -> None:
        """Count one truncated segment `name` (limit: its token budget) of the current example."""
        self.limits[name] = limit
        self.segments[name] += 1
        if not self._current:
            self.truncated_examples += 1
            self._current = True

    def cut(self, ids, limit: int, name: str) -> list:
        """ids[:limit] (GPT-1 keeps a segment's first tokens), counting it when it was cut."""
        self.limits[name] = limit
        if len(ids) > limit:
            self.mark(name, limit)
            return list(ids[:limit])
        return list(ids)

    def report(self, what: str = "examples") -> str | None:
        """A warning line, or None when nothing was truncated."""
        if not self.truncated_examples:
            return None
        parts = ", ".join(f"{name} > {self.limits[name]} tokens: {n}"
                          for name, n in sorted(self.segments.items()))
        return (f"warning: truncated {self.truncated_examples} of {self.examples} {what} to fit "
                f"the context ({parts})")


@dataclass
class Encoded:
    """One example as token sequences: one for classify/entail/tag, 2 for similar, K for choice.

    label: class index (classify/entail/similar/choice), or for tag a list of word-level tag ids
    of the words kept; first: for tag, the position of each kept word's first sub-token.
    """
    seqs: list
    label: object = None
    first: list | None = None


class TaskEncoder:
    """Turns Examples into token sequences with GPT-1's input transformations."""

    def __init__(self, task: str, tokenizer, n_ctx: int, labels=None):
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
        if n_ctx < 6:
            raise ValueError(f"n_ctx={n_ctx} is too small for the fine-tuning transformations")
        self.task, self.tokenizer, self.n_ctx = task, tokenizer, n_ctx
        sp = special_ids(tokenizer)
        self.start, self.delim, self.extract = sp["start"], sp["delim"], sp["extract"]
        self.labels = list(labels) if labels is not None else None
        self.label_index = {lab: i for i, lab in enumerate(self.labels or [])}
        self._space = None
        if getattr(tokenizer, "type_name", "") == "char":  # words are joined by a space token
            self._space = tokenizer.encode(" ")

    # -- the transformations on token ids ------------------------------------------------
    def single(self, text_ids, trunc: Truncation):
        """classify: [start] text [extract]."""
        ### BEGIN SOLUTION
        x = trunc.cut(text_ids, self.n_ctx - 2, "text")
        return [self.start] + x + [self.extract]
        ### END SOLUTION

    def pair(self, a_ids, b_ids, trunc: Truncation, names=("premise", "hypothesis")):
        """entail: [start] a [delim] b [extract]; each segment at most n_ctx // 2 - 2 tokens."""
        ### BEGIN SOLUTION
        m = self.n_ctx // 2 - 2
        a = trunc.cut(a_ids, m, names[0])
        b = trunc.cut(b_ids, m, names[1])
        return [self.start] + a + [self.delim] + b + [self.extract]
        ### END SOLUTION

    def both_orders(self, a_ids, b_ids, trunc: Truncation):
        """similar: [start] a [delim] b [extract] and [start] b [delim] a [extract]."""
        ### BEGIN SOLUTION
        m = self.n_ctx // 2 - 2
        a = trunc.cut(a_ids, m, "text")
        b = trunc.cut(b_ids, m, "text2")
        return [[self.start] + a + [self.delim] + b + [self.extract],
                [self.start] + b + [self.delim] + a + [self.extract]]
        ### END SOLUTION

    def choices(self, ctx_ids, answers_ids, trunc: Truncation):
        """choice: [start] context [delim] answer_k [extract] for every k."""
        ### BEGIN SOLUTION
        m = self.n_ctx // 2 - 2
        c = trunc.cut(ctx_ids, m, "context")
        return [[self.start] + c + [self.delim] + trunc.cut(a, m, "answer") + [self.extract]
                for a in answers_ids]
        ### END SOLUTION

    def words(self, words, trunc: Truncation):
        """tag: [start] w_1 ... w_n [delim] w_1 ... w_n; returns (ids, the position of each kept
        word's first sub-token in the second copy, where its label goes).

        GPT-1 is causal: read once, a word's first sub-token sees neither the rest of the word
        ("hor" of "horatio") nor anything after it. Read twice, every token of the second copy
        has already seen the whole sentence, so the per-token head gets both sides of each word
        (the same idea as the similarity transformation's two orderings: shape the input, keep
        the model). Each word is encoded on its own (BPE works word by word anyway); a
        character tokenizer gets a space token between words (never a labelled position).
        Words that do not fit twice in n_ctx - 2 tokens are dropped (counted as truncation)."""
        ### BEGIN SOLUTION
        pieces, n = [], 0
        for i, w in enumerate(words):
            piece = self.tokenizer.encode(w) or [self.tokenizer.unk_id]
            sep = self._space if (self._space and i) else []
            if 2 * (n + len(sep) + len(piece)) + 2 > self.n_ctx:
                trunc.mark("words", (self.n_ctx - 2) // 2)
                break
            pieces.append((sep, piece))
            n += len(sep) + len(piece)
        once = [t for sep, piece in pieces for t in sep + piece]
        ids = [self.start] + once + [self.delim]
        first = []
        for sep, piece in pieces:
            ids.extend(sep)
            first.append(len(ids))
            ids.extend(piece)
        return ids, first
        ### END SOLUTION

    # -- examples -> Encoded ---------------------------------------------------------------
    def label_id(self, ex: Example):
        if ex.label is None:
            return None
        if self.task == "choice":
            return int(ex.label)
        if self.task == "tag":
            try:
                return [self.label_index[t] for t in ex.label]
            except KeyError as e:
                raise TaskDataError(f"{ex.where or 'example'}: tag {e.args[0]!r} is not one of "
                                    f"the training tags {short_list(self.labels, quote=True)}"
                                    ) from None
        try:
            return self.label_index[ex.label]
        except KeyError:
            raise TaskDataError(f"{ex.where or 'example'}: label {ex.label!r} is not one of the "
                                f"training labels {short_list(self.labels, quote=True)}"
                                ) from None

    def encode(self, examples, trunc: Truncation | None = None) -> list:
        trunc = trunc if trunc is not None else Truncation()
        enc = self.tokenizer.encode
        out = []
        for ex in examples:
            trunc.start_example()
            label = self.label_id(ex)
            if self.task == "classify":
                out.append(Encoded([self.single(enc(ex.text), trunc)], label))
            elif self.task == "entail":
                out.append(Encoded([self.pair(enc(ex.text), enc(ex.text2), trunc)], label))
            elif self.task == "similar":
                out.append(Encoded(self.both_orders(enc(ex.text), enc(ex.text2), trunc), label))
            elif self.task == "choice":
                out.append(Encoded(self.choices(enc(ex.text), [enc(c) for c in ex.choices],
                                                trunc), label))
            else:
                ids, first = self.words(ex.words, trunc)
                if label is not None:
                    label = label[:len(first)]
                out.append(Encoded([ids], label, first))
        return out
