"""How a config section checks itself: declared ranges on numeric fields, ``Literal`` choices, tuple
lengths, and each section's cross-field rules, with messages that name the field and what to change.

A numeric field declares its interval once, where it is defined (``positive``, ``at_least``,
``in_range``); ``Section.validate`` walks every field of a section (and its sub-sections) against its
annotation and declaration, then calls the section's ``check_relations``.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

__all__ = [
    "ConfigError",
    "Range",
    "Section",
    "at_least",
    "check",
    "hints",
    "in_range",
    "positive",
    "type_name",
    "type_ok",
]


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and what to change."""


def check(condition: bool, message: str) -> None:
    """Raise ``ConfigError(message)`` unless ``condition``."""
    if not condition:
        raise ConfigError(message)


@dataclass(frozen=True)
class Range:
    """The allowed interval of a numeric field, or of every item of a tuple field.

    ``low`` / ``high`` of None mean unbounded; ``low_open`` / ``high_open`` exclude the bound."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        if self.low is None:
            return f"{'<' if self.high_open else '<='} {self.high:g}"
        return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


def _ranged(default: Any, allowed: Range, doc: str) -> Any:
    return field(default=default, metadata={"range": allowed, "doc": doc})


def positive(default: Any, doc: str = "") -> Any:
    """A dataclass field with ``default`` whose value (or every item of it) must be > 0."""
    return _ranged(default, Range(0, None, low_open=True), doc)


def at_least(low: float, *, default: Any, doc: str = "") -> Any:
    """A dataclass field with ``default`` whose value (or every item of it) must be >= ``low``."""
    return _ranged(default, Range(low, None), doc)


def in_range(low: float, high: float, *, default: Any, high_open: bool = False, doc: str = "") -> Any:
    """A dataclass field with ``default`` whose value (or every item) lies in [low, high] (or [low, high))."""
    return _ranged(default, Range(low, high, high_open=high_open), doc)


@functools.lru_cache(maxsize=None)
def hints(cls: type) -> dict[str, Any]:
    """The resolved type annotations of a dataclass (cached)."""
    return typing.get_type_hints(cls)


def type_ok(value: Any, annotation: Any) -> bool:
    """Whether ``value`` has the type ``annotation`` declares (a Literal is checked as a choice elsewhere)."""
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return True
    if origin is tuple:
        item = typing.get_args(annotation)[0]
        return isinstance(value, (tuple, list)) and all(type_ok(v, item) for v in value)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, annotation)


def type_name(annotation: Any) -> str:
    """A readable name of a field's type, for messages ("list of floats", "int")."""
    if typing.get_origin(annotation) is tuple:
        return f"list of {type_name(typing.get_args(annotation)[0])}s"
    return getattr(annotation, "__name__", str(annotation))


def _check_field(f: dataclasses.Field, value: Any, annotation: Any, key: str) -> None:
    """One field against its declaration: type, Literal choice, tuple length, declared range."""
    check(type_ok(value, annotation), f"{key} takes a {type_name(annotation)}, got {value!r}")
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        check(value in args, f"{key} must be one of {', '.join(map(str, args))}, got {value!r}")
    if origin is tuple and Ellipsis not in args:
        check(len(value) == len(args), f"{key} takes {len(args)} values (e.g. {key}=0.5,0.999), got {value!r}")
    allowed = f.metadata.get("range")
    if allowed is not None:
        items = value if isinstance(value, (tuple, list)) else (value,)
        several = isinstance(value, (tuple, list))
        check(
            all(v in allowed for v in items),
            f"{'every value of ' if several else ''}{key} must be {allowed}, got {value!r}: "
            f"set {key} to {'values' if several else 'a value'} {allowed}",
        )


class Section:
    """Shared behaviour of the config sections: ``validate`` checks every field against its
    declaration (Literal choices, tuple lengths, declared ranges), then the cross-field rules of
    ``check_relations``. ``SECTION`` is the dotted prefix that messages name; ``SUMMARY`` is the
    one line that ``--help`` and the docs show for the section."""

    SECTION: ClassVar[str] = ""
    SUMMARY: ClassVar[str] = ""

    def validate(self) -> Section:
        """Check the section; raises ConfigError naming the field, its value and what to change."""
        annotations = hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Section):
                value.validate()
            else:
                _check_field(f, value, annotations[f.name], f"{self.SECTION}.{f.name}")
        self.check_relations()
        return self

    def check_relations(self) -> None:
        """Rules that tie several fields together (none by default)."""
