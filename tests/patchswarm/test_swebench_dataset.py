"""SWE-bench instances: real rows load, and the task handed to solvers never carries the answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from patchswarm.swebench import dataset as dataset_module
from patchswarm.swebench.dataset import (
    GOLD_FIELDS,
    DatasetError,
    SweTask,
    load_instances,
    load_predictions,
)

# A few real rows per repository, committed (see its README): the suite needs no ../shared.
SHARED_DATA = Path(__file__).parents[1] / "fixtures" / "swebench_rows"
FILES = ("swe-bench-lite.dev.jsonl", "swe-bench-lite.test.jsonl", "swe-bench-verified.test.jsonl", "swe-bench.dev.jsonl")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return SHARED_DATA


@pytest.mark.parametrize("name", FILES)
def test_real_rows_load_with_every_column(shared_data, name):
    instances = load_instances(shared_data / name)
    raw = [json.loads(line) for line in (shared_data / name).read_text().splitlines() if line.strip()]
    assert len(instances) == len(raw) > 0
    first, row = instances[0], raw[0]
    assert first.instance_id == row["instance_id"]
    assert first.FAIL_TO_PASS == json.loads(row["FAIL_TO_PASS"])  # published JSON-encoded
    assert first.eval_script == row["eval_script"] and first.log_parser == row["log_parser"]
    assert json.loads(first.harness_row()["PASS_TO_PASS"]) == first.PASS_TO_PASS


def test_task_has_no_gold_fields_for_any_real_row(shared_data):
    """Solving stages only ever receive `to_task()`: no gold field, and no gold text, may be in it."""
    for name in FILES:
        for instance in load_instances(shared_data / name):
            task = instance.to_task()
            dumped = task.model_dump()
            assert not set(GOLD_FIELDS) & set(dumped)
            assert set(dumped) == set(SweTask.model_fields)
            text = "\n".join(str(value) for value in dumped.values())
            assert instance.patch not in text and instance.test_patch not in text
            assert json.dumps(instance.FAIL_TO_PASS) not in text
    assert {"instance_id", "repo", "base_commit", "problem_statement", "hints_text", "version",
            "environment_setup_commit", "image"} == set(SweTask.model_fields)


def test_task_refuses_gold_fields():
    with pytest.raises(ValueError):
        SweTask(instance_id="a", repo="o/r", base_commit="c", problem_statement="p", version="1",
                environment_setup_commit="e", patch="diff")


def test_missing_column_names_row_and_column(shared_data, tmp_path):
    rows = [json.loads(line) for line in (shared_data / FILES[0]).read_text().splitlines()[:3]]
    del rows[1]["test_patch"]
    path = tmp_path / "broken.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DatasetError, match=rf"row 2 \(instance_id={rows[1]['instance_id']}\) is missing column 'test_patch'"):
        load_instances(path)


def test_parquet_and_json_and_instance_filter(shared_data, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow

    rows = [json.loads(line) for line in (shared_data / FILES[0]).read_text().splitlines()[:4]]
    pq.write_table(pyarrow.Table.from_pylist(rows), tmp_path / "dev.parquet")
    from_parquet = load_instances(tmp_path / "dev.parquet")
    assert [i.instance_id for i in from_parquet] == [r["instance_id"] for r in rows]
    (tmp_path / "dev.json").write_text(json.dumps(rows))
    wanted = [rows[2]["instance_id"]]
    assert [i.instance_id for i in load_instances(tmp_path / "dev.json", instance_ids=wanted)] == wanted
    with pytest.raises(DatasetError, match="unknown instance id"):
        load_instances(tmp_path / "dev.json", instance_ids=["nope__nope-1"])


def test_hub_name_offline_is_one_clear_line(monkeypatch):
    monkeypatch.setattr(dataset_module, "_online", lambda *a, **k: False)
    with pytest.raises(DatasetError) as err:
        load_instances("princeton-nlp/SWE-bench_Verified")
    assert str(err.value).startswith(
        "cannot load dataset princeton-nlp/SWE-bench_Verified offline: pass a local .jsonl file")
    assert "\n" not in str(err.value)


def test_missing_file_and_bad_extension(tmp_path):
    with pytest.raises(DatasetError, match="dataset file not found"):
        load_instances(tmp_path / "nope.jsonl")
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(DatasetError, match=r"expected a \.json, \.jsonl or \.parquet"):
        load_instances(tmp_path / "x.csv")


def test_predictions_in_every_harness_shape(tmp_path):
    preds = [{"instance_id": "a", "model_patch": "diff", "model_name_or_path": "m"},
             {"instance_id": "b", "model_patch": None, "model_name_or_path": "m"}]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(p) + "\n" for p in preds))
    (tmp_path / "p.json").write_text(json.dumps(preds))
    (tmp_path / "d.json").write_text(json.dumps({p["instance_id"]: p for p in preds}))
    for name in ("p.jsonl", "p.json", "d.json"):
        loaded = load_predictions(tmp_path / name)
        assert [(p.instance_id, p.model_patch) for p in loaded] == [("a", "diff"), ("b", None)]
    (tmp_path / "bad.jsonl").write_text(json.dumps({"model_patch": "x"}) + "\n")
    with pytest.raises(DatasetError, match="prediction 1 has no instance_id"):
        load_predictions(tmp_path / "bad.jsonl")


def test_a_broken_line_names_the_file_and_the_line_like_every_jsonl_reader(tmp_path):
    """Datasets, task files and outside predictions share one JSON Lines reader (agent.text.json_lines)."""
    path = tmp_path / "rows.jsonl"
    path.write_text('{"instance_id": "a"}\n\n{"instance_id": \n')
    with pytest.raises(DatasetError) as err:
        load_instances(path)
    assert str(err.value).startswith(f"{path} line 3: not valid JSON (")
