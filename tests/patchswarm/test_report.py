"""`patchswarm report`: a real demo run (real Docker, scripted model) rendered and opened in headless Chromium.

One demo run per module. A crafted instance is added to it whose model messages, issue, patch, outputs
and id carry `<script>` payloads: the pages must show them as text and never run them.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from patchswarm.report import register
from patchswarm.report.build import _page_names, build_report
from patchswarm.report.load import ReportError, load_eval
from patchswarm.store import RunStore

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
DEMO_ID = "textkit-slugify"
PROBE_ID = 'probe"><script>window.pwned=1</script>'
PAYLOAD = "<script>window.pwned=1</script>"
IMG_PAYLOAD = '<img src=x onerror="window.pwned=1">'
LONG_OUTPUT = "".join(f"output line {i}\n" for i in range(3000)) + "LAST-LINE-MARKER\n"


# -- fixtures --------------------------------------------------------------------------------------


def _probe_result(demo: dict) -> dict:
    """The demo's result with hostile text in every kind of field the pages show."""
    probe = copy.deepcopy(demo)
    probe.update(instance_id=PROBE_ID, status="no_patch", patch=f"+{PAYLOAD}\n", errors=[f"crash {PAYLOAD}"],
                 selection_reason=f"reason {PAYLOAD}")
    probe["context_files"] = [{"path": f"a/{PAYLOAD}.py", "summary": f"summary {IMG_PAYLOAD}", "tokens": 3}]
    testing = probe["trajectories"][0]["testing"]
    testing["messages"][1]["content"] = f"<issue>\nIssue text {PAYLOAD}\n</issue>\n\nWrite a reproduction test."
    testing["messages"].append({"role": "assistant", "content": f"Model says {PAYLOAD} and {IMG_PAYLOAD}"})
    testing["original_output"] = LONG_OUTPUT
    selection = probe["selection"]
    selection["candidates"][0]["source"] = f"source {PAYLOAD}"
    selection["tests"][0]["reason"] = '"><script>window.pwned=1</script>'
    selection["selector_transcript"].append({"role": "assistant", "content": f"```\n{PAYLOAD}\n```"})
    return probe


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, base_image) -> Path:
    """A finished demo run plus the crafted probe instance and an eval report."""
    run_dir = tmp_path_factory.mktemp("report") / "run"
    done = subprocess.run([sys.executable, "-m", "patchswarm.cli", "demo", "--quiet", "--run-dir", str(run_dir)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    demo = json.loads((run_dir / "instances" / DEMO_ID / "result.json").read_text())
    store = RunStore(run_dir)
    try:
        store.mark_instance(PROBE_ID, store.get_meta("config_hash"), "no_patch", result=_probe_result(demo),
                            cost_usd=demo["cost_usd"])
    finally:
        store.close()
    (run_dir / "eval").mkdir()
    (run_dir / "eval" / "report.json").write_text(json.dumps({DEMO_ID: {"resolved": True},
                                                              PROBE_ID: {"resolved": False}}))
    return run_dir


@pytest.fixture(scope="module")
def report(run_dir) -> Path:
    return build_report(run_dir)


def _ensure_chromium() -> None:
    """Debian's chromium and chromedriver, installed once when missing (root, as on every project machine)."""
    if Path("/usr/bin/chromium").exists() and Path("/usr/bin/chromedriver").exists():
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium", "chromium-driver"],
                   check=True, env=env, capture_output=True)


@pytest.fixture(scope="module")
def browser():
    _ensure_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="report-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1400,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _screenshot(driver, name: str) -> None:
    """The whole page (the window grows to the document), kept under test-artifacts/ for a human look."""
    ARTIFACTS.mkdir(exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    # Headless windows are capped at the screen size; an emulated viewport is not.
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": 1400, "height": min(max(height, 800), 12000), "deviceScaleFactor": 1, "mobile": False})
    driver.save_screenshot(str(ARTIFACTS / name))
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def _pages(report: Path) -> dict[str, str]:
    return {str(p.relative_to(report.parent)): p.read_text() for p in report.parent.rglob("*.html")}


# -- the files -------------------------------------------------------------------------------------


def test_writes_one_page_per_instance_and_nothing_external(report):
    pages = _pages(report)
    assert set(pages) == {"index.html", f"instances/{DEMO_ID}.html", f"instances/{_page_names([PROBE_ID])[PROBE_ID]}"}
    for name, html in pages.items():
        assert PAYLOAD not in html and "<img src=x" not in html, name
        assert not re.search(r"""(?:src|href)=["']?(?:https?:)?//""", html), f"{name} loads something remote"
        assert "Content-Security-Policy" in html and "script-src &#39;sha256-" in html


def test_large_output_is_folded_not_dropped(report):
    html = (report.parent / "instances" / _page_names([PROBE_ID])[PROBE_ID]).read_text()
    assert "output line 1234" in html and "LAST-LINE-MARKER" in html
    fold = html.rfind("<details", 0, html.index("LAST-LINE-MARKER"))
    assert " open" not in html[fold:html.index(">", fold)], "a 3000-line output must start folded"


def test_issue_comes_from_the_result(report):
    html = (report.parent / "instances" / f"{DEMO_ID}.html").read_text()
    assert "slugify produces repeated dashes for repeated whitespace" in html
    assert "recovered from a trajectory" not in html  # results carry the issue; recovery is for older runs


def test_renders_failed_and_running_instances(tmp_path):
    """Instances with no trajectories, no selection, or no result yet still get pages."""
    store = RunStore(tmp_path / "run")
    try:
        store.set_meta("config_hash", "h")
        store.mark_instance("broken", "h", "failed", result={"instance_id": "broken", "status": "failed",
                                                             "errors": ["SandboxError: no image"]})
        store.mark_instance("busy", "h", "running")
        store.mark_instance("busy", "old", "solved", result={"instance_id": "busy", "status": "solved"})
    finally:
        store.close()
    index = build_report(tmp_path / "run", eval_report=None)
    html = index.read_text()
    assert "broken" in html and "SandboxError: no image" in html and "running" in html
    broken = (index.parent / "instances" / "broken.html").read_text()
    assert "no trajectory ran" in broken and "The issue text is not stored" in broken
    assert (index.parent / "instances" / "busy.html").is_file()


def test_eval_report_formats(tmp_path):
    harness = tmp_path / "harness.json"
    harness.write_text(json.dumps({"a": {"resolved": True, "tests_status": {}}, "b": {"resolved": False}}))
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"resolved_ids": ["a"], "unresolved_ids": ["b"], "error_ids": ["c"]}))
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"a": True, "b": False, "junk": "?"}))
    assert load_eval(harness) == load_eval(plain) == {"a": True, "b": False}
    assert load_eval(summary) == {"a": True, "b": False, "c": False}
    (tmp_path / "bad.json").write_text("[1]")
    with pytest.raises(ReportError):
        load_eval(tmp_path / "bad.json")


