"""The fidelity table (docs/fidelity.md) from the records of `scripts/fidelity.py run`: verdicts, failure
classes, per-test counts against the official statuses, build times and disk."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType

from fidelity_disk import image_disk, machine

from patchswarm.swebench.dataset import SweInstance, load_instances
from patchswarm.swebench.specs import CONDA_ONLY


def environment_facts(instance: SweInstance, table) -> dict:
    """What identifies the instance's environment layer, and the Python the official image has."""
    try:
        python = table.spec(instance.repo, instance.version).python
    except Exception:  # noqa: BLE001 - a row without a spec is still listed, its Python unknown
        python = None
    return {"version": instance.version, "environment_setup_commit": instance.environment_setup_commit,
            "python_wanted": python}


# -- the table -------------------------------------------------------------------------------------


def records_in(runs: list[Path], mode: str) -> dict[str, dict]:
    """The newest record of every instance over all runs of `mode` (later runs replace earlier ones).

    Each record gets `_logs`: its log folder found beside its instances.jsonl (`<run>/<model>/<id>`, the
    evaluation's layout), so runs copied from another folder or machine still show their test output."""
    found: dict[str, dict] = {}
    paths = [path for folder in runs for path in folder.glob(f"*-{mode}/instances.jsonl")]
    for path in sorted(paths, key=lambda p: p.stat().st_mtime):
        for line in path.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                beside = path.parent / record.get("model_name_or_path", mode) / record["instance_id"]
                record["_logs"] = str(beside) if beside.is_dir() else record.get("log_dir")
                found[record["instance_id"]] = record
    return found


# What a test that reaches for the network prints in a sandbox without one.
NETWORK_ERROR = re.compile(r"Temporary failure in name resolution|Name or service not known|Network is unreachable"
                           r"|nodename nor servname provided|getaddrinfo failed")

# A library that fetches its test data on first use (pydicom's data_manager, from the pydicom-data repository)
# warns and returns None offline; the tests then fail on the missing file, not on a DNS error of their own.
DATA_DOWNLOAD = re.compile(r"A download failure occurred while attempting to retrieve (\S+)")


# pip in the eval script's reinstall, offline (PIP_NO_INDEX, the image's wheelhouse only).
OFFLINE_INSTALL = re.compile(r"^ERROR: No matching distribution found for (\S+)", re.MULTILINE)


# Tests whose outcome depends on the interpreter's patch release. The official images' conda Python 3.9 is
# a late 3.9.x; the only 3.9 this offline machine can install is Debian bullseye's 3.9.2.
PATCH_RELEASE_FIXES = (
    (re.compile(r"::test_end_lineno_string$"), (3, 9, 7),
     "CPython 3.9.7's fix of f-string node positions (bpo-44885), which astroid's test_end_lineno_string checks"),
)
PYTEST_PYTHON = re.compile(r"^platform \S+ -- Python (\d+)\.(\d+)\.(\d+)", re.MULTILINE)


def patch_release_cause(output: str, failing: list[str]) -> str | None:
    """The fix every failing test needs that the log's Python (pytest's header) is older than, else None."""
    found = PYTEST_PYTHON.search(output)
    if not found or not failing:
        return None
    python = tuple(int(part) for part in found.groups())
    needed = set()
    for test in failing:
        fix = next((f for f in PATCH_RELEASE_FIXES
                    if f[0].search(test) and f[1][:2] == python[:2] and python < f[1]), None)
        if fix is None:
            return None
        needed.add(fix[2])
    return f"environment: Python {'.'.join(map(str, python))} predates " + "; ".join(sorted(needed))


def all_failing_tests(record: dict) -> list[str]:
    return failing_tests(record, limit=None)


# pytest's header of one test's failure section: "____ Class.test_name[param] ____"
PYTEST_SECTION = re.compile(r"^_{3,} (?:ERROR (?:at setup|at teardown|collecting) of )?(\S+) _{3,}$", re.MULTILINE)


# A TLS handshake with a loopback stand-in that serves plain HTTP (an https:// URL to httpbin.org's stand-in).
# Or a test that sends without the environment's settings (requests' Session.send), which trusts only the CA
# bundle requests ships, not the stand-in's CA that REQUESTS_CA_BUNDLE adds.
STAND_IN_TLS = re.compile(r"WRONG_VERSION_NUMBER|wrong version number|EOF occurred in violation of protocol"
                          r"|CERTIFICATE_VERIFY_FAILED")


