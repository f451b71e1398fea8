"""Fidelity of local SWE-bench environments: the gold patch must resolve, the empty patch must not.

    python scripts/fidelity.py run --dataset ../shared/data/swe-bench-lite.test.jsonl \
        --mirrors /work/mirrors --repo sympy/sympy --limit 5 --runs logs/fidelity
    python scripts/fidelity.py table --runs logs/fidelity --out docs/fidelity.md

`run` picks the instances of the chosen repositories whose base commit is in the local mirror
(`{mirrors}/{owner}__{name}.git`), grades gold then empty with `patchswarm eval`'s own code (the images
built for gold are reused by empty), and writes the table. `table` rebuilds docs/fidelity.md from every
run under `--runs`, so runs of different repositories (or machines' halves) add up.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from patchswarm.swebench.dataset import SweInstance, load_instances  # noqa: E402

MIRROR = "{mirrors}/{owner}__{name}.git"


def mirror_path(mirrors: Path, repo: str) -> Path:
    owner, _, name = repo.partition("/")
    return Path(MIRROR.format(mirrors=mirrors, owner=owner, name=name))


def has_commit(git_dir: Path, commit: str) -> bool:
    return subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=git_dir,
                          capture_output=True).returncode == 0


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
            if not (has_commit(git_dir, instance.base_commit) and has_commit(git_dir, instance.environment_setup_commit)):
                skipped[instance.repo]["commit not in mirror"] += 1
                continue
            if limit is not None and per_repo[instance.repo] >= limit:
                continue
            per_repo[instance.repo] += 1
            chosen[instance.instance_id] = instance
    return list(chosen.values()), skipped


def run(args: argparse.Namespace) -> None:
    from patchswarm.phases import PhaseBoard
    from patchswarm.swebench.cli import result_line
    from patchswarm.swebench.evaluation import evaluate
    from patchswarm.swebench.grading import InstanceReport
    from patchswarm.swebench.specs import load_spec_table
    from sandbox.engine import docker_client

    repos = set(args.repo) if args.repo else None
    instances, skipped = pick([Path(d) for d in args.dataset], Path(args.mirrors), repos, args.limit,
                              set(args.instance) if args.instance else None)
    runs = Path(args.runs)
    runs.mkdir(parents=True, exist_ok=True)
    client, table = docker_client(), load_spec_table()
    (runs / f"{args.name}-selection.json").write_text(json.dumps(
        {"datasets": args.dataset, "instances": [i.instance_id for i in instances],
         "envs": {i.instance_id: environment_facts(i, table) for i in instances},
         "skipped": {repo: dict(c) for repo, c in skipped.items()}}, indent=2))
    url = f"file://{Path(args.mirrors).resolve()}/{{owner}}__{{name}}.git"
    for mode in ("gold", "empty"):
        if mode == "empty":  # an image gold could not build fails the same way again: not built twice
            instances = without_failed_builds(instances, runs / f"{args.name}-gold" / "instances.jsonl")
        with PhaseBoard(len(instances), title=f"fidelity {args.name} {mode}") as board:
            def on_result(r: InstanceReport, board: PhaseBoard = board) -> None:
                board.finish(r.instance_id, r.status, result_line(r))

            evaluate(client, instances, mode=mode, spec_table=table, repo_url_template=url, report_dir=runs,
                     run_id=f"{args.name}-{mode}", workers=args.workers, timeout=args.timeout,
                     on_phase=board.phase,
                     on_result=on_result)
    write_table(runs, Path(args.out), notes=Path(args.notes))


def without_failed_builds(instances: list[SweInstance], gold_records: Path) -> list[SweInstance]:
    """The instances whose image the gold run built (or found): the empty patch is graded only there."""
    failed = set()
    if gold_records.is_file():
        for line in gold_records.read_text().splitlines():
            record = json.loads(line) if line.strip() else {}
            if (record.get("error") or "").startswith("no image"):
                failed.add(record["instance_id"])
    return [i for i in instances if i.instance_id not in failed]


def environment_facts(instance: SweInstance, table) -> dict:
    """What identifies the instance's environment layer, and the Python the official image has."""
    try:
        python = table.spec(instance.repo, instance.version).python
    except Exception:  # noqa: BLE001 - a row without a spec is still listed, its Python unknown
        python = None
    return {"version": instance.version, "environment_setup_commit": instance.environment_setup_commit,
            "python_wanted": python}