def test_page_names_are_safe_and_distinct():
    names = _page_names(["django__django-1", "a/b", "a_b", "../x", PROBE_ID])
    assert names["django__django-1"] == "django__django-1.html"
    assert len(set(names.values())) == 5
    assert all(re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._-]*\.html", n) for n in names.values())


def test_cli_command(run_dir, tmp_path):
    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    out = tmp_path / "site"
    done = CliRunner().invoke(app, ["report", str(run_dir), "--out", str(out),
                                    "--eval-report", str(run_dir / "eval" / "report.json")])
    assert done.exit_code == 0, done.output
    assert (out / "index.html").is_file() and str(out / "index.html") in done.output
    missing = CliRunner().invoke(app, ["report", str(tmp_path / "nowhere")])
    assert missing.exit_code == 1 and "not a run directory" in missing.output


# -- in the browser --------------------------------------------------------------------------------


def test_index_lists_filters_and_sorts_instances(browser, report):
    from selenium.webdriver.common.by import By

    browser.get(report.as_uri())
    rows = browser.find_elements(By.CSS_SELECTOR, "#instances tbody tr")
    assert sorted(r.find_element(By.TAG_NAME, "a").text for r in rows) == sorted([DEMO_ID, PROBE_ID])
    demo_row = next(r for r in rows if r.text.startswith(DEMO_ID))
    assert "solved" in demo_row.text and "resolved" in demo_row.text and "selector" in demo_row.text
    assert "2 / 2" in demo_row.text  # votes of the chosen patch / voting tests
    _screenshot(browser, "report-index.png")

    browser.find_element(By.CSS_SELECTOR, "button[data-filter='no_patch']").click()
    visible = [r for r in browser.find_elements(By.CSS_SELECTOR, "#instances tbody tr") if r.is_displayed()]
    assert [r.find_element(By.TAG_NAME, "a").text for r in visible] == [PROBE_ID]
    browser.find_element(By.CSS_SELECTOR, "button[data-filter='resolved']").click()
    visible = [r for r in browser.find_elements(By.CSS_SELECTOR, "#instances tbody tr") if r.is_displayed()]
    assert [r.find_element(By.TAG_NAME, "a").text for r in visible] == [DEMO_ID]
    browser.find_element(By.CSS_SELECTOR, "button[data-filter='all']").click()

    header = browser.find_element(By.XPATH, "//table[@id='instances']//th[normalize-space()='instance']")
    header.click()
    first = browser.find_element(By.CSS_SELECTOR, "#instances tbody tr a").text
    header.click()
    assert browser.find_element(By.CSS_SELECTOR, "#instances tbody tr a").text != first
    assert browser.execute_script("return typeof window.pwned") == "undefined"


