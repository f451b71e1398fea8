"""Context benchmark: does the model-free prefilter keep every gold file, and what would relevance cost?

Reads each instance's tree straight from a bare mirror at its base commit (`git ls-tree`, `git cat-file
--batch`; no checkout, no Docker, no model) and runs the context stage's prefilter with the stage's
own defaults (`ContextConfig`). The gold patch is read here only, to know which files a fix touches;
the stage never sees it. Per instance: the rank of every gold file in the old BM25 order ("before",
the previous prefilter: BM25 over path and text, top `--before-top`) and in the new prefilter order,
the tier that keeps it, and the relevance input tokens each design would send. Tokens are counted with
the relevance model's tokenizer over the exact message texts the stage builds (`relevance_messages`,
`skeleton_messages`); a skeleton-tier file that passes costs a full-text call too, so the "after"
figure is an upper bound: every skeleton call plus the `skeleton_promote_max` largest full-text calls
of that tier. Per repository: instance recall (every gold file kept), file recall, median/mean tokens.

    python scripts/bench_context.py --dataset ../shared/data/swe-bench-verified.test.jsonl \\
        --repo-url 'file:///work/mirrors/{owner}__{name}.git' [--repos sympy,pytest] [--limit N] \\
        [--set prefilter_top_files=30] [--details out.jsonl] [--ablations]

Prints the goal's figures last (instance recall >= 95%, no repository below 85%, median relevance
input <= 650k tokens) and exits 0 only when the goal holds.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.context.build import (  # noqa: E402
    ContextConfig,
    count_tokens,
    prefilter_settings,
    relevance_messages,
    skeleton_messages,
)
from agent.context.prefilter import PrefilterSettings, select_files  # noqa: E402
from agent.context.scan import decode_text, skip_reason  # noqa: E402
from agent.context.signals import FileFacts, file_facts, tokenize  # noqa: E402

GOAL_INSTANCE_RECALL = 0.95
GOAL_REPO_RECALL = 0.85
GOAL_MEDIAN_TOKENS = 650_000
DEFAULT_MODEL = "anthropic/claude-3-5-haiku-20241022"  # patchswarm's default relevance model

# Heuristics switched off one at a time by --ablations (weights of PrefilterSettings).
ABLATIONS: dict[str, dict[str, Any]] = {
    "source before tests/docs": {"category_weights": (("source", 1.0), ("other", 1.0), ("test", 1.0),
                                                     ("doc", 1.0))},
    "paths/frames/modules named": {"named_path_weight": 0.0, "frame_weight": 0.0, "dotted_weight": 0.0},
    "identifiers defined": {"defines_weight": 0.0},
    "import neighbours": {"neighbour_weight": 0.0},
    "path BM25": {"path_weight": 0.0},
    "text BM25": {"bm25_weight": 0.0},
}


# -- reading trees from a bare mirror -------------------------------------------------------------


class MirrorTree:
    """Files of one bare mirror at any commit, with facts and token counts cached per blob."""

    def __init__(self, git_dir: Path, max_bytes: int, model: str, max_chars: int) -> None:
        self.git_dir, self.max_bytes, self.model, self.max_chars = git_dir, max_bytes, model, max_chars
        self.facts: dict[tuple[str, bool], FileFacts | None] = {}
        self.texts: dict[str, str] = {}  # only while computing facts; dropped after
        self.full_tokens: dict[str, int] = {}
        self.skeleton_tokens: dict[tuple[str, bool], int] = {}

    def entries(self, commit: str) -> tuple[dict[str, str], Counter[str]]:
        """Indexable path -> blob sha at `commit`, and skip reasons counted (as the stage's scan skips)."""
        out = subprocess.run(["git", "--git-dir", str(self.git_dir), "ls-tree", "-r", "-l", "-z", "--full-tree",
                              commit], capture_output=True, check=True).stdout
        entries: dict[str, str] = {}
        skipped: Counter[str] = Counter()
        for record in out.split(b"\0"):
            if not record:
                continue
            meta, path = record.split(b"\t", 1)
            mode, kind, sha, size = meta.split()
            rel = path.decode("utf-8", "replace")
            if kind != b"blob":
                skipped["submodule"] += 1
            elif mode == b"120000":
                skipped["symlink"] += 1
            elif not size.isdigit():  # an object missing from the mirror
                skipped["unreadable"] += 1
            elif (reason := skip_reason(rel, int(size), self.max_bytes)) is not None:
                skipped[reason] += 1
            else:
                entries[rel] = sha.decode()
        return entries, skipped

    def load(self, entries: dict[str, str]) -> tuple[dict[str, FileFacts], Counter[str]]:
        """Facts of every text file among `entries` (binary/empty ones are dropped, as by the stage)."""
        missing = sorted({sha for path, sha in entries.items() if (sha, _is_python(path)) not in self.facts})
        texts = self._cat(missing)
        token_cache: dict[str, list[str]] = {}
        facts: dict[str, FileFacts] = {}
        skipped: Counter[str] = Counter()
        for path, sha in entries.items():
            key = (sha, _is_python(path))
            if key not in self.facts:
                text, reason = texts.get(sha, (None, "unreadable"))
                self.facts[key] = None if text is None else file_facts(path, text, token_cache)
                if text is not None and sha not in self.full_tokens:
                    self.texts[sha] = text
            fact = self.facts[key]
            if fact is None:
                skipped["binary/empty"] += 1
            else:
                facts[path] = fact
        return facts, skipped

    def _cat(self, shas: list[str]) -> dict[str, tuple[str | None, str | None]]:
        if not shas:
            return {}
        out = subprocess.run(["git", "--git-dir", str(self.git_dir), "cat-file", "--batch"],
                             input="\n".join(shas).encode() + b"\n", capture_output=True, check=True).stdout
        result: dict[str, tuple[str | None, str | None]] = {}
        pos = 0
        for sha in shas:
            end = out.index(b"\n", pos)
            header = out[pos:end].split()
            if header[-1] == b"missing":
                result[sha] = (None, "unreadable")
                pos = end + 1
                continue
            size = int(header[2])
            result[sha] = decode_text(out[end + 1 : end + 1 + size])
            pos = end + 1 + size + 1
        return result

    def text_tokens(self, sha: str) -> int:
        """Tokens of the file text as a full-text relevance call shows it (cut at relevance_max_chars)."""
        if sha not in self.full_tokens:
            text = self.texts.pop(sha, None)
            if text is None:  # seen at an earlier commit, not needed then: read it again
                text = self._cat([sha])[sha][0] or ""
            shown = relevance_messages("", "", text, self.max_chars)[1]["content"]
            self.full_tokens[sha] = count_tokens(shown, self.model) - _EMPTY_CALL[self.model, "full"]
        return self.full_tokens[sha]

    def skel_tokens(self, sha: str, fact: FileFacts) -> int:
        key = (sha, True)
        if key not in self.skeleton_tokens:
            shown = skeleton_messages("", "", fact.skeleton, self.max_chars)[1]["content"]
            self.skeleton_tokens[key] = count_tokens(shown, self.model) - _EMPTY_CALL[self.model, "skeleton"]
        return self.skeleton_tokens[key]


class _EmptyCalls(dict):
    """Tokens of a call with empty issue, path and text, per (model, tier): the per-call overhead."""

    def __missing__(self, key: tuple[str, str]) -> int:
        model, tier = key
        build = relevance_messages if tier == "full" else skeleton_messages
        messages = build("", "", "", 10**9)
        self[key] = value = count_tokens(messages[1]["content"], model)
        return value


_EMPTY_CALL = _EmptyCalls()


def _is_python(path: str) -> bool:
    return path.endswith((".py", ".pyi", ".pyx"))


def call_overhead(model: str, tier: str, issue: str) -> int:
    """Tokens every call of a tier sends besides path and file text: system prompt, template, issue."""
    build = relevance_messages if tier == "full" else skeleton_messages
    system = build("", "", "", 10**9)[0]["content"]
    return count_tokens(system, model) + _EMPTY_CALL[model, tier] + count_tokens(issue.strip(), model)


# -- gold files and the old prefilter -------------------------------------------------------------


def gold_files(patch: str) -> tuple[list[str], list[str]]:
    """(files the gold patch changes that exist at the base commit, files it creates)."""
    created = set(re.findall(r"^--- /dev/null\n\+\+\+ b/(\S+)", patch, re.M))
    changed = [p for p in dict.fromkeys(re.findall(r"^diff --git a/(\S+) b/", patch, re.M)) if p not in created]
    return changed, sorted(created)


def bm25_okapi_order(facts: dict[str, FileFacts], issue: str) -> list[str]:
    """The previous prefilter: rank_bm25's BM25Okapi (k1 1.5, b 0.75, epsilon 0.25) over path + text tokens."""
    paths = sorted(facts)
    cache: dict[str, list[str]] = {}
    path_terms = {p: Counter(tokenize(p, cache)) for p in paths}
    lengths = {p: facts[p].length + sum(path_terms[p].values()) for p in paths}
    n = len(paths)
    avg = sum(lengths.values()) / n if n else 1.0
    df: Counter[str] = Counter()
    for p in paths:
        df.update(set(facts[p].terms) | set(path_terms[p]))
    idf = {t: math.log(n - d + 0.5) - math.log(d + 0.5) for t, d in df.items()}
    eps = 0.25 * (sum(idf.values()) / len(idf)) if idf else 0.0
    idf = {t: (v if v >= 0 else eps) for t, v in idf.items()}
    query = sorted(set(tokenize(issue, cache)))
    scores = {}
    for p in paths:
        norm = 1.5 * (1 - 0.75 + 0.75 * lengths[p] / avg)
        s = 0.0
        for t in query:
            tf = facts[p].terms.get(t, 0) + path_terms[p].get(t, 0)
            if tf:
                s += idf.get(t, 0.0) * tf * 2.5 / (tf + norm)
        scores[p] = s
    return sorted(paths, key=lambda p: (-scores[p], p))


# -- one instance ---------------------------------------------------------------------------------


def measure(row: dict, tree: MirrorTree, config: ContextConfig, before_top: int,
            ablations: dict[str, PrefilterSettings]) -> dict:
    issue = row["problem_statement"]
    gold, created = gold_files(row["patch"])
    entries, skipped = tree.entries(row["base_commit"])
    facts, unreadable = tree.load(entries)
    settings = prefilter_settings(config)
    before = bm25_okapi_order(facts, issue)
    selection = select_files(facts, issue, settings)
    model, full_cost, skel_cost = tree.model, call_overhead(tree.model, "full", issue), None

    def full_call(path: str) -> int:
        return full_cost + count_tokens(path, model) + tree.text_tokens(entries[path])

    before_kept = before[:before_top]
    tokens_before = sum(full_call(p) for p in before_kept)
    tokens_full = sum(full_call(p) for p in selection.full)
    skel_cost = call_overhead(model, "skeleton", issue)
    skeleton_calls = [skel_cost + count_tokens(p, model) + tree.skel_tokens(entries[p], facts[p])
                      for p in selection.skeleton]
    promotions = sorted((full_call(p) for p in selection.skeleton), reverse=True)[: config.skeleton_promote_max]
    for sha in set(entries.values()):
        tree.texts.pop(sha, None)  # texts are kept only until their tokens are counted

    rank_before = {p: i + 1 for i, p in enumerate(before)}
    rank_after = {p: i + 1 for i, p in enumerate(selection.order)}
    kept_before = set(before_kept)
    gold_rows = [{"path": g, "rank_before": rank_before.get(g), "kept_before": g in kept_before,
                  "rank_after": rank_after.get(g), "tier": selection.tier_of(g),
                  "why": selection.why(g) if g in rank_after else "not indexed"} for g in gold]
    record = {
        "instance_id": row["instance_id"], "repo": row["repo"], "files": len(facts),
        "skipped": dict(skipped + unreadable), "created_files": created, "gold": gold_rows,
        "before_kept": all(r["kept_before"] for r in gold_rows),
        "full_tier_kept": all(r["tier"] == "full" for r in gold_rows),
        "after_kept": all(r["tier"] is not None for r in gold_rows),
        "tokens_before": tokens_before,
        "tokens_full_tier": tokens_full, "tokens_skeleton_tier": sum(skeleton_calls),
        "tokens_promotion_bound": sum(promotions),
        "tokens_after": tokens_full + sum(skeleton_calls) + sum(promotions),
        "full_files": len(selection.full), "skeleton_files": len(selection.skeleton),
    }
    record["ablations"] = {}
    for name, ablated in ablations.items():
        other = select_files(facts, issue, ablated)
        record["ablations"][name] = all(other.tier_of(g) is not None for g in gold)
    return record


# -- report ---------------------------------------------------------------------------------------


def _pct(values: list[bool]) -> str:
    return f"{100 * sum(values) / len(values):5.1f}%" if values else "    -"


def _k(value: float) -> str:
    return f"{value / 1000:7.0f}k"


def summarize(records: list[dict], unavailable: dict[str, int], title: str) -> bool:
    by_repo: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_repo[r["repo"]].append(r)
    print(f"\n== {title}: {len(records)} instance(s) with a mirror ==")
    header = (f"{'repository':28} {'n':>4} | {'before inst':>11} {'file':>6} {'med tok':>8} | "
              f"{'full tier':>9} {'after inst':>10} {'file':>6} {'med tok':>8} {'mean tok':>8}")
    print(header)
    print("-" * len(header))
    rows = sorted(by_repo.items()) + [("ALL", records)]
    for repo, group in rows:
        files = [g for r in group for g in r["gold"]]
        print(f"{repo:28} {len(group):4} | {_pct([r['before_kept'] for r in group]):>11} "
              f"{_pct([g['kept_before'] for g in files]):>6} "
              f"{_k(statistics.median(r['tokens_before'] for r in group)):>8} | "
              f"{_pct([r['full_tier_kept'] for r in group]):>9} {_pct([r['after_kept'] for r in group]):>10} "
              f"{_pct([g['tier'] is not None for g in files]):>6} "
              f"{_k(statistics.median(r['tokens_after'] for r in group)):>8} "
              f"{_k(statistics.mean(r['tokens_after'] for r in group)):>8}")
    for repo, count in sorted(unavailable.items()):
        print(f"{repo:28} {count:4} | unavailable: no mirror")
    if records and records[0]["ablations"]:
        print("\nablations (instance recall with one heuristic switched off; ALL):")
        for name in records[0]["ablations"]:
            print(f"  without {name:30} {_pct([r['ablations'][name] for r in records])}")
    lost = [(r["instance_id"], g["path"], g["rank_after"], g["why"]) for r in records for g in r["gold"]
            if g["tier"] is None]
    if lost:
        print(f"\ngold files not sent to relevance ({len(lost)}):")
        for instance, path, rank, why in lost[:40]:
            print(f"  {instance:40} {path:60} rank {rank} {why[:80]}")
    if not records:
        print("no instance measured")
        return False
    recall = sum(r["after_kept"] for r in records) / len(records)
    worst_repo, worst = min(((repo, sum(r["after_kept"] for r in g) / len(g)) for repo, g in by_repo.items()),
                            key=lambda x: x[1])
    median = statistics.median(r["tokens_after"] for r in records)
    before_recall = sum(r["before_kept"] for r in records) / len(records)
    before_median = statistics.median(r["tokens_before"] for r in records)
    ok = recall >= GOAL_INSTANCE_RECALL and worst >= GOAL_REPO_RECALL and median <= GOAL_MEDIAN_TOKENS
    print(f"\ngoal figures ({title}):")
    print(f"  instances with every gold file sent to relevance: {100 * recall:.1f}% (goal >= "
          f"{100 * GOAL_INSTANCE_RECALL:.0f}%; before {100 * before_recall:.1f}%)")
    print(f"  worst repository: {worst_repo} {100 * worst:.1f}% (goal >= {100 * GOAL_REPO_RECALL:.0f}%)")
    print(f"  median relevance input tokens per instance: {median / 1000:.0f}k (goal <= "
          f"{GOAL_MEDIAN_TOKENS // 1000}k; before {before_median / 1000:.0f}k); mean "
          f"{statistics.mean(r['tokens_after'] for r in records) / 1000:.0f}k")
    print(f"  goal {'MET' if ok else 'NOT met'}")
    return ok


# -- main -----------------------------------------------------------------------------------------


def mirror_path(template: str, repo: str) -> Path:
    owner, name = repo.split("/", 1)
    url = template.format(owner=owner, name=name, repo=repo)
    if url.startswith("file://"):
        url = url.removeprefix("file://")
    elif "://" in url:
        raise SystemExit(f"--repo-url must name local bare mirrors (file:// or a path), not {url}")
    return Path(url)


def parse_overrides(pairs: list[str]) -> dict[str, object]:
    values: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in ContextConfig.model_fields:
            raise SystemExit(f"--set expects a ContextConfig field=value, got {pair!r}")
        values[key] = json.loads(value) if value[:1].isdigit() or value in ("true", "false") else value
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, type=Path, action="append", help="JSONL of SWE-bench rows")
    parser.add_argument("--repo-url", required=True, help="mirror template, e.g. file:///m/{owner}__{name}.git")
    parser.add_argument("--repos", default="", help="comma-separated substrings of repositories to include")
    parser.add_argument("--limit", type=int, default=0, help="at most this many instances per repository")
    parser.add_argument("--before-top", type=int, default=50, help="files the previous BM25 prefilter kept")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="ContextConfig field=value")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="tokenizer of the relevance model")
    parser.add_argument("--details", type=Path, help="write one JSON line per instance here")
    parser.add_argument("--ablations", action="store_true", help="also measure each heuristic switched off")
    args = parser.parse_args(argv)

    config = ContextConfig.model_validate(parse_overrides(args.overrides))
    base = prefilter_settings(config)
    ablations = ({name: dataclasses.replace(base, **change) for name, change in ABLATIONS.items()}
                 if args.ablations else {})
    rows = []
    for dataset in args.dataset:
        if not dataset.is_file():
            raise SystemExit(f"dataset not found: {dataset}")
        rows += [json.loads(line) for line in dataset.read_text().splitlines() if line.strip()]
    wanted = [w for w in args.repos.split(",") if w]
    by_repo: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        if not wanted or any(w in row["repo"] for w in wanted):
            by_repo[row["repo"]].append(row)

    records: list[dict] = []
    unavailable: dict[str, int] = {}
    started = time.monotonic()
    details = args.details.open("w") if args.details else None
    for repo, group in sorted(by_repo.items()):
        git_dir = mirror_path(args.repo_url, repo)
        if not git_dir.is_dir():
            unavailable[repo] = len(group)
            continue
        tree = MirrorTree(git_dir, config.max_file_bytes, args.model, config.relevance_max_chars)
        group = sorted(group, key=lambda r: r["created_at"])  # neighbouring commits share most blobs
        for row in group[: args.limit or None]:
            record = measure(row, tree, config, args.before_top, ablations)
            records.append(record)
            if details:
                details.write(json.dumps(record) + "\n")
        print(f"{repo}: {min(len(group), args.limit or len(group))} instance(s), "
              f"{time.monotonic() - started:.0f}s elapsed", file=sys.stderr)
    if details:
        details.close()
    title = " + ".join(d.name for d in args.dataset)
    print(f"settings: {json.dumps(config.model_dump())}")
    return 0 if summarize(records, unavailable, title) else 1


if __name__ == "__main__":
    raise SystemExit(main())
