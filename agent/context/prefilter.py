"""Model-free prefilter of the context stage: which files the relevance model reads, and in which tier.

Every text file of a checkout is scored against the issue from evidence a model need not read: what
the issue names (paths, traceback frames, dotted modules, identifiers a file defines), BM25 over the
file's text and over its path, and the imports of the best files. Non-test source comes before tests
and documentation. The best files are judged on their full text; the next ones on their skeleton
(signatures and docstring openings), so many more files are considered for the same tokens.
Vendored, generated, binary, huge and hidden files are skipped and reported.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from agent.context.scan import scan_checkout, skip_reason
from agent.context.signals import FileFacts, IssueMentions, file_facts, issue_mentions, tokenize

__all__ = [
    "PrefilterSettings",
    "Selection",
    "file_facts",
    "prefilter",
    "prefilter_with_notes",
    "scan_checkout",
    "select_files",
    "skip_reason",
    "tokenize",
]

_NOTE_EXAMPLES = 5

_PYTHON = (".py", ".pyi", ".pyx")
_TEST_PATH = re.compile(r"(?:^|/)(?:tests?|testing)/|(?:^|/)test_[^/]*$|_tests?\.py$|(?:^|/)conftest\.py$")
_DOC_PATH = re.compile(r"(?:^|/)(?:docs?|changelog|changes|release_notes|whatsnew)/|(?:^|/)(?:CHANGE|HISTORY|NEWS|"
                       r"AUTHORS|LICEN[CS]E|CONTRIBUT|README)[^/]*$|\.(?:rst|md|txt|ipynb)$", re.I)
_OTHER_CODE_DIRS = re.compile(r"(?:^|/)(?:examples?|benchmarks?|bin|release|tools|scripts|asv_bench|ci)/")
# Path parts that name no particular module.
_GENERIC_PATH_TERMS = frozenset({"py", "src", "lib", "init", "main", "core", "utils", "util", "base"})


@dataclass(frozen=True)
class PrefilterSettings:
    """Tier sizes and evidence weights (fixed before any held-out measurement; see bench_context.py)."""

    full_files: int = 50  # judged on their full text
    skeleton_files: int = 0  # the next ones, judged on their skeleton first
    small_file_chars: int = 2_000  # a file this small is judged in full even in the skeleton tier
    bm25_weight: float = 1.0
    path_weight: float = 0.5
    named_path_weight: float = 3.0
    frame_weight: float = 2.0
    dotted_weight: float = 2.0
    defines_weight: float = 1.5
    defines_cap: float = 2.0
    neighbour_weight: float = 0.4
    neighbour_sources: int = 5
    category_weights: tuple[tuple[str, float], ...] = (("source", 1.0), ("other", 0.5), ("test", 0.5),
                                                       ("doc", 0.15))


@dataclass
class Selection:
    """Files in prefilter order, the tier of each, and the evidence that put it there."""

    order: list[str] = field(default_factory=list)  # every indexed file, best first
    full: list[str] = field(default_factory=list)
    skeleton: list[str] = field(default_factory=list)
    reasons: dict[str, list[str]] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)
    skeletons: dict[str, str] = field(default_factory=dict)  # of the skeleton tier

    def tier_of(self, path: str) -> str | None:
        return "full" if path in self.full else "skeleton" if path in self.skeleton else None

    def why(self, path: str) -> str:
        rank = self.order.index(path) + 1 if path in self.order else "-"
        return f"#{rank}: {', '.join(self.reasons.get(path, [])) or 'text match'}"


def category(path: str) -> str:
    if _TEST_PATH.search(path):
        return "test"
    if _DOC_PATH.search(path):
        return "doc"
    if path.endswith(_PYTHON):
        return "other" if _OTHER_CODE_DIRS.search(path) else "source"
    return "other"


# -- scoring --------------------------------------------------------------------------------------


def _bm25(docs: Mapping[str, tuple[Mapping[str, int], int]], query: set[str], k1: float = 1.2,
          b: float = 0.75) -> dict[str, float]:
    """Okapi BM25 (Lucene's non-negative idf) of each doc for the unique query terms."""
    if not docs or not query:
        return {}
    n = len(docs)
    avg = sum(length for _, length in docs.values()) / n or 1.0
    df = {t: sum(1 for terms, _ in docs.values() if t in terms) for t in query}
    idf = {t: math.log(1 + (n - d + 0.5) / (d + 0.5)) for t, d in df.items() if d}
    scores: dict[str, float] = {}
    for path, (terms, length) in docs.items():
        norm = k1 * (1 - b + b * length / avg)
        score = 0.0
        for t, weight in idf.items():
            tf = terms.get(t)
            if tf:
                score += weight * tf * (k1 + 1) / (tf + norm)
        if score:
            scores[path] = score
    return scores


def _normalised(scores: dict[str, float], over: list[str]) -> dict[str, float]:
    top = max((scores.get(p, 0.0) for p in over), default=0.0) or max(scores.values(), default=0.0)
    return {p: min(1.0, s / top) for p, s in scores.items()} if top else {}


def _suffix_index(paths: list[str]) -> dict[str, list[str]]:
    """Every trailing run of path components -> the files whose path ends with it."""
    index: dict[str, list[str]] = {}
    for path in paths:
        parts = path.split("/")
        for i in range(len(parts)):
            index.setdefault("/".join(parts[i:]), []).append(path)
    return index


def _resolve_path(written: str, suffixes: dict[str, list[str]]) -> list[str]:
    """Repo files a path written in the issue (absolute, site-packages, relative) stands for."""
    parts = [p for p in written.strip("./").split("/") if p not in ("", ".")]
    for i in range(len(parts)):
        found = suffixes.get("/".join(parts[i:]))
        if found:
            # A bare file name that many files share says little; a longer suffix is specific.
            return found if len(found) <= 3 or i < len(parts) - 1 else []
    return []


def _module_files(dotted: str, modules: dict[str, str]) -> tuple[str | None, int]:
    """The file of the longest importable prefix of `dotted`, and how many parts matched."""
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        found = modules.get(".".join(parts[:end]))
        if found:
            return found, end
    return None, 0


def _module_index(paths: list[str]) -> dict[str, str]:
    """Dotted module name -> file, for Python files (also without a leading src/ or lib/ directory)."""
    index: dict[str, str] = {}
    for path in sorted(paths, key=lambda p: (p.count("/"), p)):
        if not path.endswith(_PYTHON):
            continue
        stem = path.rsplit(".", 1)[0]
        module = stem.removesuffix("/__init__").replace("/", ".")
        for name in (module, re.sub(r"^(?:src|lib)\.", "", module)):
            index.setdefault(name, path)
    return index


def _resolve_import(importer: str, level: int, module: str, modules: dict[str, str]) -> str | None:
    if level:
        package = importer.rsplit("/", 1)[0].replace("/", ".") if "/" in importer else ""
        package_parts = package.split(".") if package else []
        base = package_parts[: len(package_parts) - (level - 1)] if level > 1 else package_parts
        module = ".".join([*base, module] if module else base)
        module = re.sub(r"^(?:src|lib)\.", "", module)
    return modules.get(module)


def select_files(facts: Mapping[str, FileFacts], issue: str, settings: PrefilterSettings) -> Selection:
    """Every file in prefilter order, with the files of each relevance tier and why each is there."""
    paths = sorted(facts)
    if not paths:
        return Selection()
    categories = {p: category(p) for p in paths}
    weights = dict(settings.category_weights)
    sources = [p for p in paths if categories[p] == "source"] or paths
    reasons: dict[str, list[str]] = {p: [] for p in paths}
    evidence: dict[str, float] = dict.fromkeys(paths, 0.0)
    mentions = issue_mentions(issue)

    def add(path: str, weight: float, why: str) -> None:
        evidence[path] += weight
        if why not in reasons[path]:
            reasons[path].append(why)

    query = set(tokenize(issue))
    text_scores = _normalised(_bm25({p: (facts[p].terms, facts[p].length) for p in paths}, query), sources)
    path_docs = {}
    for p in paths:
        terms = [t for t in tokenize(p.replace("/", " ").replace(".", " ")) if t not in _GENERIC_PATH_TERMS]
        path_docs[p] = ({t: terms.count(t) for t in terms}, len(terms))
    path_scores = _normalised(_bm25(path_docs, query), sources)
    for p, s in path_scores.items():
        if s >= 0.5:
            reasons[p].append("path matches the issue")

    _add_named(add, mentions, paths, settings)
    _add_definitions(add, mentions, facts, categories, settings)

    def score(p: str) -> float:
        lexical = settings.bm25_weight * text_scores.get(p, 0.0) + settings.path_weight * path_scores.get(p, 0.0)
        return (lexical + evidence[p]) * weights.get(categories[p], 1.0)

    preliminary = sorted(paths, key=lambda p: (-score(p), p))
    _add_neighbours(add, preliminary, facts, categories, settings)
    scores = {p: score(p) for p in paths}
    order = sorted(paths, key=lambda p: (-scores[p], p))
    full = order[: settings.full_files]
    skeleton = []
    for p in order[settings.full_files : settings.full_files + settings.skeleton_files]:
        fact = facts[p]
        if fact.chars <= settings.small_file_chars or 2 * len(fact.skeleton) >= fact.chars:
            full.append(p)  # its full text costs little more than a skeleton would
            reasons[p].append("small: judged on its full text")
        elif fact.skeleton:
            skeleton.append(p)
    return Selection(order=order, full=full, skeleton=skeleton, reasons=reasons, scores=scores,
                     skeletons={p: facts[p].skeleton for p in skeleton})


def _add_named(add: Callable[[str, float, str], None], mentions: IssueMentions, paths: list[str],
               settings: PrefilterSettings) -> None:
    """Files the issue names: written paths, traceback frames (the deepest in-repo frame most), modules."""
    suffixes = _suffix_index(paths)
    for written in mentions.paths:
        for path in _resolve_path(written, suffixes):
            add(path, settings.named_path_weight, f"named in the issue ({written})")
    in_repo = [found for frame in mentions.frames for found in _resolve_path(frame, suffixes)[:1]]
    for depth, path in enumerate(dict.fromkeys(reversed(in_repo))):
        add(path, settings.frame_weight * (1.0 if depth == 0 else 0.75), "traceback frame")
    modules = _module_index(paths)
    for dotted in mentions.dotted:
        module_path, matched = _module_files(dotted, modules)
        if module_path is not None and (matched >= 2 or "." not in dotted):
            add(module_path, settings.dotted_weight * (1.0 if matched == len(dotted.split(".")) or matched >= 2 else 0.5),
                f"module {'.'.join(dotted.split('.')[:matched])} named")


def _add_definitions(add: Callable[[str, float, str], None], mentions: IssueMentions,
                     facts: Mapping[str, FileFacts], categories: dict[str, str], settings: PrefilterSettings) -> None:
    """Files that define identifiers the issue names; a name defined in few files is strong evidence."""
    wanted = set(mentions.identifiers)
    definers: dict[str, list[str]] = {}
    for path, fact in facts.items():
        if categories[path] in ("test", "doc"):
            continue
        for name in wanted & fact.defines:
            definers.setdefault(name, []).append(path)
    gained: dict[str, float] = {}
    named: dict[str, list[str]] = {}
    for name, where in definers.items():
        if len(where) > 25:
            continue
        for path in where:
            gained[path] = gained.get(path, 0.0) + 1.0 / math.sqrt(len(where))
            named.setdefault(path, []).append(name)
    for path, gain in gained.items():
        shown = ", ".join(named[path][:3])
        add(path, settings.defines_weight * min(settings.defines_cap, gain), f"defines {shown}")


def _add_neighbours(add: Callable[[str, float, str], None], preliminary: list[str], facts: Mapping[str, FileFacts],
                    categories: dict[str, str], settings: PrefilterSettings) -> None:
    """Files the best source files import (a fix often lands in a helper the named code calls)."""
    modules = _module_index(list(facts))
    best = [p for p in preliminary if categories[p] == "source"][: settings.neighbour_sources]
    for importer in best:
        for level, module in facts[importer].imports:
            target = _resolve_import(importer, level, module, modules)
            if target and target != importer and categories.get(target) == "source":
                add(target, settings.neighbour_weight, f"imported by {importer}")


# -- the stage's entry points ---------------------------------------------------------------------


def _skip_notes(skipped: dict[str, list[str]]) -> list[str]:
    notes = []
    for reason in sorted(skipped):
        paths = skipped[reason]
        shown = ", ".join(paths[:_NOTE_EXAMPLES]) + (", …" if len(paths) > _NOTE_EXAMPLES else "")
        notes.append(f"prefilter skipped {len(paths)} {reason} path(s): {shown}")
    return notes


def facts_of(files: Mapping[str, str], cache: dict[str, FileFacts] | None = None) -> dict[str, FileFacts]:
    """FileFacts of every file, reusing `cache` (keyed by extension and content hash) when given."""
    token_cache: dict[str, list[str]] = {}
    result = {}
    for path, text in files.items():
        if cache is None:
            result[path] = file_facts(path, text, token_cache)
            continue
        key = f"{path.rsplit('.', 1)[-1] if '.' in path else ''}:{hashlib.sha1(text.encode()).hexdigest()}"
        if key not in cache:
            cache[key] = file_facts(path, text, token_cache)
        result[path] = cache[key]
    return result


def prefilter_with_notes(repo_dir: Path, issue: str, settings: PrefilterSettings | int, max_bytes: int
                         ) -> tuple[dict[str, str], Selection, list[str]]:
    """Texts of every indexed file, the selection, and notes on what was skipped and kept (for the bundle)."""
    if isinstance(settings, int):
        settings = PrefilterSettings(full_files=settings)
    files, skipped = scan_checkout(Path(repo_dir), max_bytes)
    selection = select_files(facts_of(files), issue, settings)
    notes = _skip_notes(skipped)
    notes.append(f"prefilter kept {len(selection.full)} file(s) for full-text relevance and "
                 f"{len(selection.skeleton)} for skeleton relevance of {len(files)} text file(s)")
    return files, selection, notes


def prefilter(repo_dir: Path, issue: str, top: int, *, max_file_bytes: int = 512_000) -> list[str]:
    """Repo-relative paths of the `top` text files that best match the issue, best first."""
    files, selection, _ = prefilter_with_notes(Path(repo_dir), issue, PrefilterSettings(full_files=top),
                                               max_file_bytes)
    return selection.full
