"""The reference of every config field, from the dataclasses themselves: its dotted key, type,
default, choices or range and doc line. ``--help`` of the command line and the configuration page
of the docs are both rendered from ``field_reference``, so they cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import textwrap
import typing
from dataclasses import dataclass
from typing import Any, Literal

from .schema import NayerConfig
from .validate import Range, Section, hints, type_name

__all__ = ["FieldInfo", "explain", "field_reference", "reference_markdown", "reference_text"]


@dataclass(frozen=True)
class FieldInfo:
    """One leaf field of ``NayerConfig``.

    Attributes:
        key: dotted path, e.g. "synthesis.nayer.generator_input".
        section: the dotted section holding it ("synthesis.nayer").
        type: readable type ("int", "float", "list of floats", "choice").
        default: the default value, as the command line writes it ("0.5,0.999", "true").
        allowed: the choices ("lte | noise | ...") or the range (">= 0", "in [0, 1)"), or "".
        doc: the field's doc line; section_doc: its section's one-line ``SUMMARY``.
    """

    key: str
    section: str
    type: str
    default: str
    allowed: str
    doc: str
    section_doc: str


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return ",".join(_text(v) for v in value) if value else "(empty)"
    if value == "":
        return "(empty)"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _walk(section: Section, prefix: str) -> typing.Iterator[FieldInfo]:
    annotations = hints(type(section))
    for f in dataclasses.fields(section):
        value, annotation, key = getattr(section, f.name), annotations[f.name], f"{prefix}.{f.name}"
        if isinstance(value, Section):
            yield from _walk(value, key)
            continue
        choices = typing.get_args(annotation) if typing.get_origin(annotation) is Literal else ()
        allowed: Range | None = f.metadata.get("range")
        yield FieldInfo(
            key=key,
            section=prefix,
            type="choice" if choices else type_name(annotation),
            default=_text(value),
            allowed=" | ".join(choices) if choices else (str(allowed) if allowed else ""),
            doc=f.metadata.get("doc", ""),
            section_doc=type(section).SUMMARY,
        )


def field_reference(config: NayerConfig | None = None) -> list[FieldInfo]:
    """Every leaf field of ``config`` (default: the dataclass defaults, i.e. the demo recipe), in
    declaration order; the defaults shown are ``config``'s values."""
    config = config or NayerConfig()
    return [info for f in dataclasses.fields(config) for info in _walk(getattr(config, f.name), f.name)]


def explain(key: str, config: NayerConfig | None = None) -> str:
    """A few lines about one field: its type, value in ``config``, choices or range and doc.

    Raises:
        KeyError: no such field (the message lists the closest keys).
    """
    infos = {info.key: info for info in field_reference(config)}
    if key not in infos:
        close = [k for k in infos if key.split(".")[-1] in k] or [k for k in infos if k.startswith(key)]
        raise KeyError(f"no config field {key!r}" + (f"; did you mean {', '.join(close[:6])}?" if close else ""))
    info = infos[key]
    lines = [
        f"{info.key}  ({info.type}{': ' + info.allowed if info.allowed else ''})",
        f"  value: {info.default}",
        f"  {info.doc}" if info.doc else "",
        f"  section {info.section}: {info.section_doc}",
    ]
    return "\n".join(line for line in lines if line)


def reference_text(config: NayerConfig | None = None, width: int = 100) -> str:
    """Every field by section, for ``--help``: ``key=default  [type; choices or range]  doc``."""
    out, section = [], None
    for info in field_reference(config):
        if info.section != section:
            section = info.section
            out += ["", f"{section}: {info.section_doc}"]
        kind = f"{info.type}; {info.allowed}" if info.allowed else info.type
        head = f"  {info.key}={info.default}  [{kind}]"
        out.append(head)
        if info.doc:
            out += textwrap.wrap(info.doc, width=width, initial_indent="      ", subsequent_indent="      ")
    return "\n".join(out).lstrip("\n")


def reference_markdown(config: NayerConfig | None = None) -> str:
    """Every field by section as markdown tables (the docs' configuration page)."""
    out, section = [], None
    for info in field_reference(config):
        if info.section != section:
            section = info.section
            out += [
                "",
                f"## `{section}`",
                "",
                info.section_doc,
                "",
                "| key | type | default | allowed | meaning |",
                "|---|---|---|---|---|",
            ]
        cell = lambda s: s.replace("|", "\\|")  # noqa: E731
        out.append(f"| `{info.key}` | {info.type} | `{cell(info.default)}` | {cell(info.allowed)} | {cell(info.doc)} |")
    return "\n".join(out).lstrip("\n") + "\n"
