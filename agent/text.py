"""Text that can always be stored: model replies, repository files and test output may hold unpaired
surrogates (`\\udce9`, from JSON escapes or bytes decoded with surrogateescape), which UTF-8, SQLite and
pydantic's JSON refuse. Replacing them once at the boundary keeps every later write from failing."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")


def utf8_text(data: bytes, path: Path, error: type[Exception], hint: str = "") -> str:
    """`data` decoded as UTF-8, else `error` naming the file, the line and the bad byte (then `hint`)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise error(f"{path} line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x}){hint}") from None


def json_lines(text: str, path: Path, error: type[Exception]) -> list[tuple[int, Any]]:
    """(line number, value) of each non-blank line of a JSON Lines text, else `error` naming the file and line."""
    values = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                values.append((number, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise error(f"{path} line {number}: not valid JSON ({exc.msg})") from None
    return values


def storable(text: str) -> str:
    """`text` with each unpaired surrogate replaced by U+FFFD (a valid pair becomes its character)."""
    if text.isascii() or not _SURROGATE.search(text):
        return text
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def storable_data(value: Any) -> Any:
    """`storable` applied to every string (keys included) of JSON-like data."""
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, dict):
        return {storable_data(k): storable_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable_data(v) for v in value]
    return value


def clip_middle(text: str, head: int, tail: int) -> str:
    """`text` if it has at most head + tail characters, else its first `head` and last `tail` with a
    marker saying how much was cut between them (the end of output is where errors show)."""
    if len(text) <= head + tail:
        return text
    return f"{text[:head]}\n[... {len(text) - head - tail} characters cut ...]\n{text[len(text) - tail:]}"
