"""Validated configuration dataclasses and the fast profile for headless runs.

Every trainer takes a config dataclass (or the same fields as keywords). Each field declares its
allowed range in its metadata with :func:`setting`; :func:`validate` checks a config against those
ranges and raises ``ValueError`` naming the field, the value and what is allowed. The widget panels
read the same metadata to build their sliders and dropdowns.

``RLTEACH_FAST=1`` switches notebooks to the fast profile (small runs, for headless tests); notebooks
ask :func:`fast_profile` or :func:`pick` instead of reading the variable themselves.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

FAST_ENV_VAR = "RLTEACH_FAST"

C = TypeVar("C", bound="DataclassInstance")  # a config dataclass


def fast_profile() -> bool:
    """True when ``RLTEACH_FAST`` is set to 1/true/yes: notebooks shrink their runs."""
    return os.environ.get(FAST_ENV_VAR, "").strip().lower() in {"1", "true", "yes", "on"}


def pick(full: Any, fast: Any) -> Any:
    """``fast`` in the fast profile, ``full`` otherwise (e.g. ``episodes = pick(20_000, 2_000)``)."""
    return fast if fast_profile() else full


def setting(
    default: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    choices: Sequence[Any] | None = None,
    log: bool = False,
    help: str = "",
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> Any:
    """A dataclass field with its allowed range (``low``/``high``) or ``choices``.

    ``log=True`` asks widgets for a logarithmic slider (learning rates). ``help`` is shown as the
    widget's tooltip and in error messages.
    """
    meta = {
        "low": low,
        "high": high,
        "choices": tuple(choices) if choices is not None else None,
        "log": log,
        "help": help,
        "low_inclusive": low_inclusive,
        "high_inclusive": high_inclusive,
    }
    if isinstance(default, (list, dict, set)):
        raise TypeError("mutable defaults are not allowed in configs; use a tuple")
    return dataclasses.field(default=default, metadata=meta)


def allowed(meta: Mapping[str, Any]) -> str:
    """Human-readable description of what a field allows, e.g. ``"in (0, 1]"``."""
    if meta.get("choices") is not None:
        return "one of " + ", ".join(repr(c) for c in meta["choices"])
    low, high = meta.get("low"), meta.get("high")
    left = "[" if meta.get("low_inclusive", True) else "("
    right = "]" if meta.get("high_inclusive", True) else ")"
    if low is not None and high is not None:
        return f"in {left}{low}, {high}{right}"
    if low is not None:
        return (">= " if left == "[" else "> ") + str(low)
    if high is not None:
        return ("<= " if right == "]" else "< ") + str(high)
    return "any value"


def _in_range(value: Any, meta: Mapping[str, Any]) -> bool:
    if meta.get("choices") is not None:
        return value in meta["choices"]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return meta.get("low") is None and meta.get("high") is None
    low, high = meta.get("low"), meta.get("high")
    if value != value:  # NaN is never in range
        return False
    if low is not None and (value < low or (value == low and not meta.get("low_inclusive", True))):
        return False
    if high is not None and (
        value > high or (value == high and not meta.get("high_inclusive", True))
    ):
        return False
    return True


def _right_type(value: Any, default: Any) -> bool:
    """Same kind as the default: bool for bool, a whole number for int, a number for float."""
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, str):
        return isinstance(value, str)
    return True


def validate(config: Any) -> Any:
    """Check every field of ``config`` against its declared type and range, then the rules
    between its fields (the config's own ``check()`` method, when it has one); return the config.

    This is the one validation path: trainers (:func:`make_config`), the command line and the
    widget panels all come through here. Raises
    ``ValueError("<Class>.<field> = <value> is invalid: must be <allowed>")``.
    """
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if not _right_type(value, f.default):
            raise ValueError(
                f"{type(config).__name__}.{f.name} = {value!r} is invalid: must be of type "
                f"{type(f.default).__name__}"
            )
        if f.metadata and not _in_range(value, f.metadata):
            hint = f" ({f.metadata['help']})" if f.metadata.get("help") else ""
            raise ValueError(
                f"{type(config).__name__}.{f.name} = {value!r} is invalid: "
                f"must be {allowed(f.metadata)}{hint}"
            )
    check = getattr(config, "check", None)
    if check is not None:
        check()
    return config


def make_config(cls: type[C], config: C | None = None, **overrides: Any) -> C:
    """Build a validated ``cls`` from an optional base config and keyword overrides.

    Unknown keywords raise ``ValueError`` listing the fields ``cls`` has.
    """
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(
            f"unknown {cls.__name__} field(s) {', '.join(unknown)}; known fields: "
            + ", ".join(sorted(names))
        )
    if config is not None and not isinstance(config, cls):
        raise ValueError(f"config must be a {cls.__name__}, got {type(config).__name__}")
    base = config if config is not None else cls()
    return validate(dataclasses.replace(base, **overrides))


# ----------------------------------------------------------------------------- command-line options

EXPECTED = {int: "an integer", float: "a number", tuple: "integers separated by commas, e.g. 64,64"}


def parse_value(text: str, default: Any) -> Any:
    """``text`` as a value of the type of a field's ``default`` (``true``/``false`` for a bool,
    ``64,64`` for a tuple). Raises ``argparse.ArgumentTypeError``, which argparse turns into
    ``argument --NAME: expected …, got '…'`` and exit code 2."""
    if default is None:  # an optional name (e.g. DD-PPO's env_fn)
        return text
    if isinstance(default, bool):
        if text.lower() in {"1", "true", "yes", "on"}:
            return True
        if text.lower() in {"0", "false", "no", "off"}:
            return False
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    try:
        if isinstance(default, tuple):
            return tuple(int(x) for x in text.split(","))
        return type(default)(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected {EXPECTED.get(type(default), type(default).__name__)}, got {text!r}"
        ) from None


def add_options(parser: argparse.ArgumentParser, cls: type) -> None:
    """One ``--field-name VALUE`` option per field of the config dataclass ``cls``, with the
    field's help and default; an option left out parses as ``None`` (:func:`overrides_from`)."""
    for f in dataclasses.fields(cls):
        parser.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f.name,
            default=None,
            metavar="VALUE",
            type=functools.partial(parse_value, default=f.default),
            help=f"{f.metadata.get('help', '')} (default: {f.default})",
        )


def overrides_from(options: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The fields of ``cls`` that ``options`` (parsed with :func:`add_options`) sets."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in vars(options).items() if k in names and v is not None}
