"""The examples every task is made of, the task names and the error a bad data file raises.

Tasks (GPT-1's Figure 1): classify, entail, similar, choice, tag. `SPECIAL_TOKENS` are GPT-1's
start, delimiter and extract tokens; `IGNORE_INDEX` marks positions left out of every loss.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from .metrics import bio_entities

__all__ = ["TASKS", "SPECIAL_TOKENS", "IGNORE_INDEX", "TaskDataError", "Example", "TaskData",
           "clean_text"]

TASKS = ("classify", "entail", "similar", "choice", "tag")
SPECIAL_TOKENS = ("_start_", "_delimiter_", "_classify_")  # GPT-1's start, delimiter, extract
IGNORE_INDEX = -100


class TaskDataError(ValueError):
    """A data file (or a built-in data set) cannot be used: names the file and line."""


# ----------------------------------------------------------------------------- examples

@dataclass
class Example:
    """One labelled (or, for prediction, unlabelled) example of any task.

    classify: text.  entail: text (premise), text2 (hypothesis).  similar: text, text2.
    choice: text (context), choices (the candidate answers), label = index of the right one.
    tag: words, label = tuple of one BIO tag per word.  where: "file:line" for messages.
    """
    text: str = ""
    text2: str = ""
    choices: tuple = ()
    words: tuple = ()
    label: object = None
    where: str = ""


@dataclass
class TaskData:
    """A task's train and test examples and its label names (tag names for tagging)."""
    name: str
    task: str
    train: list
    test: list
    labels: list            # class names; for choice ["1".."K"]; for tag the tag set, "O" first
    source: str = ""
    notes: dict = field(default_factory=dict)

    def counts(self) -> str:
        """One line per split with its size and label distribution."""
        lines = []
        for split in ("train", "test"):
            exs = getattr(self, split)
            if self.task == "tag":
                n_ent = sum(len(bio_entities(e.label)) for e in exs)
                n_with = sum(1 for e in exs if bio_entities(e.label))
                dist = f"{n_ent} entities; {n_with} with a name, {len(exs) - n_with} without"
            elif self.task == "choice":
                k = len(exs[0].choices) if exs else 0
                dist = f"{k} choices each; answer positions " + ", ".join(
                    f"{i + 1}: {c}" for i, c in sorted(Counter(e.label for e in exs).items()))
            else:
                c = Counter(e.label for e in exs)
                dist = ", ".join(f"{lab}: {c[lab]}" for lab in self.labels)
            lines.append(f"{self.name} {split}: {len(exs)} examples ({dist})")
        return "\n".join(lines)


def clean_text(s: str) -> str:
    """Whitespace runs (newlines included) collapsed to single spaces, ends stripped."""
    return " ".join(str(s).split())
