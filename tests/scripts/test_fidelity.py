"""The fidelity table: failure classes, the per-instance rows with their Python, and disk counted once per layer."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load_script():
    spec = importlib.util.spec_from_file_location("fidelity_script", ROOT / "scripts" / "fidelity.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


fidelity = load_script()
import fidelity_table  # noqa: E402 - on the path once the script is loaded


def record(iid: str, *, resolved: bool, status: str | None = None, error: str | None = None, **extra) -> dict:
    return {"instance_id": iid, "repo": iid.split("__")[0], "resolved": resolved,
            "status": status or ("resolved" if resolved else "unresolved"), "error": error, **extra}


def write_run(runs: Path, name: str, mode: str, records: list[dict]) -> None:
    folder = runs / f"{name}-{mode}"
    folder.mkdir(parents=True)
    (folder / "instances.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_failure_classes_name_the_build_command_and_the_verdicts():
    build = record("a", resolved=False, status="error",
                   error="no image: build failed: command 'pip install -e .[dev]' exited 1 — last output: x")
    assert fidelity.failure_class(build, None) == "environment build failed: pip install -e .[dev]"
    partial = record("a", resolved=False, status="error", error=(
        "no image: cannot fetch commit ef8a from file:///m/pvlib.git: the source lacks pvlib/data/x.h5 "
        "(object 6f73de334f0e) of this commit's tree (a partial snapshot missing a file the commit needs)"))
    assert fidelity.failure_class(partial, None) == "environment: the mirror snapshot lacks a file of the commit"
    assert fidelity.failure_class(record("a", resolved=False), record("a", resolved=False)) == \
        "gold: tests fail with the gold patch"
    assert fidelity.failure_class(record("a", resolved=True), record("a", resolved=True)) == "empty patch resolves"
    assert fidelity.failure_class(record("a", resolved=True), None) == "empty: not run"
    assert fidelity.failure_class(record("a", resolved=True), record("a", resolved=False)) is None


def test_a_gold_failure_from_an_offline_sandbox_is_the_environments(tmp_path):
    (tmp_path / "test_output.txt").write_text("E   ConnectionError: gaierror(-3, 'Temporary failure in name resolution')\n")
    offline = record("psf__requests-1", resolved=False, log_dir=str(tmp_path))
    assert fidelity.failure_class(offline, None) == "environment: tests need network (grading runs offline)"
    (tmp_path / "test_output.txt").write_text("E   AssertionError: 1 != 2\n")
    assert fidelity.failure_class(offline, None) == "gold: tests fail with the gold patch"


def test_a_test_that_needs_a_later_python_patch_release_is_the_environments(tmp_path):
    """astroid-1262/-1351/-2219: Debian's Python 3.9.2 places f-string parts before 3.9.7's fix (bpo-44885)."""
    failing = "tests/unittest_nodes_lineno.py::TestLinenoColOffset::test_end_lineno_string"
    status = {"FAIL_TO_PASS": {"success": ["t::a"], "failure": []},
              "PASS_TO_PASS": {"success": [], "failure": [failing]}}
    gold = record("pylint-dev__astroid-1262", resolved=False, log_dir=str(tmp_path),
                  report={"pylint-dev__astroid-1262": {"tests_status": status}})
    header = "platform linux -- Python {} , pytest-7.4.4, pluggy-1.6.0\nE   assert (1, 1) == (1, 16)\n"
    (tmp_path / "test_output.txt").write_text(header.format("3.9.2").replace(" ,", ","))
    assert fidelity.failure_class(gold, None).startswith("environment: Python 3.9.2 predates CPython 3.9.7's fix")
    (tmp_path / "test_output.txt").write_text(header.format("3.9.18").replace(" ,", ","))
    assert fidelity.failure_class(gold, None) == "gold: tests fail with the gold patch"  # fixed there: the tool's
    other = {**status, "PASS_TO_PASS": {"success": [], "failure": [failing, "tests/t.py::test_other"]}}
    (tmp_path / "test_output.txt").write_text(header.format("3.9.2").replace(" ,", ","))
    mixed = {**gold, "report": {"pylint-dev__astroid-1262": {"tests_status": other}}}
    assert fidelity.failure_class(mixed, None) == "gold: tests fail with the gold patch"  # one unexplained


def test_the_table_counts_tried_instances_against_the_datasets_and_the_mirror(tmp_path):
    """Each repository's row says how many of its instances exist and how many the mirror can serve."""
    import subprocess

    repo = tmp_path / "mirrors" / "org__thing.git"
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "c"],
                   cwd=repo, check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    row = json.loads((ROOT / "tests/fixtures/swebench_rows/swe-bench-lite.dev.jsonl").read_text().splitlines()[0])
    rows = [{**row, "repo": "org/thing", "instance_id": f"org__thing-{n}", "base_commit": commit,
             "environment_setup_commit": head} for n, commit in ((1, head), (2, "0" * 40))]
    rows.append({**row, "repo": "other/lib", "instance_id": "other__lib-1"})  # no mirror at all
    dataset = tmp_path / "d.jsonl"
    dataset.write_text("".join(json.dumps(r) + "\n" for r in [*rows, rows[0]]))  # ids count once
    counts = fidelity.population([dataset], tmp_path / "mirrors")
    assert counts == {"org/thing": (2, 1), "other/lib": (1, 0)}
    runs = tmp_path / "runs"
    write_run(runs, "r", "gold", [{**record("org__thing-1", resolved=True), "repo": "org/thing"}])
    write_run(runs, "r", "empty", [{**record("org__thing-1", resolved=False), "repo": "org/thing"}])
    text = fidelity.write_table(runs, tmp_path / "f.md", disk="-", population=counts)
    assert "| org/thing | 1 | 1 | 1 | 0 of 1 |  | 2 | 1 |" in text
    assert "| other/lib | 0 | 0 | 0 | 0 of 0 |  | 1 | 0 |" in text  # never tried, still listed
    assert "| **total** | 1 | 1 | 1 | 0 of 1 | | 3 | 1 |" in text


