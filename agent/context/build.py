"""Context stage: model-free prefilter → relevance calls in two tiers → ranking samples → whole files under a budget.

The prefilter (agent/context/prefilter.py) orders every file by evidence and splits the best into two
tiers: the top files get one full-text relevance call each (CodeMonkeys' design); the next ones are
judged on their skeleton first (signatures and docstring openings, a fraction of the tokens) and only
those that pass get the full-text call. Ranking of the relevant files is unchanged.

Runs once per instance (CodeMonkeys-style) and serves every trajectory, so their prompts share one
cacheable prefix. The client keys every model call (`ModelClient.call_key`), so a resumed run replays completed calls from
the client's `CallStore`; the finished bundle is kept in a `StateStore` and returned without any call.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agent import llm
from agent.budget import Budget
from agent.context.prefilter import (
    PrefilterSettings,
    Selection,
    prefilter,
    prefilter_with_notes,
    tokenize,
)
from agent.model import ModelCallError, ModelClient, Role
from agent.templates import render, template_text
from agent.types import ContextBundle, ContextFile, StateStore

__all__ = [
    "RANKING_SYSTEM",
    "RELEVANCE_SYSTEM",
    "SKELETON_SYSTEM",
    "ContextConfig",
    "build_context",
    "count_tokens",
    "merge_rankings",
    "parse_ranking",
    "parse_relevance",
    "prefilter",
    "relevance_messages",
    "skeleton_messages",
    "tokenize",
]

RELEVANCE_SYSTEM = render("relevance_system")

SKELETON_SYSTEM = render("skeleton_system")

RANKING_SYSTEM = render("ranking_system")
# Every template of the stage: a stored bundle built with other wording is rebuilt.
CONTEXT_TEMPLATES = ("relevance_system", "relevance_user", "skeleton_system", "skeleton_user", "ranking_system",
                     "ranking_user")


# litellm downloads these tokenizers from Hugging Face; tiktoken's bundled one is close enough for a budget.
_DOWNLOADED_TOKENIZERS = ("llama-2", "llama-3", "replicate", "command-r")
_LIST_MARKER = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s*")


class ContextConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a typo in the config must not pass silently

    token_budget: int = Field(
        128_000, ge=1, description="Tokens of whole files the bundle may hold (primary model's tokenizer)."
    )
    prefilter_top_files: int = Field(
        20, ge=1, description="Best prefilter files judged on their full text; each costs one relevance call."
    )
    prefilter_skeleton_files: int = Field(
        100, ge=0, description="The next prefilter files, judged on their skeleton (one cheaper call each)."
    )
    skeleton_promote_max: int = Field(
        10, ge=0, description="Skeleton-tier files that pass get a full-text call; at most this many (best first)."
    )
    max_file_bytes: int = Field(
        512_000, ge=1, description="Larger files are skipped (usually data or generated code)."
    )
    ranking_samples: int = Field(
        3, ge=0, description="Ranking calls to the primary model, merged by mean rank; 0 keeps prefilter order."
    )
    relevance_max_chars: int = Field(
        100_000, ge=1_000, description="Characters of a file shown to a relevance call; the rest is cut."
    )


class _Verdict(BaseModel):
    path: str
    relevant: bool = False
    summary: str = ""
    problem: str | None = Field(None, description="Why the verdict is missing (malformed answer, failed call).")


# -- parsing --------------------------------------------------------------------------------------


def _tag(text: str, name: str) -> str | None:
    """Content of the first <name> tag; a missing closing tag runs to the end (models forget it)."""
    match = re.search(rf"<{name}>\s*(.*?)\s*(?:</{name}>|\Z)", text, re.S | re.I)
    return match.group(1) if match else None


def parse_relevance(text: str) -> tuple[bool | None, str]:
    """(relevant, summary); relevant is None when the answer does not follow the format."""
    raw = _tag(text, "relevant")
    word = re.match(r"\W*(\w+)", raw or "")
    verdict = word.group(1).lower() if word else ""
    relevant = True if verdict in ("yes", "true") else False if verdict in ("no", "false") else None
    return relevant, (_tag(text, "summary") or "").strip()


def parse_ranking(text: str, known: list[str]) -> list[str]:
    """Known paths in the order the answer lists them (bullets, numbers, backticks and `./` tolerated)."""
    body = _tag(text, "ranking")
    known_set = set(known)
    ranking: list[str] = []
    for line in (text if body is None else body).splitlines():
        path = _LIST_MARKER.sub("", line).strip().strip("`'\" ").removeprefix("./")
        if path in known_set and path not in ranking:
            ranking.append(path)
    return ranking


def merge_rankings(samples: list[list[str]], candidates: list[str]) -> list[str]:
    """Candidates by mean rank over samples (absent from a sample: its length + 1); ties keep input order."""
    if not samples:
        return list(candidates)
    positions = [{path: rank for rank, path in enumerate(sample, start=1)} for sample in samples]

    def rank_sum(path: str) -> int:  # same number of samples for every path, so the sum orders like the mean
        return sum(pos.get(path, len(pos) + 1) for pos in positions)

    order = {path: i for i, path in enumerate(candidates)}
    return sorted(candidates, key=lambda p: (rank_sum(p), order[p]))


# -- model calls ----------------------------------------------------------------------------------


async def _call(client: ModelClient, role: Role, messages: list[dict[str, Any]], budget: Budget | None,
                sample: int = 0) -> str:
    return (await client.complete(role, messages, budget=budget, sample=sample)).text


def _error_of(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:300]


def relevance_messages(issue: str, path: str, text: str, max_chars: int) -> list[dict[str, Any]]:
    """The full-text relevance call for one file (what is sent, so benchmarks count the same tokens)."""
    if len(text) > max_chars:
        text = f"{text[:max_chars]}\n[... {len(text) - max_chars} more characters not shown]"
    return [
        {"role": "system", "content": RELEVANCE_SYSTEM},
        {"role": "user", "content": render("relevance_user", issue=issue.strip(), path=path, text=text)},
    ]


def skeleton_messages(issue: str, path: str, skeleton: str, max_chars: int) -> list[dict[str, Any]]:
    """The skeleton-tier relevance call for one file."""
    if len(skeleton) > max_chars:
        skeleton = f"{skeleton[:max_chars]}\n[... {len(skeleton) - max_chars} more characters not shown]"
    return [
        {"role": "system", "content": SKELETON_SYSTEM},
        {"role": "user", "content": render("skeleton_user", issue=issue.strip(), path=path, text=skeleton)},
    ]


async def _judge(client: ModelClient, messages: list[dict[str, Any]], path: str, budget: Budget | None) -> _Verdict:
    try:
        answer = await _call(client, "relevance", messages, budget)
    except ModelCallError as exc:  # one failed file must not sink the stage
        return _Verdict(path=path, problem=f"call failed ({_error_of(exc)})")
    relevant, summary = parse_relevance(answer)
    if relevant is None:
        return _Verdict(path=path, summary=summary, problem="malformed answer")
    return _Verdict(path=path, relevant=relevant, summary=summary)


async def _rank_sample(client: ModelClient, issue: str, verdicts: list[_Verdict], sample: int,
                       budget: Budget | None) -> list[str] | str:
    """One ranking of the relevant paths, or why there is none."""
    listing = "\n\n".join(f'<file path="{v.path}">\n{v.summary or "(no summary)"}\n</file>' for v in verdicts)
    messages = [
        {"role": "system", "content": RANKING_SYSTEM},
        {"role": "user", "content": render("ranking_user", issue=issue.strip(), files=listing)},
    ]
    try:
        answer = await _call(client, "primary", messages, budget, sample=sample)
    except ModelCallError as exc:
        return f"call failed ({_error_of(exc)})"
    ranking = parse_ranking(answer, [v.path for v in verdicts])
    return ranking or "no known path in the answer"


async def _gather_or_raise(coros: list[Any]) -> list[Any]:
    """Results in order; waits for every call (so all completed calls get stored) before raising."""
    results = await asyncio.gather(*coros, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result  # BudgetExceeded or a bug; per-call model failures were caught already
    return results


# -- fill -----------------------------------------------------------------------------------------


def count_tokens(text: str, model: str) -> int:
    """Tokens of `text` for `model` via litellm (no tokenizer download); len/4 when litellm fails."""
    name = "" if any(tag in model.lower() for tag in _DOWNLOADED_TOKENIZERS) else model
    try:
        return llm.count_tokens(name, text)
    except Exception:
        return max(1, len(text) // 4)


def _fill(order: list[str], texts: dict[str, str], summaries: dict[str, str], budget_tokens: int,
          model: str) -> tuple[list[ContextFile], int, list[str]]:
    """Whole files in `order` while they fit; a file that does not fit is skipped, later ones may fit."""
    files: list[ContextFile] = []
    total = 0
    notes = []
    for path in order:
        file = ContextFile(path=path, text=texts[path], summary=summaries.get(path, ""))
        # Count the file as rendered, so total_tokens matches what trajectories are sent.
        file.tokens = count_tokens(ContextBundle(files=[file]).render(), model)
        if total + file.tokens > budget_tokens:
            notes.append(f"{path} left out: {file.tokens} tokens do not fit ({total}/{budget_tokens} used)")
            continue
        files.append(file)
        total += file.tokens
    return files, total, notes


# -- stage ----------------------------------------------------------------------------------------


def _fingerprint(issue: str, client: ModelClient, config: ContextConfig) -> str:
    """What the bundle depends on besides the checkout; a stored bundle with another one is rebuilt."""
    inputs = {
        "issue": issue,
        "config": config.model_dump(),
        "models": [client.settings.model_for("relevance"), client.settings.model_for("primary")],
        "prompts": [template_text("agent", name) for name in CONTEXT_TEMPLATES],
        "prefilter": repr(prefilter_settings(config)),
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


async def build_context(
    repo_dir: Path,
    issue: str,
    client: ModelClient,
    config: ContextConfig,
    *,
    budget: Budget | None = None,
    store: StateStore | None = None,
    key_prefix: str = "context",
) -> ContextBundle:
    """The files every trajectory of this instance sees, best first, within `config.token_budget`.

    Raises `BudgetExceeded` when `budget` runs out (after in-flight calls finish and are stored);
    a single failed or malformed model answer only ends up in the bundle's notes.
    """
    repo_dir = Path(repo_dir)
    if not repo_dir.is_dir():
        raise FileNotFoundError(f"repository checkout not found: {repo_dir}")
    state_key = f"{key_prefix}:context"
    fingerprint = _fingerprint(issue, client, config)
    stored = store.load(state_key) if store is not None else None
    if stored is not None and stored.get("fingerprint") == fingerprint:
        return ContextBundle.model_validate(stored)

    # File walking and tokenizing block; keep the event loop free for other instances' trajectories.
    texts, selection, notes = await asyncio.to_thread(
        prefilter_with_notes, repo_dir, issue, prefilter_settings(config), config.max_file_bytes
    )
    if stored is not None:
        notes.insert(0, "stored context was built from other inputs; rebuilt")
    candidates = selection.full + selection.skeleton
    verdicts = await _two_tier_verdicts(client, issue, texts, selection, config, budget, notes)
    relevant = [v for v in verdicts if v.relevant]
    problems = [v for v in verdicts if v.problem]
    notes.append(
        f"relevance: {len(relevant)} relevant, {len(verdicts) - len(relevant) - len(problems)} not relevant, "
        f"{len(problems)} unusable of {len(verdicts)} file(s)"
    )
    notes += [f"relevance of {v.path}: {v.problem}; treated as not relevant" for v in problems]
    tier_names = {"full": "full-text tier", "skeleton": "skeleton tier, then full text"}
    notes += [f"relevant: {v.path} ({tier_names[selection.tier_of(v.path) or 'full']}; "
              f"prefilter {selection.why(v.path)})" for v in relevant]

    if relevant:
        order = await _ranked(client, issue, relevant, config, budget, notes)
    else:
        order = candidates
        if candidates:
            notes.append("no file judged relevant; falling back to prefilter order")

    summaries = {v.path: v.summary for v in relevant}
    primary = client.settings.model_for("primary")
    files, total, fill_notes = await asyncio.to_thread(
        _fill, order, texts, summaries, config.token_budget, primary
    )
    bundle = ContextBundle(
        files=files, total_tokens=total, budget_tokens=config.token_budget, notes=notes + fill_notes
    )
    if store is not None:
        store.save(state_key, {**bundle.model_dump(), "fingerprint": fingerprint})
    return bundle


def prefilter_settings(config: ContextConfig) -> PrefilterSettings:
    return PrefilterSettings(full_files=config.prefilter_top_files, skeleton_files=config.prefilter_skeleton_files)


async def _two_tier_verdicts(client: ModelClient, issue: str, texts: dict[str, str], selection: Selection,
                             config: ContextConfig, budget: Budget | None, notes: list[str]) -> list[_Verdict]:
    """Full-text verdicts of the full tier, and of the skeleton-tier files whose skeleton passed; prefilter order."""
    limit = config.relevance_max_chars
    full_calls = [_judge(client, relevance_messages(issue, p, texts[p], limit), p, budget) for p in selection.full]
    skeleton_calls = [_judge(client, skeleton_messages(issue, p, selection.skeletons[p], limit), p, budget)
                      for p in selection.skeleton]
    results = await _gather_or_raise(full_calls + skeleton_calls)
    full, sketched = results[: len(full_calls)], results[len(full_calls):]
    # An unusable skeleton verdict must not drop the file unseen: it goes on to the full text too.
    passed = [v.path for v in sketched if v.relevant or v.problem]
    promoted = passed[: config.skeleton_promote_max]
    if selection.skeleton:
        notes.append(f"skeleton tier: {len(passed)} of {len(selection.skeleton)} file(s) passed; "
                     f"{len(promoted)} read in full")
    notes += [f"skeleton of {p} passed but the full-text cap ({config.skeleton_promote_max}) was reached"
              for p in passed[len(promoted):]]
    second = await _gather_or_raise(
        [_judge(client, relevance_messages(issue, p, texts[p], limit), p, budget) for p in promoted]
    )
    rank = {path: i for i, path in enumerate(selection.order)}
    return sorted(full + second, key=lambda v: rank.get(v.path, len(rank)))


async def _ranked(client: ModelClient, issue: str, relevant: list[_Verdict], config: ContextConfig,
                  budget: Budget | None, notes: list[str]) -> list[str]:
    """Relevant paths in merged ranking order (prefilter order when no usable sample)."""
    paths = [v.path for v in relevant]
    if len(paths) < 2 or config.ranking_samples == 0:
        return paths  # nothing to order, or ranking disabled
    results = await _gather_or_raise(
        [_rank_sample(client, issue, relevant, i, budget) for i in range(config.ranking_samples)]
    )
    samples = [r for r in results if isinstance(r, list)]
    notes += [f"ranking sample {i}: {r}; ignored" for i, r in enumerate(results) if isinstance(r, str)]
    if not samples:
        notes.append("no usable ranking; relevant files kept in prefilter order")
    return merge_rankings(samples, paths)