# -- the table -------------------------------------------------------------------------------------


def _records(runs: Path, mode: str) -> dict[str, dict]:
    """The newest record of every instance over all runs of `mode` (later runs replace earlier ones)."""
    found: dict[str, dict] = {}
    for path in sorted(runs.glob(f"*-{mode}/instances.jsonl"), key=lambda p: p.stat().st_mtime):
        for line in path.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                found[record["instance_id"]] = record
    return found


# What a test that reaches for the network prints in a sandbox without one.
NETWORK_ERROR = re.compile(r"Temporary failure in name resolution|Name or service not known|Network is unreachable"
                           r"|nodename nor servname provided|getaddrinfo failed")


def _test_output(record: dict) -> str:
    path = Path(record.get("log_dir") or "") / "test_output.txt"
    return path.read_text(errors="replace") if record.get("log_dir") and path.is_file() else ""


def failure_class(gold: dict, empty: dict | None) -> str | None:
    """What went wrong with an instance, in words general enough to count; None when all is as it should be."""
    error = gold.get("error") or ""
    if error.startswith("no image"):
        lacking = re.search(r"the source lacks (\S+) \(object", error)
        if lacking:  # a partial snapshot: the repository at the base commit cannot be had from this mirror
            return "environment: the mirror snapshot lacks a file of the commit"
        command = re.search(r"command '([^']*)'", error)
        return f"environment build failed: {command.group(1)[:80]}" if command else f"environment: {error[:100]}"
    if gold["status"] == "timeout":
        return "gold: tests timed out"
    if not gold["resolved"]:
        if NETWORK_ERROR.search(_test_output(gold)):
            return "environment: tests need network (grading runs offline)"
        if "no test results" in error:
            return "gold: no test results in the log"
        return "gold: tests fail with the gold patch"
    if empty is not None and empty["resolved"]:
        return "empty patch resolves"
    if empty is None:
        return "empty: not run"
    return None


def _verdict(record: dict | None) -> str:
    if record is None:
        return "not run"
    return "resolved" if record["resolved"] else record["status"]


def _example(record: dict) -> str:
    detail = record.get("env_broken_reason") or record.get("error") or record["status"]
    return f"{record['instance_id']}: {detail[:300]}"


def _facts(runs: Path) -> dict[str, dict]:
    """Each tried instance's environment facts, from the selection files (older ones: from their datasets)."""
    facts: dict[str, dict] = {}
    table, loaded = None, {}
    for path in sorted(runs.glob("*-selection.json"), key=lambda p: p.stat().st_mtime):
        selection = json.loads(path.read_text())
        if "envs" in selection:
            facts.update(selection["envs"])
            continue
        wanted = set(selection.get("instances", []))
        for dataset in selection.get("datasets", []):
            if not Path(dataset).is_file():
                continue
            if dataset not in loaded:
                loaded[dataset] = load_instances(Path(dataset))
            if table is None:
                from patchswarm.swebench.specs import load_spec_table
                table = load_spec_table()
            for instance in loaded[dataset]:
                if instance.instance_id in wanted and instance.instance_id not in facts:
                    facts[instance.instance_id] = environment_facts(instance, table)
    return facts


def python_note(record: dict, fact: dict) -> str:
    """How the instance's Python compares with the official image's (conda, the spec's Python)."""
    used, wanted = record.get("python_used"), fact.get("python_wanted")
    if record.get("image_kind") == "official":
        return "official image"
    if not used:
        return f"{wanted or '?'} wanted, none built"
    if record.get("python_nearest") or (wanted and used != wanted):
        return f"{used} (spec {wanted or '?'}: nearest), venv+pip"
    return f"{used}, venv+pip"


