"""Fidelity of local SWE-bench environments: the gold patch must resolve, the empty patch must not.

    python scripts/fidelity.py run --dataset ../shared/data/swe-bench-lite.test.jsonl \
        --mirrors /work/mirrors --repo sympy/sympy --limit 5 --runs logs/fidelity
    python scripts/fidelity.py table --runs logs/fidelity --out docs/fidelity.md

`run` picks the instances of the chosen repositories whose base commit is in the local mirror
(`{mirrors}/{owner}__{name}.git`), grades each one's gold then empty patch with `patchswarm eval`'s own
code (the image built for gold is reused by empty), and writes the table. `table` rebuilds docs/fidelity.md from every
run under `--runs`, so runs of different repositories (or machines' halves) add up.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fidelity_disk import union_bytes  # noqa: E402
from fidelity_table import environment_facts, failure_class, records_in, write_table  # noqa: E402

from patchswarm.swebench.dataset import SweInstance, load_instances  # noqa: E402

__all__ = ["environment_facts", "failure_class", "records_in", "union_bytes", "write_table"]  # what `table` is made of

MIRROR = "{mirrors}/{owner}__{name}.git"


def mirror_path(mirrors: Path, repo: str) -> Path:
    owner, _, name = repo.partition("/")
    return Path(MIRROR.format(mirrors=mirrors, owner=owner, name=name))


def commits_present(git_dir: Path, commits: list[str]) -> set[str]:
    """Which of `commits` the repository has (one `git cat-file --batch-check` for all)."""
    if not git_dir.is_dir() or not commits:
        return set()
    done = subprocess.run(["git", "cat-file", "--batch-check"], cwd=git_dir, capture_output=True, text=True,
                          input="".join(f"{c}^{{commit}}\n" for c in commits))
    return {c for c, line in zip(commits, done.stdout.splitlines(), strict=False) if not line.endswith("missing")}


def population(datasets: list[Path], mirrors: Path) -> dict[str, tuple[int, int]]:
    """Per repository: (instances in the datasets, each id once; those whose base and environment commits
    are in the mirror), what the table counts its tried instances against."""
    rows: dict[str, dict[str, SweInstance]] = defaultdict(dict)
    for dataset in datasets:
        for instance in load_instances(dataset):
            rows[instance.repo].setdefault(instance.instance_id, instance)
    counts = {}
    for repo, by_id in sorted(rows.items()):
        wanted = sorted({c for i in by_id.values() for c in (i.base_commit, i.environment_setup_commit)})
        present = commits_present(mirror_path(mirrors, repo), wanted)
        counts[repo] = (len(by_id), sum(i.base_commit in present and i.environment_setup_commit in present
                                        for i in by_id.values()))
    return counts


def pick(datasets: list[Path], mirrors: Path, repos: set[str] | None, limit: int | None,
         ids: set[str] | None) -> tuple[list[SweInstance], dict[str, Counter]]:
    """Instances of the wanted repositories whose base and environment commits are in the mirror (each id once)."""
    chosen: dict[str, SweInstance] = {}
    skipped: dict[str, Counter] = defaultdict(Counter)
    per_repo: Counter = Counter()
    for dataset in datasets:
        for instance in load_instances(dataset):
            if (repos and instance.repo not in repos) or (ids and instance.instance_id not in ids):
                continue
            if instance.instance_id in chosen:
                continue
            git_dir = mirror_path(mirrors, instance.repo)
            if not git_dir.is_dir():
                skipped[instance.repo]["no mirror"] += 1
                continue
            wanted = [instance.base_commit, instance.environment_setup_commit]
            if len(commits_present(git_dir, wanted)) < len(set(wanted)):
                skipped[instance.repo]["commit not in mirror"] += 1
                continue
            if limit is not None and per_repo[instance.repo] >= limit:
                continue
            per_repo[instance.repo] += 1
            chosen[instance.instance_id] = instance
    return list(chosen.values()), skipped


def write_selection(path: Path, datasets: list[str], instances: list[SweInstance], table: object,
                    skipped: dict[str, Counter]) -> None:
    """What a run chose, with each instance's environment facts; a run resumed or re-used under the same name
    adds to the file (its earlier instances keep their facts: the table reads them from here)."""
    old = json.loads(path.read_text()) if path.is_file() else {}
    envs = {**old.get("envs", {}), **{i.instance_id: environment_facts(i, table) for i in instances}}
    path.write_text(json.dumps({
        "datasets": list(dict.fromkeys([*old.get("datasets", []), *datasets])),
        "instances": list(dict.fromkeys([*old.get("instances", []), *(i.instance_id for i in instances)])),
        "envs": envs, "skipped": {repo: dict(c) for repo, c in skipped.items()}}, indent=2))


def run(args: argparse.Namespace) -> None:
    """Per instance, gold then (where gold got an image) empty, two instances at a time by default.

    Each grading is its own evaluation run (`<name>-<instance>-<mode>/`), written when it ends, so a run
    stopped half way (Ctrl-C, SIGTERM, `--start-before`) keeps every pair it finished."""
    from concurrent.futures import ThreadPoolExecutor

    from patchswarm.phases import PhaseBoard
    from patchswarm.swebench.cli import result_line
    from patchswarm.swebench.evaluation import evaluate
    from patchswarm.swebench.grading import InstanceReport
    from patchswarm.swebench.specs import load_spec_table
    from sandbox.engine import docker_client
    from sandbox.manager import install_termination_handler

    repos = list(args.repo or [])
    instances, skipped = pick([Path(d) for d in args.dataset], Path(args.mirrors), set(repos) or None, args.limit,
                              set(args.instance) if args.instance else None)
    instances.sort(key=lambda i: repos.index(i.repo) if i.repo in repos else 0)  # stable: dataset order within
    runs = Path(args.runs)
    runs.mkdir(parents=True, exist_ok=True)
    done = {mode: set(records_in([runs], mode)) if args.resume else set() for mode in ("gold", "empty")}
    client, table = docker_client(), load_spec_table()
    write_selection(runs / f"{args.name}-selection.json", args.dataset, instances, table, skipped)
    url = f"file://{Path(args.mirrors).resolve()}/{{owner}}__{{name}}.git"
    start_before = parse_start_before(args.start_before)
    install_termination_handler()  # SIGTERM ends the pool's wait like Ctrl-C; the gradings under way finish

    with PhaseBoard(2 * len(instances), title=f"fidelity {args.name}") as board:
        def one(instance: SweInstance) -> None:
            if start_before and datetime.now(UTC) >= start_before:
                return
            for mode in ("gold", "empty"):
                run_id = f"{args.name}-{instance.instance_id}-{mode}"
                if instance.instance_id in done[mode]:
                    continue
                if mode == "empty" and not without_failed_builds(
                        [instance], runs / run_id.replace("-empty", "-gold") / "instances.jsonl"):
                    return  # an image gold could not build fails the same way again: not built twice

                def on_result(r: InstanceReport, mode: str = mode) -> None:
                    board.finish(f"{r.instance_id} {mode}", r.status, result_line(r))

                def on_phase(iid: str, phase: str, mode: str = mode) -> None:
                    board.phase(f"{iid} {mode}", phase)

                evaluate(client, [instance], mode=mode, spec_table=table, repo_url_template=url, report_dir=runs,
                         run_id=run_id, timeout=args.timeout, handle_signals=False, on_phase=on_phase,
                         on_result=on_result)

        pool = ThreadPoolExecutor(max_workers=max(1, args.workers))
        try:
            list(pool.map(one, instances))
        finally:
            pool.shutdown(cancel_futures=True)
    write_table([runs], Path(args.out), notes=Path(args.notes),
                population=population([Path(d) for d in args.dataset], Path(args.mirrors)))


def parse_start_before(text: str | None) -> datetime | None:
    """`HH:MM` (UTC, today): no instance starts at or after it."""
    if not text:
        return None
    try:
        hour, minute = (int(part) for part in text.split(":"))
        return datetime.now(UTC).replace(hour=hour, minute=minute, second=0, microsecond=0)
    except ValueError:
        raise SystemExit(f"--start-before: expected HH:MM (UTC), got {text!r}") from None


def without_failed_builds(instances: list[SweInstance], gold_records: Path) -> list[SweInstance]:
    """The instances whose image the gold run built (or found): the empty patch is graded only there."""
    failed = set()
    if gold_records.is_file():
        for line in gold_records.read_text().splitlines():
            record = json.loads(line) if line.strip() else {}
            if (record.get("error") or "").startswith("no image"):
                failed.add(record["instance_id"])
    return [i for i in instances if i.instance_id not in failed]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    go = sub.add_parser("run", help="grade gold and empty, then write the table")
    go.add_argument("--dataset", action="append", required=True, help="dataset file (repeat for several)")
    go.add_argument("--mirrors", required=True, help="folder of {owner}__{name}.git mirrors")
    go.add_argument("--repo", action="append", help="only this repository (repeat)")
    go.add_argument("--instance", action="append", help="only this instance (repeat)")
    go.add_argument("--limit", type=int, help="at most this many instances per repository")
    go.add_argument("--name", default="fidelity", help="name of this run (its folders under --runs)")
    go.add_argument("--workers", type=int, default=2, help="instances graded at once")
    go.add_argument("--timeout", type=int, default=1800)
    go.add_argument("--start-before", help="HH:MM UTC: start no instance at or after it (the finished ones are kept)")
    go.add_argument("--resume", action="store_true", help="skip gradings already recorded under --runs")
    go.add_argument("--runs", default="logs/fidelity", help="where this run's folders go")
    table = sub.add_parser("table", help="rebuild the table from the runs")
    table.add_argument("--runs", action="append", help="a folder of runs (repeat: they add up); default logs/fidelity")
    table.add_argument("--dataset", action="append", default=[], help="dataset file whose instances the table counts tried ones against (repeat)")
    table.add_argument("--mirrors", help="folder of {owner}__{name}.git mirrors (with --dataset: how many are in them)")
    for p in (go, table):
        p.add_argument("--out", default="docs/fidelity.md")
        p.add_argument("--notes", default="docs/fidelity-notes.md", help="markdown appended to the table")
    args = parser.parse_args()
    if args.command == "run":
        run(args)
    else:
        counts = population([Path(d) for d in args.dataset], Path(args.mirrors or ".")) if args.dataset else None
        print(write_table([Path(r) for r in args.runs or ["logs/fidelity"]], Path(args.out), notes=Path(args.notes),
                          population=counts))


if __name__ == "__main__":
    main()
