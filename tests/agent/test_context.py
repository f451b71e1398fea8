

import asyncio  # noqa: E402
import re  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from agent.budget import Budget, BudgetExceeded  # noqa: E402
from agent.call_records import CallRecord, InMemoryCallStore  # noqa: E402
from agent.context.build import (  # noqa: E402
    ContextConfig,
    build_context,
    merge_rankings,
    parse_ranking,
    parse_relevance,
    prefilter,
)
from agent.context.prefilter import prefilter_with_notes, tokenize  # noqa: E402
from agent.model import ModelClient  # noqa: E402
from agent.scripted import Fault, Reply  # noqa: E402
from agent.types import InMemoryStateStore  # noqa: E402
from tests.conftest import providers, scripted_settings  # noqa: E402

ISSUE = "parse_header_line raises KeyError when a HeaderLine has no value"


def write_repo(root: Path, files: dict[str, str | bytes]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


def code_repo(root: Path) -> Path:
    """Five small sources that all mention the issue's words, so the prefilter keeps them all."""
    return write_repo(root, {
        f"pkg/{name}.py": f"# {name}: parse header line helpers\ndef {name}_header(): return '{name}'\n"
        for name in ("a", "b", "c", "d", "e")
    })


def path_in(messages: list[dict]) -> str:
    return re.search(r'<file path="([^"]+)">', messages[-1]["content"]).group(1)


def relevance_by_path(answers: dict[str, object]):
    """A callable script: the relevance answer for the file shown in the prompt ('no' by default)."""
    def respond(messages):
        return answers.get(path_in(messages), "<relevant>no</relevant><summary>unrelated</summary>")
    return respond


def yes(summary: str) -> str:
    return f"<relevant>yes</relevant>\n<summary>{summary}</summary>"


def build(client: ModelClient, repo: Path, **kwargs) -> object:
    config = kwargs.pop("config", ContextConfig())
    return asyncio.run(build_context(repo, ISSUE, client, config, **kwargs))


class ListRecorder:
    def __init__(self) -> None:
        self.records: list[CallRecord] = []

    def record(self, record: CallRecord) -> None:
        self.records.append(record)


# -- prefilter ------------------------------------------------------------------------------------


def test_tokenize_splits_snake_and_camel_case():
    tokens = tokenize("getHTTPResponse(foo_bar) x")
    assert {"get", "http", "response", "gethttpresponse", "foo", "bar", "foo_bar"} <= set(tokens)
    assert "x" not in tokens


def test_prefilter_ranks_identifier_match_first_and_skips_junk(tmp_path):
    mention = "def parse_header_line(line):\n    return HeaderLine(line)\n"
    repo = write_repo(tmp_path, {
        "src/pkg/headers.py": mention,
        "src/pkg/other.py": "def unrelated():\n    return 42\n",
        "src/pkg/build/steps.py": "def step(): return 'header'\n",  # nested build/ is real source
        "docs/usage.md": "Call the header parser on each line.\n",
        "src/pkg/icon.png": b"\x89PNG\x00\x00" + mention.encode(),
        "src/pkg/latin1.txt": "parse_header_line caf\xe9".encode("latin-1"),
        "src/pkg/huge.py": mention * 2000,
        "node_modules/lib/index.js": mention,
        "vendor/headers.py": mention,
        "build/lib/headers.py": mention,
        "static/app.min.js": mention,
        "poetry.lock": mention,
        "proto/headers_pb2.py": mention,
        ".hidden/headers.py": mention,
    })
    _, selection, notes = prefilter_with_notes(repo, ISSUE, 10, 10_000)
    ranked = selection.full
    assert list(ranked)[0] == "src/pkg/headers.py"
    assert set(ranked) == {"src/pkg/headers.py", "src/pkg/other.py", "src/pkg/build/steps.py", "docs/usage.md"}
    text = "\n".join(notes)
    for expected in ("binary path(s): src/pkg/icon.png, src/pkg/latin1.txt", "over 10000 bytes path(s): src/pkg/huge.py",
                     "hidden path(s): .hidden/",
                     "6 vendored/generated path(s): build/, node_modules/, vendor/, poetry.lock, proto/headers_pb2.py, …"):
        assert expected in text
    assert prefilter(repo, ISSUE, 2, max_file_bytes=10_000) == list(ranked)[:2]


def test_prefilter_of_empty_or_unmatched_repo(tmp_path):
    assert prefilter(tmp_path, ISSUE, 5) == []
    write_repo(tmp_path, {"b.txt": "zzz\n", "a.txt": "yyy\n"})
    assert prefilter(tmp_path, ISSUE, 5) == ["a.txt", "b.txt"]  # no overlap: path order


# -- parsing --------------------------------------------------------------------------------------


@pytest.mark.parametrize("answer, expected", [
    ("<relevant>yes</relevant><summary>has the bug</summary>", (True, "has the bug")),
    ("<RELEVANT> Yes. </RELEVANT>\n<summary>\nfix here\n", (True, "fix here")),
    ("<relevant>no</relevant>", (False, "")),
    ("<relevant>maybe</relevant><summary>?</summary>", (None, "?")),
    ("Yes, this file is relevant.", (None, "")),
])
def test_parse_relevance(answer, expected):
    assert parse_relevance(answer) == expected


def test_parse_ranking_and_merge():
    known = ["a.py", "b.py", "c.py"]
    answer = "Here:\n<ranking>\n1. `c.py`\n- ./a.py\nnope.py\nc.py\n</ranking>"
    assert parse_ranking(answer, known) == ["c.py", "a.py"]
    assert parse_ranking("b.py\na.py", known) == ["b.py", "a.py"]  # no tags: whole text
    # c: 1+2+1, a: 2+1+3, b: 3+3(missing from a 2-long sample)+2
    samples = [["c.py", "a.py", "b.py"], ["a.py", "c.py"], ["c.py", "b.py", "a.py"]]
    assert merge_rankings(samples, known) == ["c.py", "a.py", "b.py"]
    assert merge_rankings([], known) == known
    assert merge_rankings([["b.py"]], known) == ["b.py", "a.py", "c.py"]  # ties keep input order


# -- the stage ------------------------------------------------------------------------------------


def test_relevance_and_ranking_produce_merged_order(tmp_path, scripted, model_client):
    repo = code_repo(tmp_path)
    scripted.add("rel", relevance_by_path({
        "pkg/a.py": yes("a summary"), "pkg/b.py": yes("b summary"), "pkg/c.py": yes("c summary"),
    }))
    scripted.add("main", [
        "<ranking>\npkg/c.py\npkg/a.py\npkg/b.py\n</ranking>",
        "<ranking>\n1. pkg/a.py\n2. pkg/c.py\n3. pkg/zzz.py\n</ranking>",
        "<ranking>\npkg/c.py\npkg/b.py\npkg/a.py\n</ranking>",
    ])
    bundle = build(model_client, repo)
    assert [f.path for f in bundle.files] == ["pkg/c.py", "pkg/a.py", "pkg/b.py"]
    assert [f.summary for f in bundle.files] == ["c summary", "a summary", "b summary"]
    assert bundle.total_tokens == sum(f.tokens for f in bundle.files) > 0
    assert bundle.budget_tokens == 128_000
    assert len(scripted.calls("rel")) == 5 and len(scripted.calls("main")) == 3
    ranking_prompt = scripted.calls("main")[0][-1]["content"]
    assert "pkg/a.py" in ranking_prompt and "b summary" in ranking_prompt and "pkg/d.py" not in ranking_prompt
    assert any("3 relevant, 2 not relevant, 0 unusable of 5" in n for n in bundle.notes)


def test_malformed_and_failed_relevance_answers(tmp_path, scripted):
    repo = code_repo(tmp_path)
    scripted.add("rel", relevance_by_path({
        "pkg/a.py": yes("a"),
        "pkg/b.py": "I believe this file is relevant!",
        "pkg/c.py": Fault.malformed("<relevant>perhaps"),
        "pkg/d.py": Fault.server_error(),
    }))
    scripted.add("main", [])  # one relevant file: no ranking call
    recorder = ListRecorder()
    client = ModelClient(scripted_settings(max_retries=1), recorder=recorder, providers=providers(scripted))
    budget = Budget(None, "instance")
    bundle = build(client, repo, budget=budget)
    assert [f.path for f in bundle.files] == ["pkg/a.py"]
    notes = "\n".join(bundle.notes)
    assert "1 relevant, 1 not relevant, 3 unusable of 5" in notes
    assert "pkg/b.py: malformed answer; treated as not relevant" in notes
    assert "pkg/c.py: malformed answer" in notes
    assert "pkg/d.py: call failed (ModelCallError" in notes
    # The malformed answers were billed like any other; the failed call was recorded too.
    billed = [r for r in recorder.records if r.error is None]
    assert len(billed) == 4 and all(r.cost_usd for r in billed)
    assert budget.spent_usd == pytest.approx(sum(r.cost_usd for r in billed))
    assert [r for r in recorder.records if r.error] and len(scripted.calls("rel")) == 6


def test_token_budget_skips_big_files_but_keeps_smaller_later_ones(tmp_path, scripted, model_client):
    repo = write_repo(tmp_path, {
        "big.py": "# parse header line\n" + "x = 'header value padding'\n" * 300,
        "small.py": "def parse_header_line(line): return line\n",
        "tiny.py": "HEADER = 'header line'\n",
    })
    scripted.add("rel", relevance_by_path({p: yes(p) for p in ("big.py", "small.py", "tiny.py")}))
    scripted.add("main", ["<ranking>\nbig.py\nsmall.py\ntiny.py\n</ranking>"])
    bundle = build(model_client, repo, config=ContextConfig(token_budget=100, ranking_samples=1))
    assert [f.path for f in bundle.files] == ["small.py", "tiny.py"]
    assert bundle.total_tokens <= 100 and bundle.budget_tokens == 100
    assert any(n.startswith("big.py left out:") for n in bundle.notes)


def test_no_relevant_file_falls_back_to_prefilter_order(tmp_path, scripted, model_client):
    repo = write_repo(tmp_path, {
        "headers.py": "def parse_header_line(line): return HeaderLine(line)\n",
        "misc.py": "def misc(): return 'value'\n",
    })
    scripted.add("rel", relevance_by_path({}))
    scripted.add("main", [])
    bundle = build(model_client, repo)
    assert [f.path for f in bundle.files] == ["headers.py", "misc.py"]
    assert any("falling back to prefilter order" in n for n in bundle.notes)
    assert scripted.calls("main") == []


def test_resume_from_state_store_makes_no_call(tmp_path, scripted, model_client):
    repo = code_repo(tmp_path)
    scripted.add("rel", relevance_by_path({"pkg/a.py": yes("a"), "pkg/e.py": yes("e")}))
    scripted.add("main", ["<ranking>\npkg/e.py\npkg/a.py\n</ranking>"] * 3)
    store = InMemoryStateStore()
    first = build(model_client, repo, store=store, key_prefix="inst-1")
    assert store.load("inst-1:context") is not None
    calls = len(scripted.calls("rel")) + len(scripted.calls("main"))
    second = build(model_client, repo, store=store, key_prefix="inst-1")
    assert len(scripted.calls("rel")) + len(scripted.calls("main")) == calls
    assert second == first and [f.path for f in first.files] == ["pkg/e.py", "pkg/a.py"]
    # Other inputs (here the config) make the stored bundle stale: it is rebuilt.
    scripted.add("main", ["<ranking>\npkg/a.py\npkg/e.py\n</ranking>"])
    rebuilt = build(model_client, repo, store=store, key_prefix="inst-1", config=ContextConfig(ranking_samples=1))
    assert [f.path for f in rebuilt.files] == ["pkg/a.py", "pkg/e.py"]
    assert rebuilt.notes[0] == "stored context was built from other inputs; rebuilt"


def test_call_store_replays_every_call_including_each_ranking_sample(tmp_path, scripted):
    repo = code_repo(tmp_path)
    scripted.add("rel", relevance_by_path({"pkg/a.py": yes("a"), "pkg/b.py": yes("b"), "pkg/c.py": yes("c")}))
    scripted.add("main", [  # only sample keys that differ keep three distinct stored answers
        "<ranking>\npkg/b.py\npkg/a.py\n</ranking>",
        "<ranking>\npkg/b.py\npkg/c.py\n</ranking>",
        "<ranking>\npkg/c.py\npkg/b.py\n</ranking>",
    ])
    client = ModelClient(scripted_settings(), store=InMemoryCallStore(), providers=providers(scripted))
    first = build(client, repo)
    second = build(client, repo)
    assert len(scripted.calls("rel")) == 5 and len(scripted.calls("main")) == 3
    assert second.render() == first.render()
    assert [f.path for f in first.files] == ["pkg/b.py", "pkg/c.py", "pkg/a.py"]


def test_render_is_identical_across_builds(tmp_path, scripted, model_client):
    repo = code_repo(tmp_path)
    delays = {"pkg/a.py": 0.04, "pkg/b.py": 0.0, "pkg/c.py": 0.02, "pkg/d.py": 0.01, "pkg/e.py": 0.03}

    def respond(messages):  # answers arrive out of submission order
        path = path_in(messages)
        answer = yes(path) if path != "pkg/d.py" else "<relevant>no</relevant>"
        return Reply(answer, delay_s=delays[path])

    scripted.add("rel", respond)
    scripted.add("main", lambda messages: "<ranking>\npkg/e.py\npkg/c.py\n</ranking>")
    first, second = build(model_client, repo), build(model_client, repo)
    assert first.render() == second.render() and first == second
    assert [f.path for f in first.files] == ["pkg/e.py", "pkg/c.py", "pkg/a.py", "pkg/b.py"]
    assert first.render().startswith('<file path="pkg/e.py">\n')


def test_exhausted_budget_raises_and_stores_nothing(tmp_path, scripted, model_client):
    repo = code_repo(tmp_path)
    scripted.add("rel", relevance_by_path({}))
    store = InMemoryStateStore()
    with pytest.raises(BudgetExceeded):
        build(model_client, repo, budget=Budget(0.0, "spent"), store=store)
    assert store.load("context:context") is None and scripted.calls("rel") == []


def test_missing_checkout_is_an_error(tmp_path, model_client):
    with pytest.raises(FileNotFoundError):
        build(model_client, tmp_path / "absent")