def offline_failures(output: str, failing: list[str], pattern: re.Pattern[str] = NETWORK_ERROR) -> list[str] | None:
    """The failing tests whose own pytest failure section shows a network error (a DNS lookup that failed).

    None when the log has no pytest failure sections, or some failing test has none: then only the whole
    log can be searched."""
    headers = list(PYTEST_SECTION.finditer(output))
    if not headers or not failing:
        return None
    sections: dict[str, str] = {}
    for header, after in zip(headers, headers[1:] + [None], strict=True):
        sections[header.group(1).replace(".", "::")] = output[header.end():after.start() if after else len(output)]
    offline = []
    for test in failing:
        own = [text for name, text in sections.items() if test.endswith(name) or test.endswith("::" + name)]
        if not own:
            return None
        if any(pattern.search(text) for text in own):
            offline.append(test)
    return offline


def _test_output(record: dict) -> str:
    logs = record.get("_logs") or record.get("log_dir")
    path = Path(logs or "") / "test_output.txt"
    return path.read_text(errors="replace") if logs and path.is_file() else ""


def test_counts(record: dict | None) -> dict[str, tuple[int, int]] | None:
    """FAIL_TO_PASS and PASS_TO_PASS: (tests that passed, tests the row lists), from the harness's report."""
    if record is None:
        return None
    status = (record.get("report") or {}).get(record["instance_id"], {}).get("tests_status")
    if not status:
        return None
    return {kind: (len(status[kind]["success"]), len(status[kind]["success"]) + len(status[kind]["failure"]))
            for kind in ("FAIL_TO_PASS", "PASS_TO_PASS") if kind in status}


def failing_tests(record: dict, limit: int | None = 3) -> list[str]:
    status = (record.get("report") or {}).get(record["instance_id"], {}).get("tests_status") or {}
    return [t for kind in ("FAIL_TO_PASS", "PASS_TO_PASS") for t in status.get(kind, {}).get("failure", [])][:limit]


def as_official(gold: dict, empty: dict | None) -> bool | None:
    """Every graded test's status is the one the official image showed when the row was validated.

    The row's lists are that record: FAIL_TO_PASS failed before the gold patch and passed after it,
    PASS_TO_PASS passed both times. None when a run has no per-test statuses."""
    g, e = test_counts(gold), test_counts(empty)
    if g is None or e is None:
        return None
    f2p, p2p = g.get("FAIL_TO_PASS", (0, 0)), g.get("PASS_TO_PASS", (0, 0))
    e_f2p, e_p2p = e.get("FAIL_TO_PASS", (0, 0)), e.get("PASS_TO_PASS", (0, 0))
    return f2p[0] == f2p[1] and p2p[0] == p2p[1] and e_f2p[0] == 0 and e_p2p[0] == e_p2p[1]


def _counts_cell(record: dict | None) -> str:
    counts = test_counts(record)
    if not counts:
        return ""
    return " · ".join(f"{passed}/{listed}" for passed, listed in
                      (counts.get("FAIL_TO_PASS", (0, 0)), counts.get("PASS_TO_PASS", (0, 0))))


# Rows whose FAIL_TO_PASS tests pass without the gold patch (reported upstream): an empty patch that
# resolves them where their network is stood in faithfully is the row's defect, not the environment's.
LABEL_DEFECTS = MappingProxyType({
    iid: "its FAIL_TO_PASS tests pass without the gold patch (SWE-bench issue #24: they failed at validation "
         "when httpbin.org did not answer)"
    for iid in ("psf__requests-863", "psf__requests-1724", "psf__requests-2674")})


# pytest's skip reason of a test whose import is missing (xarray's `requires_cdms2`).
SKIPPED_IMPORT = re.compile(r"could not import '([\w.]+)': No module named")


def conda_only_cause(output: str, failing: list[str]) -> str | None:
    """Every failing test names a conda-only package (no pip equivalent) the log says could not be imported:
    they were skipped, as they are not in the official conda environment."""
    missing = {name for name in SKIPPED_IMPORT.findall(output) if name.lower() in CONDA_ONLY}
    if failing and missing and all(any(name in test for name in missing) for test in failing):
        return f"environment: tests need conda-only {', '.join(sorted(missing))} (no pip package; skipped)"
    return None


def stand_in_cause(output: str, failing: list[str]) -> str | None:
    """With network stand-ins: every failing test needs HTTPS the stand-in cannot give (a TLS error, STAND_IN_TLS)
    or a host nothing stands in for (a DNS failure); else None."""
    tls = set(offline_failures(output, failing, STAND_IN_TLS) or [])
    dns = set(offline_failures(output, failing) or [])
    if not failing or (tls | dns) != set(failing):
        return None
    if not dns:
        return ("environment: tests need HTTPS to httpbin.org trusted without REQUESTS_CA_BUNDLE (only the real "
                "host's certificate; the stand-in's CA is trusted through it)")
    return "environment: tests need network beyond the stand-ins (HTTPS to httpbin.org, other hosts)"