def write_table(runs: Path, out: Path, disk: str | None = None, notes: Path | None = None) -> str:
    gold, empty = _records(runs, "gold"), _records(runs, "empty")
    facts = _facts(runs)
    per_repo: dict[str, Counter] = defaultdict(Counter)
    classes: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    pythons: dict[str, Counter] = defaultdict(Counter)
    first, cached = defaultdict(list), []
    for iid, g in sorted(gold.items()):
        repo, e = g["repo"], empty.get(iid)
        tally = per_repo[repo]
        tally["tried"] += 1
        tally["built"] += not (g.get("error") or "").startswith("no image")
        tally["gold"] += bool(g["resolved"])
        tally["empty"] += bool(e and e["resolved"])
        tally["empty run"] += e is not None
        klass = failure_class(g, e)
        if klass:
            classes[repo][klass].append(e if klass == "empty patch resolves" and e is not None else g)
        if g.get("python_used"):
            pythons[repo][f"{g['python_used']}{' (nearest)' if g.get('python_nearest') else ''}"] += 1
        for layer in ("system", "env", "instance"):
            if g.get(f"{layer}_build_s"):
                first[layer].append(g[f"{layer}_build_s"])
        if e and e.get("image_s"):
            cached.append(e["image_s"])
    lines = [
        "# Fidelity of local SWE-bench environments",
        "",
        "Regenerate: `python scripts/fidelity.py run ...` then `python scripts/fidelity.py table` (see the script).",
        "Every instance is graded twice with `patchswarm eval`'s code, which grades with the swebench",
        "package's own log parsers and `get_eval_report`: the gold patch must resolve, the empty patch must not.",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}.",
        "",
        "| repository | tried | env built | gold resolved | empty resolved | Python used |",
        "|---|---:|---:|---:|---:|---|",
    ]
    totals: Counter[str] = Counter()
    for repo, tally in sorted(per_repo.items()):
        totals.update(tally)
        used = ", ".join(f"{k}: {v}" for k, v in sorted(pythons[repo].items()))
        lines.append(f"| {repo} | {tally['tried']} | {tally['built']} | {tally['gold']} | "
                     f"{tally['empty']} of {tally['empty run']} | {used} |")
    lines.append(f"| **total** | {totals['tried']} | {totals['built']} | {totals['gold']} | "
                 f"{totals['empty']} of {totals['empty run']} | |")
    lines += ["", "## Failure classes", ""]
    if not any(classes.values()):
        lines.append("None.")
    for repo, by_class in sorted(classes.items()):
        for klass, records in sorted(by_class.items(), key=lambda kv: -len(kv[1])):
            ids = ", ".join(r["instance_id"] for r in records)
            lines.append(f"- **{repo}** — {klass} ({len(records)}): {ids}. Example: {_example(records[0])}")
    lines += ["", "## Build time per layer (seconds)", "",
              "| layer | first builds | median | max |", "|---|---:|---:|---:|"]
    for layer in ("system", "env", "instance"):
        values = sorted(first[layer])
        if values:
            lines.append(f"| {layer} | {len(values)} | {values[len(values) // 2]:.0f} | {values[-1]:.0f} |")
    if cached:
        values = sorted(cached)
        lines.append(f"| all three cached (image found, empty run) | {len(values)} | {values[len(values) // 2]:.1f} | "
                     f"{values[-1]:.1f} |")
    lines += ["", "## Disk used by the evaluation's images", "", disk or image_disk(gold.values())]
    lines += ["", "## Every instance", "",
              "Env: the row's version and environment_setup_commit (one environment layer each). "
              "Python: the local image's against the official one's.", "",
              "| instance | env | Python | gold | empty | gold run (s) | cause |", "|---|---|---|---|---|---:|---|"]
    for iid, g in sorted(gold.items()):
        fact, e = facts.get(iid, {}), empty.get(iid)
        env = f"{fact.get('version', '?')} @ {(fact.get('environment_setup_commit') or '?')[:8]}"
        klass = failure_class(g, e) or ""
        lines.append(f"| {iid} | {env} | {python_note(g, fact)} | {_verdict(g)} | {_verdict(e)} | "
                     f"{g.get('duration_s', 0):.0f} | {klass} |")
    lines += ["", DIFFERENCES]
    if notes is not None and notes.is_file():  # causes found by reading the logs, kept by hand beside the table
        lines += ["", notes.read_text().rstrip()]
    text = "\n".join(lines) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return text


