"""The structured prefilter and the skeleton tier, on the small `context_shapes` fixture repository."""



import asyncio  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from agent.context.build import (  # noqa: E402
    ContextConfig,
    build_context,
    count_tokens,
    relevance_messages,
    skeleton_messages,
)
from agent.context.prefilter import PrefilterSettings, category, prefilter_with_notes  # noqa: E402
from agent.context.signals import file_facts, issue_mentions, skeleton  # noqa: E402

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "context_shapes"
ISSUE = (FIXTURE / "issue.md").read_text()
FLAT = (("source", 1.0), ("other", 1.0), ("test", 1.0), ("doc", 1.0))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURE / "repo", tmp_path / "repo"))


def select(repo: Path, issue: str = ISSUE, **settings):
    _, selection, notes = prefilter_with_notes(repo, issue, PrefilterSettings(**settings), 512_000)
    return selection, notes


# -- what the issue names -------------------------------------------------------------------------


def test_issue_mentions_paths_frames_modules_and_identifiers():
    issue = ("See `src/pkg/io.py` and pkg.core.parse_line().\n"
             'Traceback (most recent call last):\n  File "/opt/venv/lib/site-packages/pkg/core.py", line 3, in f\n'
             "KeyError: 'HeaderLine'")
    mentions = issue_mentions(issue)
    assert mentions.paths == ["src/pkg/io.py"]
    assert mentions.frames == ["/opt/venv/lib/site-packages/pkg/core.py"]
    assert "pkg.core.parse_line" in mentions.dotted
    assert {"parse_line", "HeaderLine", "KeyError"} <= set(mentions.identifiers)
    assert "the" not in mentions.identifiers


def test_traceback_frame_keeps_the_file_the_issue_never_names_otherwise(repo):
    # Only the traceback names geometry.py; it is the single full-text file even in a one-file tier.
    selection, notes = select(repo, full_files=1)
    assert selection.full == ["src/shapes/geometry.py"]
    assert "traceback frame" in selection.why("src/shapes/geometry.py")
    assert "defines polygon_area" in selection.why("src/shapes/geometry.py")
    assert any("prefilter kept 1 file(s) for full-text relevance" in n for n in notes)


def test_changelog_no_longer_outranks_source(repo):
    # CHANGES.rst repeats the issue's words more than any source file: ranked on text alone it comes
    # before units.py, the helper the failing function calls.
    flat, _ = select(repo, category_weights=FLAT)
    assert flat.order.index("CHANGES.rst") < flat.order.index("src/shapes/units.py")
    selection, _ = select(repo)
    assert selection.order.index("src/shapes/units.py") < selection.order.index("CHANGES.rst")
    assert selection.order[-1] == "CHANGES.rst"
    assert category("CHANGES.rst") == "doc" and category("tests/test_geometry.py") == "test"


def test_import_neighbour_of_the_best_file_is_brought_forward(repo):
    selection, _ = select(repo)
    assert selection.order[:2] == ["src/shapes/geometry.py", "src/shapes/units.py"]
    assert "imported by src/shapes/geometry.py" in selection.why("src/shapes/units.py")
    without, _ = select(repo, neighbour_weight=0.0)
    assert without.order.index("src/shapes/units.py") > 1


# -- skeletons ------------------------------------------------------------------------------------


def test_skeleton_keeps_signatures_and_docstring_openings_only():
    text = (
        '"""Module doc."""\n\nimport os\n\n\n@decorator(1)\nclass Box(Base):  # a box\n'
        '    """A box.\n\n    Long explanation\n    more\n    """\n\n'
        "    def size(self,\n             scale=1):\n        value = self.w * scale\n        return value\n"
    )
    assert skeleton(text) == (
        '"""Module doc."""\n@decorator(1)\nclass Box(Base):  # a box\n    """A box.\n    Long explanation\n'
        '    ..."""\n    ...\n    def size(self,\n             scale=1):\n        ...\n'
    )
    facts = file_facts("pkg/box.py", text)
    assert {"Box", "size"} <= facts.defines and (0, "os") in facts.imports