def empty_note(empty: dict | None) -> str | None:
    """Said of an empty patch that passes every FAIL_TO_PASS test although the row says they failed at
    validation: those labels came from that run's failures, not from the issue (for psf/requests, an
    httpbin.org that did not answer; SWE-bench issue #24), and only a PASS_TO_PASS test keeps it unresolved."""
    counts = test_counts(empty)
    if empty is None or empty["resolved"] or not counts:
        return None
    passed, listed = counts.get("FAIL_TO_PASS", (0, 0))
    if listed and passed == listed:
        return "empty: passes every FAIL_TO_PASS test (their labels are not the issue's)"
    return None


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
        output, failing = _test_output(gold), all_failing_tests(gold)
        if OFFLINE_INSTALL.search(output):  # the eval script's `pip install -e .` met a requirement the patch added
            return "environment: the gold patch adds a dependency, which the offline reinstall cannot fetch"
        if release := patch_release_cause(output, failing):
            return release
        if DATA_DOWNLOAD.search(output):
            return "environment: tests need network (test data the library downloads)"
        if conda_only := conda_only_cause(output, failing):
            return conda_only
        if gold.get("stand_ins") and (cause := stand_in_cause(output, failing)):
            return cause
        offline = offline_failures(output, failing)
        if offline is not None:  # pytest's report: each failing test's own traceback says whether it was the network
            if offline and offline == failing:
                return "environment: tests need network (grading runs offline)"
            if offline:
                return (f"gold: {len(failing) - len(offline)} listed tests fail without a network "
                        f"error ({len(offline)} more need network)")
        elif NETWORK_ERROR.search(output):
            return "environment: tests need network (grading runs offline)"
        if "no test results" in error:
            return "gold: no test results in the log"
        return "gold: tests fail with the gold patch"
    if empty is not None and empty["resolved"]:
        if gold["instance_id"] in LABEL_DEFECTS:
            return f"dataset: {LABEL_DEFECTS[gold['instance_id']]}"
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
    failing = failing_tests(record)
    if failing and not record.get("error"):
        detail += "; failing: " + ", ".join(failing)
    missing = OFFLINE_INSTALL.search(_test_output(record))
    if missing:
        detail += f"; pip offline: no distribution for {missing.group(1)}"
    return f"{record['instance_id']}: {detail[:300]}"


def _facts(runs: list[Path]) -> dict[str, dict]:
    """Each tried instance's environment facts, from the selection files (older ones: from their datasets)."""
    facts: dict[str, dict] = {}
    table, loaded = None, {}
    paths = [path for folder in runs for path in folder.glob("*-selection.json")]
    for path in sorted(paths, key=lambda p: p.stat().st_mtime):
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
    stood_in = "; network stand-ins" if record.get("stand_ins") else ""
    if record.get("python_nearest") or (wanted and used != wanted):
        return f"{used} (spec {wanted or '?'}: nearest), venv+pip{stood_in}"
    return f"{used}, venv+pip{stood_in}"


def write_table(runs: Path | list[Path], out: Path, disk: str | None = None, notes: Path | None = None,
                population: dict[str, tuple[int, int]] | None = None) -> str:
    """`population`: per repository, (instances in the datasets, those whose commits are in the mirror)."""
    runs = [runs] if isinstance(runs, Path) else runs
    gold, empty = records_in(runs, "gold"), records_in(runs, "empty")
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
        "| repository | tried | env built | gold resolved | empty resolved | Python used | in the datasets "
        "| base commit in mirror |",
        "|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    totals: Counter[str] = Counter()
    for repo in sorted(set(per_repo) | set(population or {})):
        tally, (exist, mirrored) = per_repo[repo], (population or {}).get(repo, (None, None))
        totals.update(tally)
        totals.update({"exist": exist or 0, "mirrored": mirrored or 0})
        used = ", ".join(f"{k}: {v}" for k, v in sorted(pythons[repo].items()))
        lines.append(f"| {repo} | {tally['tried']} | {tally['built']} | {tally['gold']} | "
                     f"{tally['empty']} of {tally['empty run']} | {used} | {_count(exist)} | {_count(mirrored)} |")
    known = population is not None
    lines.append(f"| **total** | {totals['tried']} | {totals['built']} | {totals['gold']} | "
                 f"{totals['empty']} of {totals['empty run']} | | {_count(totals['exist'] if known else None)} | "
                 f"{_count(totals['mirrored'] if known else None)} |")
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
              "Python: the local image's against the official one's. Tests passed: FAIL_TO_PASS · PASS_TO_PASS, "
              "passed of those the row lists, from the harness's report (official: gold all, empty none · all).",
              "", "| instance | env | Python | gold | empty | gold tests passed | empty tests passed | gold run (s) | cause |",
              "|---|---|---|---|---|---|---|---:|---|"]
    for iid, g in sorted(gold.items()):
        fact, e = facts.get(iid, {}), empty.get(iid)
        env = f"{fact.get('version', '?')} @ {(fact.get('environment_setup_commit') or '?')[:8]}"
        klass = "; ".join(filter(None, [failure_class(g, e), empty_note(e)]))
        lines.append(f"| {iid} | {env} | {python_note(g, fact)} | {_verdict(g)} | {_verdict(e)} | "
                     f"{_counts_cell(g)} | {_counts_cell(e)} | {g.get('duration_s', 0):.0f} | {klass} |")
    lines += ["", nearest_python_paragraph(gold, empty, facts), "", DIFFERENCES]
    if notes is not None and notes.is_file():  # causes found by reading the logs, kept by hand beside the table
        lines += ["", notes.read_text().rstrip()]
    text = "\n".join(lines) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return text


