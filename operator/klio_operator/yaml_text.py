"""Block-style YAML for plain data (the worker's ``klio-job.yaml``), written directly.

PyYAML's representer runs in Python and resolves and alias-checks every node: for a worker's
config it took ~170 µs, two thirds of planning a job; :func:`dump` writes the same text in ~30.
It knows JSON's kinds of value (mappings with string keys, lists, strings, ints, floats,
booleans, None); anything else goes to PyYAML. A string is written plain only when it cannot
read back as anything else, otherwise double-quoted with YAML's escapes. Every output reads back
with PyYAML (``yaml.safe_load``) as the data it was made from.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Mapping
from typing import Any

import yaml

_PLAIN = re.compile(r"[A-Za-z_/][A-Za-z0-9_./@+-]*(?::[A-Za-z0-9_./@+-]+)*")
"""Plain strings: starting with a letter, ``_`` or ``/`` (never a number, date, ``.inf`` or an
indicator), with ``:`` only inside (never ``: `` or a trailing ``:``)."""
_RESERVED = frozenset({"y", "n", "yes", "no", "true", "false", "on", "off", "null"})
"""Words YAML 1.1 reads as booleans or null, in any case."""
_UNPRINTABLE = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)
"""What a YAML reader refuses raw, or reads as a line break inside quotes (NEL, LS, PS)."""


class _NotPlainData(TypeError):
    """A value this writer does not know: the whole document goes to PyYAML."""


def dump(data: Mapping[str, Any]) -> str:
    """``data`` as a block-style YAML document, in its key order."""
    try:
        lines = _lines(data, "") if data else ["{}"]
    except _NotPlainData:
        return str(yaml.safe_dump(dict(data), sort_keys=False))
    return "\n".join(lines) + "\n"


def _lines(value: Mapping[str, Any] | list[Any] | tuple[Any, ...], indent: str) -> list[str]:
    """The lines of a non-empty mapping or list, at ``indent``."""
    out: list[str] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise _NotPlainData(key)
            head = f"{indent}{_string(key)}:"
            if _is_block(item):
                # a list under a key at the key's own indent, as PyYAML writes it
                out.append(head)
                out.extend(_lines(item, indent if not isinstance(item, Mapping) else indent + "  "))
            else:
                out.append(f"{head} {_scalar(item)}")
        return out
    for item in value:
        if _is_block(item):
            child = _lines(item, indent + "  ")
            child[0] = f"{indent}- {child[0][len(indent) + 2 :]}"
            out.extend(child)
        else:
            out.append(f"{indent}- {_scalar(item)}")
    return out


def _is_block(value: Any) -> bool:
    return isinstance(value, Mapping | list | tuple) and len(value) > 0


def _scalar(value: Any) -> str:
    if isinstance(value, str):
        return _string(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, Mapping | list | tuple):  # empty ones
        return "{}" if isinstance(value, Mapping) else "[]"
    raise _NotPlainData(value)


@functools.lru_cache(maxsize=4096)  # keys, types and flags repeat from one config to the next
def _string(text: str) -> str:
    if _PLAIN.fullmatch(text) and text.lower() not in _RESERVED:
        return text
    if not text:
        return "''"
    quoted = json.dumps(text, ensure_ascii=False)  # JSON's escapes are YAML's
    return _UNPRINTABLE.sub(_escape, quoted)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def _float(value: float) -> str:
    if math.isnan(value):
        return ".nan"
    if math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    text = repr(value)
    # YAML 1.1 reads a float only with a dot in its mantissa (and a signed exponent)
    mantissa, _, exponent = text.partition("e")
    if "." not in mantissa:
        mantissa += ".0"
    return f"{mantissa}e{exponent}" if exponent else mantissa