def test_clicking_an_instance_shows_matrix_and_chosen_patch(browser, report):
    from selenium.webdriver.common.by import By

    browser.get(report.as_uri())
    browser.find_element(By.LINK_TEXT, DEMO_ID).click()
    assert browser.current_url.endswith(f"instances/{DEMO_ID}.html")
    matrix = browser.find_element(By.ID, "vote-matrix")
    assert matrix.is_displayed()
    headers = [h.text for h in matrix.find_elements(By.CSS_SELECTOR, "thead th")]
    assert "t2 ★" in headers and "original" in headers
    assert {"editing0", "editing1", "votes"} <= {h.text for h in matrix.find_elements(By.CSS_SELECTOR, "tbody th")}
    assert matrix.find_elements(By.CSS_SELECTOR, "td.tone-pass") and matrix.find_elements(By.CSS_SELECTOR, "td.tone-issue")
    chosen = browser.find_element(By.ID, "chosen")
    assert "+import re" in chosen.text and chosen.find_elements(By.CSS_SELECTOR, "pre.diff span.add")
    assert "resolved" in browser.find_element(By.ID, "instance-title").text
    browser.find_element(By.ID, "unfold").click()
    assert "Exit code: 2" in browser.find_element(By.ID, "trajectories").text
    _screenshot(browser, "report-instance.png")


def test_model_text_is_shown_not_run(browser, report):
    from selenium.webdriver.common.by import By

    page = report.parent / "instances" / _page_names([PROBE_ID])[PROBE_ID]
    browser.get(page.as_uri())
    browser.find_element(By.ID, "unfold").click()
    assert browser.execute_script("return typeof window.pwned") == "undefined"
    body = browser.find_element(By.TAG_NAME, "body").text
    assert f"Model says {PAYLOAD}" in body and IMG_PAYLOAD in body
    assert f"Issue text {PAYLOAD}" in body and f"crash {PAYLOAD}" in body
    assert not browser.find_elements(By.CSS_SELECTOR, "main script, main img")
    assert browser.execute_script("return typeof window.pwned") == "undefined"


def test_policy_blocks_scripts_that_slip_through(browser, report, tmp_path):
    """Defence in depth: were a payload ever rendered unescaped, the page's CSP would still not run it."""
    tampered = tmp_path / "tampered.html"
    tampered.write_text(report.read_text().replace("<main>", f"<main>{PAYLOAD}", 1))
    browser.get(tampered.as_uri())
    assert browser.execute_script("return typeof window.pwned") == "undefined"
    assert browser.execute_script("return document.querySelectorAll('main script').length") == 1


def test_selector_transcript_maps_letters_to_candidate_ids():
    from patchswarm.report.build import selector_labels

    selection = {"finalists": ["t3", "t0", "t7"], "selector_transcript": [{"role": "user", "content": "x"}]}
    assert selector_labels(selection) == [("A", "t3"), ("B", "t0"), ("C", "t7")]
    assert selector_labels({"finalists": ["t3"], "selector_transcript": []}) == []
