"""The documented ranges of arguments, each setting's one definition, and the short-list rule.

One copy of each rule, used twice: the command line checks every argument at parse time
(`minigpt.cli` turns these rules into argparse types, so `--steps 0` is "argument --steps: must
be an integer >= 1, got 0"), and the library checks the same values where an API user passes
them (TrainConfig, generate(), ...).

A config field is declared once, with its rule and its help text, by `setting`:

    steps: int = setting(1000, positive_int, "optimizer updates")

`check_fields(config)` applies every field's rule (and its choices) and the command line's
options are generated from the same fields (minigpt/cli/options.py).

    positive_int(0, "steps")  ->  ValueError: steps must be an integer >= 1, got 0
    short_list(range(1800))   ->  "0, 1, 2, 3, 4 and 1,795 more"
"""
from __future__ import annotations

import dataclasses
import math
import numbers


class Rule:
    """A range an argument must lie in: `rule(value, name)` returns the value (as int or
    float) or raises ValueError naming the argument, the allowed range and the bad value."""

    def __init__(self, name: str, kind: type, expected: str, ok):
        self.__name__ = name
        self.kind = kind            # int or float: what the command line parses the text as
        self.expected = expected    # "an integer >= 1", "a number in (0, 1]", ...
        self._ok = ok

    def __call__(self, value, name: str | None = None):
        what = f"{name} must be" if name else "must be"
        if self.kind is int:
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise ValueError(f"{what} {self.expected}, got {value!r}")
            value = int(value)
        else:
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ValueError(f"{what} {self.expected}, got {value!r}")
            value = float(value)
            if not math.isfinite(value):
                raise ValueError(f"{what} {self.expected}, got {value}")
        if not self._ok(value):
            raise ValueError(f"{what} {self.expected}, got {value}")
        return value

    def optional(self, value, name: str | None = None):
        """The rule, with None allowed (an option left at its default)."""
        return None if value is None else self(value, name)

    def __repr__(self) -> str:
        return f"<rule {self.__name__}: {self.expected}>"


positive_int = Rule("positive_int", int, "an integer >= 1", lambda v: v >= 1)
nonneg_int = Rule("nonneg_int", int, "an integer >= 0", lambda v: v >= 0)
positive_float = Rule("positive_float", float, "a number > 0", lambda v: v > 0)
nonneg_float = Rule("nonneg_float", float, "a number >= 0", lambda v: v >= 0)
probability = Rule("probability", float, "a number in (0, 1]", lambda v: 0 < v <= 1)
# dropout rates, a share of the updates spent warming up
fraction = Rule("fraction", float, "a number in [0, 1)", lambda v: 0 <= v < 1)


def argparse_type(rule: Rule):
    """The rule as an argparse `type=`: parse the text as int or float, then check the range,
    so a bad value is a parse-time error such as `minigpt pretrain: error: argument --steps:
    must be an integer >= 1, got 0` (exit status 2)."""
    import argparse

    def convert(text):
        try:
            value = rule.kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {rule.expected}, got {text!r}") from None
        try:
            return rule(value)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    convert.__name__ = rule.__name__  # argparse names the type in some messages
    return convert


def setting(default, rule: Rule | None = None, help: str = "", *, choices=None,
            metavar: str | None = None, flag: str | None = None):
    """A config field declared once: its default, its range rule (None: any text, or a flag
    for a bool), the help text of its command-line option, and, for a choice among names,
    `choices`. `flag` renames the option (a bool that defaults to True is switched off by
    `--no-NAME`, or by `flag`). A dataclasses.field whose metadata check_fields and the
    command line read."""
    meta = {"rule": rule, "help": help, "choices": tuple(choices) if choices else None,
            "metavar": metavar, "flag": flag}
    return dataclasses.field(default=default, metadata=meta)


def check_fields(config) -> None:
    """Apply every field's rule and choices (declared with `setting`) to a config object: a
    ValueError naming the field and the allowed values. A field that is None is an option
    left unset, and is skipped."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if value is None:
            continue
        choices = f.metadata.get("choices")
        if choices and value not in choices:
            raise ValueError(f"unknown {f.name} {value!r}; choose one of {', '.join(choices)}")
        rule = f.metadata.get("rule")
        if rule is not None:
            rule(value, f.name)


def short_list(items, limit: int = 5, quote: bool = False) -> str:
    """At most `limit` items joined by commas, then "and N more": error messages stay short
    however many labels or values there are."""
    items = list(items)
    shown = [repr(x) if quote else str(x) for x in items[:limit]]
    text = ", ".join(shown)
    if len(items) > limit:
        text += f" and {len(items) - limit:,} more"
    return text