def test_shared_layers_count_once_and_fall_to_their_own_kind():
    base = {"Id": "<missing>", "Created": 1, "CreatedBy": "debian", "Size": 100}
    system = {"Id": "sys", "Size": 10}
    env = {"Id": "env", "Size": 5}
    histories = {"i1": [{"Id": "i1", "Size": 2}, env, system, base],
                 "i2": [{"Id": "i2", "Size": 3}, {"Id": "i2-step", "Size": 4}, env, system, base]}
    assert fidelity.union_bytes(histories, {"env"}, {"sys"}) == {"instance": 9, "env": 5, "system + base": 110}


def test_the_table_lists_every_instance_with_its_environment_and_python(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, "b1", "gold", [
        record("pytest-dev__pytest-1", resolved=True, python_used="3.9", image_kind="local", duration_s=80),
        record("org__thing-2", resolved=True, python_used="3.11", python_nearest=True, image_kind="local"),
        record("org__thing-3", resolved=False, status="error", error="no image: build failed: command 'make' x"),
    ])
    write_run(runs, "b1", "empty", [record("pytest-dev__pytest-1", resolved=False),
                                    record("org__thing-2", resolved=True)])
    (runs / "b1-selection.json").write_text(json.dumps({"datasets": [], "instances": [], "envs": {
        "pytest-dev__pytest-1": {"version": "6.0", "environment_setup_commit": "634cde9506eb", "python_wanted": "3.9"},
        "org__thing-2": {"version": "1.0", "environment_setup_commit": "abcdef0123", "python_wanted": "3.10"},
    }}))
    notes = tmp_path / "notes.md"
    notes.write_text("## Causes\n\n- org__thing-3: the snapshot lacks a file\n")
    text = fidelity.write_table(runs, tmp_path / "fidelity.md", disk="3 images: 1.00 GiB", notes=notes)
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if line.startswith("| ")}
    assert "6.0 @ 634cde95" in rows["pytest-dev__pytest-1"] and "3.9, venv+pip" in rows["pytest-dev__pytest-1"]
    assert "3.11 (spec 3.10: nearest)" in rows["org__thing-2"] and "empty patch resolves" in rows["org__thing-2"]
    assert "3.9 wanted" not in rows["org__thing-3"] and "environment build failed: make" in rows["org__thing-3"]
    assert "| org | 2 | 1 | 1 | 1 of 1 |" in text  # tried, env built, gold, empty of empty runs
    assert "3 images: 1.00 GiB" in text and text.rstrip().endswith("the snapshot lacks a file")
    assert (tmp_path / "fidelity.md").read_text() == text


