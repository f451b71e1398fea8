"""What the prefilter knows about a file and an issue without any model.

`FileFacts` depend on a file's text only (so a benchmark can cache them by blob): its terms for BM25,
the names it defines, what it imports, and its skeleton (signatures and docstring openings, bodies
left out) for the cheap relevance tier. `IssueMentions` are what the issue names: file paths,
traceback frames, dotted module paths and identifiers.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WORD_PART = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")

_DEF = re.compile(r"^[ \t]*(?:async[ \t]+)?(?:def|class)[ \t]+([A-Za-z_]\w*)", re.M)
_TOP_ASSIGN = re.compile(r"^([A-Za-z_]\w*)[ \t]*(?::[^=\n]*)?=(?!=)", re.M)
_IMPORT = re.compile(r"^[ \t]*import[ \t]+([\w. \t,]+)", re.M)
_FROM_IMPORT = re.compile(r"^[ \t]*from[ \t]+(\.*)([\w.]*)[ \t]+import[ \t]+(?:\(([^)]*)\)|([\w \t,]+))", re.M)
_HEAD_CHARS = 2_000
_COMMENT = re.compile(r"[ \t]*#.*$")
_SIGNATURE_START = re.compile(r"^([ \t]*)(?:@|(?:async[ \t]+)?def[ \t]|class[ \t])")
_DOCSTRING_START = re.compile(r"^[ \t]*[rRuUbB]?(\"\"\"|''')")

# Words of any issue that name no particular code (so defining them is no evidence).
_COMMON = frozenset(
    "self cls none true false return import from class def print self args kwargs test tests the and for "
    "with this that not data value values name type object error list dict str int float bool get set "
    "len range file path init main run call result results example examples output input".split()
)


def tokenize(text: str, cache: dict[str, list[str]] | None = None) -> list[str]:
    """Lower-cased identifier tokens; snake_case and camelCase identifiers also yield their parts."""
    cache = {} if cache is None else cache
    tokens: list[str] = []
    for identifier in _IDENTIFIER.findall(text):
        parts = cache.get(identifier)
        if parts is None:
            pieces = [p.lower() for chunk in identifier.split("_") for p in _WORD_PART.findall(chunk)]
            whole = identifier.strip("_").lower()
            parts = [p for p in pieces if len(p) > 1]
            if len(pieces) > 1 and len(whole) > 1:
                parts.append(whole)  # the exact identifier is stronger evidence than its parts
            cache[identifier] = parts
        tokens.extend(parts)
    return tokens


@dataclass
class FileFacts:
    terms: Counter[str]
    length: int
    chars: int
    defines: frozenset[str] = frozenset()
    imports: tuple[tuple[int, str], ...] = ()  # (relative level, dotted module), names included
    skeleton: str = ""


def file_facts(path: str, text: str, cache: dict[str, list[str]] | None = None) -> FileFacts:
    terms = Counter(tokenize(text, cache))
    facts = FileFacts(terms=terms, length=sum(terms.values()), chars=len(text))
    if path.endswith((".py", ".pyi", ".pyx")):
        facts.defines = frozenset(_DEF.findall(text)) | frozenset(_TOP_ASSIGN.findall(text))
        facts.imports = _imports(text)
        facts.skeleton = skeleton(text) if _DEF.search(text) else ""
    if not facts.skeleton:  # no structure to show (data, config, prose): its head instead
        facts.skeleton = head(text)
    return facts


def head(text: str, lines: int = 40) -> str:
    """The first lines of a file (at most _HEAD_CHARS), saying how much is left out."""
    shown = "\n".join(text.splitlines()[:lines])[:_HEAD_CHARS]
    rest = len(text) - len(shown)
    return shown + (f"\n[... {rest} more characters]\n" if rest > 0 else "\n")


def _imports(text: str) -> tuple[tuple[int, str], ...]:
    found: list[tuple[int, str]] = []
    for match in _IMPORT.finditer(text):
        for part in match.group(1).split(","):
            name = part.split()[0] if part.split() else ""
            if name:
                found.append((0, name))
    for match in _FROM_IMPORT.finditer(text):
        level, module = len(match.group(1)), match.group(2)
        if module:
            found.append((level, module))
        names = match.group(3) if match.group(3) is not None else match.group(4)
        for name in re.split(r"[\s,]+", _COMMENT.sub("", names) if "#" in names else names):
            if name and name not in ("as", "import") and name.isidentifier():
                found.append((level, f"{module}.{name}" if module else name))  # may be a submodule
    return tuple(dict.fromkeys(found))


def skeleton(text: str, doc_lines: int = 2) -> str:
    """Signatures (with decorators) and the first lines of docstrings; bodies become `...`.

    Line-based rather than `ast`, so files with syntax errors (or Python 2) still get one.
    """
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    doc = _docstring(lines, 0, doc_lines)
    out += doc[0]
    i = doc[1]
    while i < len(lines):
        line = lines[i]
        start = _SIGNATURE_START.match(line)
        if not start:
            i += 1
            continue
        # The signature runs until its brackets close and it ends with a colon.
        depth = 0
        while i < len(lines):
            current = lines[i]
            out.append(current.rstrip())
            depth += current.count("(") + current.count("[") - current.count(")") - current.count("]")
            i += 1
            code = _COMMENT.sub("", current).rstrip() if "#" in current else current.rstrip()
            if depth <= 0 and (code.endswith(":") or code.lstrip().startswith("@")):
                break
        if out[-1].lstrip().startswith("@"):
            continue
        doc_text, i = _docstring(lines, i, doc_lines)
        out += doc_text
        out.append(f"{start.group(1)}    ...")
    return "\n".join(out) + ("\n" if out else "")


def _docstring(lines: list[str], i: int, keep: int) -> tuple[list[str], int]:
    """The first `keep` lines of a docstring starting at line i (blank lines skipped), and the next index."""
    j = i
    while j < len(lines) and not lines[j].strip():
        j += 1
    match = _DOCSTRING_START.match(lines[j]) if j < len(lines) else None
    if match is None:
        return [], i
    quote, first = match.group(1), lines[j]
    if first.count(quote) >= 2:  # one line
        return [first.rstrip()], j + 1
    end = j + 1
    while end < len(lines) and quote not in lines[end]:
        end += 1
    body = [line.rstrip() for line in lines[j + 1 : end] if line.strip()]
    indent = first[: len(first) - len(first.lstrip())]
    kept = [first.rstrip(), *body[: keep - 1]]
    tail = f"{indent}{quote}" if len(body) < keep else f"{indent}...{quote}"
    return [*kept, tail], end + 1


# -- the issue ------------------------------------------------------------------------------------

_PATH_MENTION = re.compile(r"(?<![\w.])((?:[\w.-]+[/\\])*[\w.-]+\.(?:py|pyi|pyx|cfg|toml|rst|txt|ini|js|html|css))\b")
_FRAME = re.compile(r"File \"([^\"]+)\", line \d+")
_DOTTED = re.compile(r"(?<![\w.])([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)")
_CODE_SPAN = re.compile(r"`([^`\n]+)`|^(?: {4}|\t)(.+)$|^```[^\n]*\n(.*?)^```", re.M | re.S)
_CALLED = re.compile(r"([A-Za-z_]\w*)\s*\(")


@dataclass
class IssueMentions:
    paths: list[str] = field(default_factory=list)  # as written, in order
    frames: list[str] = field(default_factory=list)  # traceback frame paths, in order
    dotted: list[str] = field(default_factory=list)
    identifiers: list[str] = field(default_factory=list)  # code-like names, in order


def issue_mentions(issue: str) -> IssueMentions:
    mentions = IssueMentions()
    mentions.frames = list(dict.fromkeys(p.replace("\\", "/") for p in _FRAME.findall(issue)))
    frame_set = set(mentions.frames)
    paths = (p.replace("\\", "/") for p in _PATH_MENTION.findall(issue))
    mentions.paths = list(dict.fromkeys(p for p in paths if not any(f.endswith(p) for f in frame_set)))
    mentions.dotted = list(dict.fromkeys(d for d in _DOTTED.findall(issue) if _PATH_MENTION.fullmatch(d) is None))
    code = " ".join(next(g for g in m.groups() if g is not None) for m in _CODE_SPAN.finditer(issue))
    names: list[str] = []
    for name in _IDENTIFIER.findall(issue):
        code_like = "_" in name.strip("_") or re.search(r"[a-z][A-Z]|[A-Z].*[a-z].*[A-Z]", name) is not None
        if len(name) >= 3 and name.lower() not in _COMMON and code_like:
            names.append(name)
    for name in _IDENTIFIER.findall(code) + _CALLED.findall(issue):
        if len(name) >= 3 and name.lower() not in _COMMON:
            names.append(name)
    for dotted in mentions.dotted:
        names += [part for part in dotted.split(".") if len(part) >= 3 and part.lower() not in _COMMON]
    mentions.identifiers = list(dict.fromkeys(names))
    return mentions