DIFFERENCES = """## Where local images differ from the official ones

- Python: the Debian Python nearest to the spec's (3.9 bullseye, 3.11 bookworm, 3.13 trixie) in a venv, not
  conda; the table's "Python used" says which, and "(nearest)" where it is not the spec's own.
- Packages: the spec's conda packages and environment.yml installed with pip (conda-only ones skipped);
  pip itself raised to 24.0 where Debian's is older than 21.3 (the official conda pip is 23-24).
- No git history: setuptools-scm gets `SETUPTOOLS_SCM_PRETEND_VERSION` = the row's version as X.Y.0.
- Grading runs as root (as in the official images) but without network: the eval script's reinstall uses
  the build backend's wheels saved in the image; a patch adding a new dependency cannot be installed.
- The verdict is the harness's own: the same eval script (base commit named HEAD), the same parser and
  `get_eval_report`. A gold patch that resolves and an empty patch that does not show the FAIL_TO_PASS
  tests flip exactly as the official expectations say."""


LAYER_KINDS = ("instance", "env", "system + base")


def union_bytes(histories: dict[str, list[dict]], env_ids: set[str], system_ids: set[str]) -> dict[str, int]:
    """Bytes on disk of a set of images per layer kind, each shared layer counted once.

    `histories`: image -> its Docker history (newest layer first, as the API gives it). Walking down from
    the instance image, layers are the instance's until the environment image's top, then the
    environment's until the system image's top. Layers are keyed by their image id (ours are committed
    containers) or, for pulled ones, by what made them."""
    seen: set[tuple] = set()
    by_kind = dict.fromkeys(LAYER_KINDS, 0)
    for history in histories.values():
        kind = "instance"
        for entry in history:
            image_id = entry.get("Id", "<missing>")
            if image_id in env_ids:
                kind = "env"
            elif image_id in system_ids:
                kind = "system + base"
            key = (image_id,) if image_id != "<missing>" else \
                (entry.get("Created"), entry.get("CreatedBy"), entry.get("Size"))
            if key not in seen:
                seen.add(key)
                by_kind[kind] += entry.get("Size", 0)
    return by_kind


def image_disk(records) -> str:
    """`docker history` of every image the runs graded in (their parents included: env, system, base)."""
    try:
        import docker

        client = docker.from_env()
        histories, missing = {}, 0
        for tag in sorted({r["image"] for r in records if r.get("image")}):
            try:
                histories[tag] = client.api.history(tag)
            except docker.errors.ImageNotFound:
                missing += 1
        ids = {kind: {i.id for i in client.images.list(filters={"label": f"patchswarm.layer=swebench-{kind}"})}
               for kind in ("env", "system")}
    except Exception as exc:  # noqa: BLE001 - the table is still worth writing without Docker
        return f"Not measured ({exc})."
    if not histories:
        return "Not measured (no image of these runs is left)."
    by_kind = union_bytes(histories, ids["env"], ids["system"])
    parts = ", ".join(f"{kind} {size / 2**30:.2f} GiB" for kind, size in by_kind.items())
    return (f"{len(histories)} instance images with their environment, system and base layers, each shared "
            f"layer counted once: **{sum(by_kind.values()) / 2**30:.2f} GiB** ({parts})"
            + (f"; {missing} images already pruned, not counted" if missing else "") + ".")


def machine() -> str:
    cores = os.cpu_count()
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        memory = 0
    docker = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True, text=True)
    return (f"{platform.node()} ({platform.system()} {platform.machine()}, {cores} cores shared, "
            f"{memory:.0f} GiB, Docker {docker.stdout.strip() or '?'})")


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
    go.add_argument("--workers", type=int, default=1)
    go.add_argument("--timeout", type=int, default=1800)
    for p in (go, sub.add_parser("table", help="rebuild the table from the runs")):
        p.add_argument("--runs", default="logs/fidelity", help="where runs are kept")
        p.add_argument("--out", default="docs/fidelity.md")
        p.add_argument("--notes", default="docs/fidelity-notes.md", help="markdown appended to the table")
    args = parser.parse_args()
    if args.command == "run":
        run(args)
    else:
        print(write_table(Path(args.runs), Path(args.out), notes=Path(args.notes)))


if __name__ == "__main__":
    main()