def test_the_empty_patch_is_not_graded_where_gold_could_not_build_the_image(tmp_path):
    from patchswarm.swebench.dataset import load_instances

    rows = load_instances(ROOT / "tests" / "fixtures" / "swebench_rows" / "swe-bench-lite.test.jsonl")[:3]
    built, unbuilt, unknown = rows
    write_run(tmp_path, "r", "gold", [
        record(built.instance_id, resolved=True),
        record(unbuilt.instance_id, resolved=False, status="error",
               error="no image: environment setup command 'pip install -e .' failed (exit 1)")])
    kept = fidelity.without_failed_builds(rows, tmp_path / "r-gold" / "instances.jsonl")
    assert [i.instance_id for i in kept] == [built.instance_id, unknown.instance_id]
    assert fidelity.without_failed_builds(rows, tmp_path / "none.jsonl") == rows


def statuses(iid: str, f2p: tuple[list[str], list[str]], p2p: tuple[list[str], list[str]]) -> dict:
    """A harness report.json for `iid` with these (passed, failed) FAIL_TO_PASS and PASS_TO_PASS tests."""
    return {iid: {"tests_status": {"FAIL_TO_PASS": {"success": f2p[0], "failure": f2p[1]},
                                   "PASS_TO_PASS": {"success": p2p[0], "failure": p2p[1]}}}}


def test_rows_count_the_listed_tests_that_passed_and_say_which_match_the_official_statuses(tmp_path):
    exact, off = "org__exact-1", "org__off-2"
    gold = [record(exact, resolved=True, python_used="3.9", python_nearest=True, image_kind="local",
                   report=statuses(exact, (["f1", "f2"], []), (["p1", "p2", "p3"], []))),
            record(off, resolved=True, python_used="3.9", image_kind="local",
                   report=statuses(off, (["f1"], []), (["p1"], [])))]
    empty = [record(exact, resolved=False, report=statuses(exact, ([], ["f1", "f2"]), (["p1", "p2", "p3"], []))),
             # a PASS_TO_PASS test that fails without the gold patch: not what validation saw officially
             record(off, resolved=False, report=statuses(off, ([], ["f1"]), ([], ["p1"])))]
    write_run(tmp_path / "old", "a", "gold", gold[:1])
    write_run(tmp_path / "old", "a", "empty", empty[:1])
    write_run(tmp_path / "new", "b", "gold", gold[1:])
    write_run(tmp_path / "new", "b", "empty", empty[1:])
    text = fidelity.write_table([tmp_path / "old", tmp_path / "new"], tmp_path / "f.md", disk="-")
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if line.startswith("| ")}
    assert "| 2/2 · 3/3 | 0/2 · 3/3 |" in rows[exact] and "| 1/1 · 1/1 | 0/1 · 0/1 |" in rows[off]
    assert "| org | 2 | 2 | 2 | 0 of 2 |" in text  # the two folders of runs add up
    assert "Of 2 instances graded in a local image, 1 show every listed test with its official" in text
    assert "Of the 1 on a nearest Python, 1 do (org__exact-1)." in text
    assert "official: org__off-2 (gold 1/1 · 1/1, empty 0/1 · 0/1)" in text.replace("\n", " ").replace(
        "flip it): ", "official: ")


def test_a_copied_run_finds_its_test_output_beside_its_records(tmp_path):
    iid = "psf__requests-9"
    write_run(tmp_path, "c", "gold", [record(iid, resolved=False, model_name_or_path="gold",
                                             log_dir="logs/elsewhere/c-gold/gold/" + iid)])
    logs = tmp_path / "c-gold" / "gold" / iid
    logs.mkdir(parents=True)
    (logs / "test_output.txt").write_text("requests.exceptions.ConnectionError: Temporary failure in name resolution\n")
    gold = fidelity_table.records_in([tmp_path], "gold")[iid]
    assert fidelity.failure_class(gold, None) == "environment: tests need network (grading runs offline)"


