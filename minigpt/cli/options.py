"""Command-line options generated from a config dataclass: each setting is defined once.

Every field a config declares with `minigpt.checks.setting` becomes one option:

    name     --batch-size for batch_size (a field's `flag` renames it)
    type     the field's range rule, checked at parse time (`argument --steps: must be an
             integer >= 1, got 0`, exit status 2); a field without a rule takes the text
    bool     a switch: --bpe-keep-case for a field that defaults to False; one that defaults
             to True is switched off by --no-NAME (or its `flag`, e.g. --no-pretrain)
    choices  the field's choices
    help     the field's help text and its default

An option that is not given parses as None, so a command knows what the user gave:
`given(args, TrainConfig)` is that dict, and the config's own defaults fill in the rest.
"""
from __future__ import annotations

import argparse
import dataclasses

from ..checks import argparse_type

__all__ = ["add_config_options", "given"]


def add_config_options(parser: argparse.ArgumentParser, config_class, *, only=None,
                       required=(), defaults=None) -> None:
    """Add one option per field of `config_class` (a dataclass of `setting` fields).

    only: the fields to add (default: all); required: fields the command cannot do without
    (no default shown); defaults: {field: value} shown as this command's default instead of
    the config's (the command then fills it in where the option is not given)."""
    defaults = defaults or {}
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    unknown = sorted((set(only or ()) | set(required) | set(defaults)) - set(fields))
    if unknown:
        raise ValueError(f"{config_class.__name__} has no field {', '.join(unknown)}")
    for name in only or fields:
        f = fields[name]
        meta, default = f.metadata, defaults.get(name, f.default)
        flag = meta.get("flag") or "--" + name.replace("_", "-")
        help_text = meta.get("help", "")
        if isinstance(f.default, bool):
            if f.default:  # a setting that is on unless switched off
                flag = meta.get("flag") or "--no-" + name.replace("_", "-")
                parser.add_argument(flag, dest=name, action="store_false", default=None,
                                    help=help_text)
            else:
                parser.add_argument(flag, dest=name, action="store_true", default=None,
                                    help=help_text)
            continue
        rule = meta.get("rule")
        if rule is None and any(t in str(f.type) for t in ("int", "float")):
            raise TypeError(f"{config_class.__name__}.{name} is a number without a range rule: "
                            "declare it with checks.setting(default, rule, help)")
        if default is not None and name not in required:
            help_text = f"{help_text} (default: {default})".lstrip()
        parser.add_argument(flag, dest=name, default=None, required=name in required,
                            type=argparse_type(rule) if rule is not None else str,
                            choices=meta.get("choices"), metavar=meta.get("metavar"),
                            help=help_text or None)


def given(args: argparse.Namespace, config_class) -> dict:
    """{field: value} of the config's options the user gave (those that parsed as not None)."""
    names = {f.name for f in dataclasses.fields(config_class)}
    return {k: v for k, v in vars(args).items() if k in names and v is not None}