def _count(value: int | None) -> str:
    return "?" if value is None else str(value)


def nearest_python_paragraph(gold: dict[str, dict], empty: dict[str, dict], facts: dict[str, dict]) -> str:
    """Why a verdict from a local image (nearest Python, pip) is the official one, with the instances' counts."""
    local = [iid for iid, g in sorted(gold.items()) if g.get("python_used") and g.get("image_kind") != "official"]
    nearest = [iid for iid in local if gold[iid].get("python_nearest")
               or (facts.get(iid, {}).get("python_wanted") not in (None, gold[iid]["python_used"]))]
    same = [iid for iid in local if as_official(gold[iid], empty.get(iid))]
    differ = [iid for iid in local if as_official(gold[iid], empty.get(iid)) is False]
    same_nearest = [iid for iid in nearest if iid in same]
    return "\n".join([
        "## Why a local verdict is the official one",
        "",
        "The harness's verdict is a function of the per-test statuses alone: `get_eval_report` resolves an",
        "instance exactly when every FAIL_TO_PASS and every PASS_TO_PASS test the row lists passes. The row's",
        "lists are the official image's own statuses at validation (FAIL_TO_PASS failed before the gold patch",
        "and passed after it, PASS_TO_PASS passed both times). So where every listed test has the same status",
        "locally as officially, for gold and for empty, the local image (other Python, pip instead of conda)",
        "cannot have changed the verdict: any difference it made lies outside the tests that are graded.",
        "",
        f"Of {len(local)} instances graded in a local image, {len(same)} show every listed test with its official",
        "status (gold: all passed; empty: every FAIL_TO_PASS failed, every PASS_TO_PASS passed; the columns",
        f"\"tests passed\" above). Of the {len(nearest)} on a nearest Python, {len(same_nearest)} do"
        + (f" ({', '.join(same_nearest)})." if same_nearest else "."),
        "Instances where some listed test's status differs from the official one (the verdict may still agree"
        " when the difference does not flip it): " + (", ".join(
            f"{iid} (gold {_counts_cell(gold[iid])}, empty {_counts_cell(empty.get(iid))})" for iid in differ)
            or "none") + ".",
    ])


DIFFERENCES = """## Where local images differ from the official ones

- Python: the Debian Python nearest to the spec's (3.9 bullseye, 3.11 bookworm, 3.13 trixie) in a venv, not
  conda; the table's "Python used" says which, and "(nearest)" where it is not the spec's own.
- Packages: the spec's conda packages and environment.yml installed with pip (conda-only ones skipped);
  pip itself raised to 24.0 where Debian's is older than 21.3 (the official conda pip is 23-24).
- No git history: setuptools-scm gets `SETUPTOOLS_SCM_PRETEND_VERSION` = the row's version as X.Y.0.
- Grading runs as root (as in the official images) but without network: the eval script's reinstall uses
  the build backend's wheels saved in the image; a patch adding a new dependency cannot be installed.
- Network stand-ins ("network stand-ins" in the Python column; `patchswarm/swebench/stand_ins.py`): where a
  repository's tests reach the internet the official run had, the grading sandbox (still without network)
  serves them from loopback: psf/requests gets httpbin under gunicorn's gevent workers (what httpbin.org
  runs) on 127.0.0.1 through its tests' `HTTPBIN_URL`, and 10.255.255.0/24 routed into `lo`, so its connect-timeout tests time out as
  with network instead of failing at once; httpbin.org itself resolves to it (ports 80 and 443), its HTTPS
  certificate signed by a CA made at build time, which the tests' `REQUESTS_CA_BUNDLE` trusts.
- The verdict is the harness's own: the same eval script (base commit named HEAD), the same parser and
  `get_eval_report` (see the section above for why the test statuses make it the official one)."""