def test_network_is_blamed_only_when_every_failing_tests_own_traceback_shows_it(tmp_path):
    iid = "psf__requests-7"
    offline = ("_____ RequestsTestCase.test_get _____\n\n    def test_get(self):\n"
               "E   socket.gaierror: [Errno -3] Temporary failure in name resolution\n")
    broken = "_____ RequestsTestCase.test_parse[x] _____\n\nE   AssertionError: 1 != 2\n"
    (tmp_path / "test_output.txt").write_text(offline + broken + "=== short test summary info ===\n")
    listed = ["test_requests.py::RequestsTestCase::test_get", "test_requests.py::RequestsTestCase::test_parse[x]"]
    both = record(iid, resolved=False, _logs=str(tmp_path), report=statuses(iid, ([], listed[:1]), ([], listed[1:])))
    assert fidelity.failure_class(both, None) == \
        "gold: 1 listed tests fail without a network error (1 more need network)"
    network_only = record(iid, resolved=False, _logs=str(tmp_path), report=statuses(iid, ([], listed[:1]), ([], [])))
    assert fidelity.failure_class(network_only, None) == "environment: tests need network (grading runs offline)"


def test_a_dependency_the_gold_patch_adds_is_the_offline_graders_not_the_tools(tmp_path):
    (tmp_path / "test_output.txt").write_text(
        "+    appdirs>=1.4.0\nLooking in links: /opt/patchswarm-wheels\n"
        "ERROR: No matching distribution found for appdirs>=1.4.0\nE   ModuleNotFoundError: No module named 'appdirs'\n")
    gold = record("pylint-dev__pylint-1", resolved=False, _logs=str(tmp_path),
                  error="no test results in the log (missing_module)")
    assert fidelity.failure_class(gold, None) == \
        "environment: the gold patch adds a dependency, which the offline reinstall cannot fetch"
    assert "no distribution for appdirs>=1.4.0" in fidelity_table._example(gold)


def test_start_before_is_todays_utc_time_and_bad_input_is_named():
    import pytest

    when = fidelity.parse_start_before("10:05")
    assert (when.hour, when.minute, when.tzinfo is not None) == (10, 5, True)
    assert fidelity.parse_start_before(None) is None
    with pytest.raises(SystemExit, match="--start-before: expected HH:MM"):
        fidelity.parse_start_before("ten")


def test_test_data_the_library_downloads_offline_is_the_environments(tmp_path):
    # pydicom-1241: pydicom's data_manager cannot fetch emri_small_jpeg_2k_lossless.dcm, dcmread(None) fails.
    (tmp_path / "test_output.txt").write_text(
        "E   TypeError: dcmread: Expected a file path or a file-like, but got NoneType\n"
        "  /repo/pydicom/data/data_manager.py:324: UserWarning: A download failure occurred while attempting "
        "to retrieve emri_small_jpeg_2k_lossless.dcm\n")
    gold = record("pydicom__pydicom-1", resolved=False, _logs=str(tmp_path))
    assert fidelity.failure_class(gold, None) == "environment: tests need network (test data the library downloads)"
    (tmp_path / "test_output.txt").write_text("E   TypeError: dcmread: Expected a file path, but got NoneType\n")
    assert fidelity.failure_class(gold, None) == "gold: tests fail with the gold patch"


def test_a_run_reusing_a_name_adds_to_its_selection_file_and_keeps_earlier_facts(tmp_path):
    from collections import Counter

    from patchswarm.swebench.dataset import load_instances
    from patchswarm.swebench.specs import load_spec_table

    rows = load_instances(ROOT / "tests" / "fixtures" / "swebench_rows" / "swe-bench-lite.test.jsonl")[:2]
    path, table = tmp_path / "s4-selection.json", load_spec_table()
    fidelity.write_selection(path, ["a.jsonl"], rows[:1], table, {})
    fidelity.write_selection(path, ["b.jsonl"], rows[1:], table, {"x/y": Counter({"no mirror": 2})})
    written = json.loads(path.read_text())
    assert written["instances"] == [r.instance_id for r in rows] and set(written["envs"]) == set(written["instances"])
    assert written["datasets"] == ["a.jsonl", "b.jsonl"] and written["skipped"] == {"x/y": {"no mirror": 2}}


