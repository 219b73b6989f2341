"""The documented ranges of numeric arguments, and the short-list rule for error messages.

One copy of each rule, used twice: the command line checks every argument at parse time
(`minigpt.cli` turns these rules into argparse types, so `--steps 0` is "argument --steps: must
be an integer >= 1, got 0"), and the library checks the same values where an API user passes
them (TrainConfig, generate(), ...).

    positive_int(0, "steps")  ->  ValueError: steps must be an integer >= 1, got 0
    short_list(range(1800))   ->  "0, 1, 2, 3, 4 and 1,795 more"
"""
from __future__ import annotations

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


def check_fields(obj, rules: dict) -> None:
    """Apply `rules` ({field: Rule}) to the attributes of a config object (a field that is
    None is an option left unset, and is skipped)."""
    for field, rule in rules.items():
        value = getattr(obj, field)
        if value is not None:
            rule(value, field)


def short_list(items, limit: int = 5, quote: bool = False) -> str:
    """At most `limit` items joined by commas, then "and N more": error messages stay short
    however many labels or values there are."""
    items = list(items)
    shown = [repr(x) if quote else str(x) for x in items[:limit]]
    text = ", ".join(shown)
    if len(items) > limit:
        text += f" and {len(items) - limit:,} more"
    return text