def test_large_file_goes_to_the_skeleton_tier_which_costs_a_fraction(repo):
    selection, _ = select(repo, full_files=2, skeleton_files=20)
    assert selection.full[:2] == ["src/shapes/geometry.py", "src/shapes/units.py"]
    assert selection.skeleton == ["src/shapes/render.py"]
    assert "small: judged on its full text" in selection.why("src/shapes/io.py")  # small files: full text
    text = (repo / "src/shapes/render.py").read_text()
    full = sum(count_tokens(m["content"], "gpt-4o") for m in relevance_messages(ISSUE, "r", text, 100_000))
    outline = selection.skeletons["src/shapes/render.py"]
    sketched = sum(count_tokens(m["content"], "gpt-4o") for m in skeleton_messages(ISSUE, "r", outline, 100_000))
    assert sketched < 0.6 * full
    assert "strokes.append" not in outline and "def draw_style_3(" in outline


# -- the stage with both tiers ----------------------------------------------------------------------


def _tier_script(skeleton_yes: set[str], full_yes: set[str], calls: list[tuple[str, str]]):
    def respond(messages):
        user = messages[-1]["content"]
        match = re.search(r'<(outline|file) path="([^"]+)">', user)
        tier, path = ("skeleton" if match.group(1) == "outline" else "full"), match.group(2)
        calls.append((tier, path))
        yes = path in (skeleton_yes if tier == "skeleton" else full_yes)
        return f"<relevant>{'yes' if yes else 'no'}</relevant><summary>{path}</summary>"
    return respond


def test_stage_reads_in_full_only_what_passed_the_skeleton_tier(repo, scripted, model_client):
    extra = (repo / "src/shapes/render.py").read_text()
    (repo / "src/shapes/sketch.py").write_text(extra.replace("draw_style", "sketch_style"))
    (repo / "src/shapes/layout.py").write_text(extra.replace("draw_style", "layout_style"))
    _, selection, _ = prefilter_with_notes(repo, ISSUE, PrefilterSettings(full_files=2, skeleton_files=20), 512_000)
    first, second, third = selection.skeleton
    calls: list[tuple[str, str]] = []
    scripted.add("rel", _tier_script({first, second}, {"src/shapes/geometry.py", first}, calls))
    scripted.add("main", [])
    config = ContextConfig(prefilter_top_files=2, prefilter_skeleton_files=20, skeleton_promote_max=1,
                           ranking_samples=0)
    bundle = asyncio.run(build_context(repo, ISSUE, model_client, config))
    assert {c for c in calls if c[0] == "skeleton"} == {("skeleton", p) for p in (first, second, third)}
    read_in_full = {p for tier, p in calls if tier == "full"}
    assert first in read_in_full and second not in read_in_full and third not in read_in_full
    assert [f.path for f in bundle.files] == ["src/shapes/geometry.py", first]
    notes = "\n".join(bundle.notes)
    assert "skeleton tier: 2 of 3 file(s) passed; 1 read in full" in notes
    assert f"skeleton of {second} passed but the full-text cap (1) was reached" in notes
    assert f"relevant: {first} (skeleton tier, then full text; prefilter #" in notes
    assert re.search(r"relevant: src/shapes/geometry.py \(full-text tier; prefilter #1: .*traceback frame", notes)


def test_unusable_skeleton_answer_goes_on_to_the_full_text(repo, scripted, model_client):
    _, selection, _ = prefilter_with_notes(repo, ISSUE, PrefilterSettings(full_files=1, skeleton_files=20), 512_000)
    calls: list[tuple[str, str]] = []
    script = _tier_script(set(), {"src/shapes/render.py"}, calls)

    def respond(messages):
        if '<outline path="src/shapes/render.py">' in messages[-1]["content"]:
            calls.append(("skeleton", "src/shapes/render.py"))
            return "no idea"
        return script(messages)

    scripted.add("rel", respond)
    config = ContextConfig(prefilter_top_files=1, prefilter_skeleton_files=20, ranking_samples=0)
    bundle = asyncio.run(build_context(repo, ISSUE, model_client, config))
    assert ("full", "src/shapes/render.py") in calls and "src/shapes/render.py" in [f.path for f in bundle.files]
    assert selection.skeleton == ["src/shapes/render.py"]



def test_file_without_definitions_is_outlined_by_its_head():
    text = "".join(f"option_{i} = value {i}\n" for i in range(200))
    outline = file_facts("setup.cfg", text).skeleton
    assert outline.startswith("option_0 = value 0\n") and "option_39 " in outline and "option_40 " not in outline
    assert outline.rstrip().endswith("more characters]")
    table = file_facts("pkg/parsetab.py", "_lr_action = {" + "1: 2, " * 3000 + "}\n").skeleton
    assert table.startswith("_lr_action = {") and len(table) < 2_100