def test_https_to_a_plain_http_stand_in_is_named_and_an_empty_patch_passing_every_f2p_is_said(tmp_path):
    # psf/requests-1724 with httpbin on loopback: only test_mixed_case_scheme_acceptable (https://) fails.
    iid = "psf__requests-1724"
    (tmp_path / "test_output.txt").write_text(
        "_____ RequestsTestCase.test_mixed_case_scheme_acceptable _____\n\n"
        "E   requests.exceptions.SSLError: [SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1123)\n"
        "=== short test summary info ===\n")
    mixed = "test_requests.py::RequestsTestCase::test_mixed_case_scheme_acceptable"
    f2p = ["test_requests.py::RequestsTestCase::test_DIGEST_HTTP_200_OK_GET"]
    gold = record(iid, resolved=False, _logs=str(tmp_path), stand_ins=["httpbin.org: httpbin==0.10.2 on ..."],
                  report=statuses(iid, (f2p, []), ([], [mixed])))
    assert fidelity.failure_class(gold, None).startswith("environment: tests need HTTPS to httpbin.org trusted")
    without = {k: v for k, v in gold.items() if k != "stand_ins"}  # no stand-in: the TLS error is not explained
    assert fidelity.failure_class(without, None) == "gold: tests fail with the gold patch"
    empty = record(iid, resolved=False, report=statuses(iid, (f2p, []), ([], [mixed])))
    assert fidelity_table.empty_note(empty) == "empty: passes every FAIL_TO_PASS test (their labels are not the issue's)"
    assert fidelity_table.empty_note(record(iid, resolved=False, report=statuses(iid, ([], f2p), ([mixed], [])))) is None


def test_with_stand_ins_https_and_unresolvable_hosts_together_are_the_networks(tmp_path):
    iid = "psf__requests-2148"
    (tmp_path / "test_output.txt").write_text(
        "_____ RequestsTestCase.test_mixed_case_scheme_acceptable _____\n\n"
        "E   ssl.SSLError: [SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1123)\n"
        "_____ RequestsTestCase.test_pyopenssl_redirect _____\n\n"
        "E   requests.exceptions.ConnectionError: ('Connection aborted.', gaierror(-3, 'Temporary failure in name "
        "resolution'))\n"
        "_____ RequestsTestCase.test_file_post_data _____\n\nE   AssertionError: 501 != 200\n"
        "=== short test summary info ===\n")
    tests = [f"test_requests.py::RequestsTestCase::{n}" for n in
             ("test_mixed_case_scheme_acceptable", "test_pyopenssl_redirect", "test_file_post_data")]
    network = record(iid, resolved=False, _logs=str(tmp_path), stand_ins=["httpbin.org: ..."],
                     report=statuses(iid, ([], []), ([], tests[:2])))
    assert fidelity.failure_class(network, None) == \
        "environment: tests need network beyond the stand-ins (HTTPS to httpbin.org, other hosts)"
    unexplained = record(iid, resolved=False, _logs=str(tmp_path), stand_ins=["httpbin.org: ..."],
                         report=statuses(iid, ([], []), ([], tests)))
    assert not fidelity.failure_class(unexplained, None).startswith("environment")


def test_an_empty_patch_resolving_a_row_with_known_bad_labels_is_the_datasets():
    gold, empty = record("psf__requests-863", resolved=True), record("psf__requests-863", resolved=True)
    assert fidelity.failure_class(gold, empty).startswith("dataset: its FAIL_TO_PASS tests pass without the gold")
    other = record("psf__requests-1142", resolved=True)
    assert fidelity.failure_class(other, other) == "empty patch resolves"


def test_tests_skipped_for_a_conda_only_package_are_the_environments(tmp_path):
    # xarray-3305: cdms2 has no pip package; its conversion tests are skipped, and a skip is not a pass.
    (tmp_path / "test_output.txt").write_text(
        "SKIPPED [1] xarray/tests/test_dataarray.py:3585: could not import 'cdms2': No module named 'cdms2'\n")
    iid = "pydata__xarray-3305"
    cdms2 = ["xarray/tests/test_dataarray.py::TestDataArray::test_to_and_from_cdms2_classic"]
    gold = record(iid, resolved=False, _logs=str(tmp_path), report=statuses(iid, ([], []), ([], cdms2)))
    assert fidelity.failure_class(gold, None) == "environment: tests need conda-only cdms2 (no pip package; skipped)"
    other = record(iid, resolved=False, _logs=str(tmp_path),
                   report=statuses(iid, ([], []), ([], [*cdms2, "xarray/tests/test_x.py::test_iris"])))
    assert fidelity.failure_class(other, None) == "gold: tests fail with the gold patch"
