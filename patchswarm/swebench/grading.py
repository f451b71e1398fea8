"""Grade one prediction the way the official harness does, in a patchswarm sandbox.

Same steps as `swebench.harness.run_evaluation.run_instance`: apply the model patch with the harness's
own chain of apply commands (`GIT_APPLY_CMDS`, tree reset between attempts, then a reverse check), run
`make_test_spec(row).eval_script` (the dataset's eval_script plus the harness's exit-code record) with
stdout and stderr merged in order, and grade the log with `swebench.harness.grading.get_eval_report`
(the row's `log_parser`, the harness's test-status rules). Differences, all deliberate: sandboxes have no
network unless asked (`--network`), with loopback stand-ins where a repository's tests need it
(`stand_ins`); a patch that does not apply is reported as `patch_failed` (the harness counts it as an
error); in our local images the script's base commit is named HEAD (see `scripts.adapt_for_local_image`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from pydantic import BaseModel, Field
from swebench.harness.constants import (
    APPLY_PATCH_FAIL,
    APPLY_PATCH_PASS,
    CONTAINER_PATCH_FILE,
    FAIL_ONLY_REPOS,
    FAIL_TO_PASS,
    LOG_INSTANCE,
    LOG_REPORT,
    LOG_TEST_OUTPUT,
    PASS_TO_PASS,
    EvalType,
)
from swebench.harness.grading import get_eval_report
from swebench.types import TestSpec

from patchswarm.paths import safe_name
from patchswarm.swebench.dataset import SweInstance
from patchswarm.swebench.environments import InstanceImage
from patchswarm.swebench.scripts import WHEELHOUSE, adapt_for_local_image, make_eval_script
from patchswarm.swebench.specs import SpecError, SpecTable
from patchswarm.swebench.stand_ins import READY_TIMEOUT_S, eval_env, stand_ins_for, start_script
from sandbox import Limits, SandboxError, SandboxManager

Status = Literal["resolved", "unresolved", "patch_failed", "empty_patch", "timeout", "error"]
EVAL_SCRIPT_PATH = "/tmp/eval.sh"
OUTPUT_CAP = 256 * 1024 * 1024  # the harness keeps whole logs; parsers need every line
# Our images have no network: a re-install in the eval script must not wait on an index; the build
# backend's wheels were put in the image's wheelhouse at build time.
LOCAL_EVAL_ENV = MappingProxyType({"PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
                                   "PIP_FIND_LINKS": WHEELHOUSE})
# Root in our images grades as root does in the official ones, where it owns every file: it may
# rewrite the repository (the sandbox user's) and reinstall into the locked venv. Still no network.
ROOT_GRADING_CAPS = ("CHOWN", "DAC_OVERRIDE", "FOWNER")


class InstanceReport(BaseModel):
    """The outcome of grading one instance; `report` is exactly the harness's report.json content."""

    instance_id: str
    repo: str
    model_name_or_path: str
    status: Status
    resolved: bool
    report: dict[str, Any]
    image: str | None = None
    image_kind: str | None = None
    python_used: str | None = None
    python_nearest: bool = False
    log_dir: str | None = None
    duration_s: float = 0.0
    error: str | None = None
    patch_applied: bool | None = Field(None, description="Our own record: the apply chain succeeded (the harness's report says false whenever the log has no test results).")
    image_s: float = Field(0.0, description="Seconds spent getting the image: fetch and build, or finding it cached.")
    system_build_s: float = 0.0
    env_build_s: float = 0.0
    instance_build_s: float = 0.0
    build_log: str | None = None
    env_broken: bool = False
    env_broken_reason: str | None = None
    network: bool = Field(False, description="Graded with network (opt-in), as the official harness grades.")
    stand_ins: list[str] = Field(default_factory=list, description="What stood in for the network the official harness has (see stand_ins.py).")


def harness_test_spec(instance: SweInstance, spec_table: SpecTable | None = None) -> TestSpec:
    """The harness's TestSpec for a row; rows without eval_script/log_parser get them from the spec table."""
    from swebench.harness.utils import make_test_spec  # imports `datasets`: only when grading

    row = instance.harness_row()
    if not row.get("eval_script") or not row.get("log_parser"):
        if spec_table is None:
            raise SpecError(f"{instance.instance_id} has no eval_script/log_parser column: pass a spec table")
        row["eval_script"] = row.get("eval_script") or make_eval_script(
            instance, spec_table.spec(instance.repo, instance.version))
        row["log_parser"] = row.get("log_parser") or spec_table.repo(instance.repo).log_parser
    if not row.get("eval_type"):
        fail_only = instance.repo in FAIL_ONLY_REPOS
        row["eval_type"] = (EvalType.FAIL_ONLY if fail_only else EvalType.PASS_AND_FAIL).value
    row["image"] = row.get("image") or ""
    return make_test_spec(row)


def blank_report(instance_id: str, patch: str | None) -> dict[str, Any]:
    """The harness's report for an instance that produced no gradable log."""
    return {instance_id: {"patch_is_None": patch is None, "patch_exists": bool(patch),
                          "patch_successfully_applied": False, "resolved": False}}


def grade_log(test_spec: TestSpec, model_patch: str | None, log_path: Path,
              model_name: str = "patchswarm") -> dict[str, Any]:
    """The harness's report.json for a finished evaluation log."""
    prediction = {"instance_id": test_spec.instance_id, "model_patch": model_patch,
                  "model_name_or_path": model_name}
    return get_eval_report(test_spec, prediction, str(log_path), include_tests_status=True)


def apply_script(patch_path: str = CONTAINER_PATCH_FILE) -> str:
    """The harness's apply chain as one shell script (its commands, its order, its reset between tries)."""
    from swebench.harness.run_evaluation import GIT_APPLY_CMDS  # a constant; the module is slow to import

    lines = []
    for attempt, command in enumerate(GIT_APPLY_CMDS):
        if attempt:
            lines.append("git checkout -- . ; git clean -fd")
        lines.append(f"if {command} {patch_path}; then echo '{APPLY_PATCH_PASS}'; exit 0; fi")
    lines.append(f"if git apply --check --reverse {patch_path}; then "
                 f"echo '{APPLY_PATCH_PASS}: verified already applied'; exit 0; fi")
    lines.append(f"echo '{APPLY_PATCH_FAIL}'; exit 1")
    return "\n".join(lines) + "\n"


def _failing_tests(report: dict[str, Any]) -> list[str]:
    status = report.get("tests_status") or {}
    return [*status.get(FAIL_TO_PASS, {}).get("failure", []), *status.get(PASS_TO_PASS, {}).get("failure", [])]


def grading_limits(client: Any) -> Limits:
    """What a grading sandbox may use. The official harness's containers have no CPU limit, and listed tests
    count the cores they see: pylint's multiprocessing tests skip below 2 (a skip is not a pass), so with a
    1-CPU sandbox PASS_TO_PASS failed on pylint-6528 and -7277. Grading sees every core of the engine.
    Memory: real suites (compiled extensions, big fixtures) need more than a solving sandbox."""
    try:
        cores = int(client.info().get("NCPU") or 1)
    except Exception:  # noqa: BLE001 - an engine that cannot say: the sandbox default
        cores = 1
    return Limits(memory_mb=4096, cpus=float(cores))


def grade_instance(
    client, instance: SweInstance, model_patch: str | None, image: InstanceImage, *,
    manager: SandboxManager | None = None, spec_table: SpecTable | None = None, model_name: str = "patchswarm",
    timeout: float = 1800, log_dir: Path | None = None, skip_patch: bool = False, limits: Limits | None = None,
    on_phase: Callable[[str], None] | None = None, use_stand_ins: bool = True, network: bool = False,
) -> InstanceReport:
    """Apply `model_patch` (unless `skip_patch`) in a fresh no-network sandbox of `image`, run the eval script,
    and grade the log. Nothing raises for a bad patch or failing tests; both are outcomes. `use_stand_ins`:
    start the repository's network stand-ins (stand_ins.py) where our image has them, when grading offline.
    `network`: grade with network, as the official harness's containers have it (the patch's code and
    the tests reach the internet; for patches you trust); pip then may fetch what a patch adds."""
    started = time.monotonic()

    def phase(name: str) -> None:
        if on_phase:
            on_phase(name)

    log_dir = log_dir or Path("logs") / "patchswarm-eval" / safe_name(model_name) / safe_name(instance.instance_id)
    log_dir.mkdir(parents=True, exist_ok=True)
    result = InstanceReport(
        instance_id=instance.instance_id, repo=instance.repo, model_name_or_path=model_name, status="error",
        resolved=False, report=blank_report(instance.instance_id, model_patch), image=image.tag,
        image_kind=image.kind, python_used=image.python_used, python_nearest=image.nearest, log_dir=str(log_dir),
    )
    if not skip_patch and not model_patch:
        result.status = "empty_patch"  # the harness does not run empty predictions either
        return result
    own_manager = manager is None
    manager = manager or SandboxManager(client, handle_signals=False)
    try:
        test_spec = harness_test_spec(instance, spec_table)
        script = test_spec.eval_script
        if image.kind == "local":
            script = adapt_for_local_image(script, instance.base_commit)
        (log_dir / "eval.sh").write_text(script)
        user = image.grade_user or image.user
        caps = ROOT_GRADING_CAPS if user != image.user else ()
        stand_ins = stand_ins_for(instance.repo) if image.kind == "local" and use_stand_ins and not network else None
        if stand_ins:
            caps = (*caps, *stand_ins.capabilities())
        sandbox = manager.create(image.tag, user=user, workdir=image.workdir, limits=limits or grading_limits(client),
                                 cap_add=caps, network=network, hosts=stand_ins.hosts() if stand_ins else None)
        result.network = network
        try:
            if not skip_patch:
                phase("apply patch")
                (log_dir / "patch.diff").write_text(model_patch or "")
                result.patch_applied = _apply(sandbox, model_patch or "", log_dir, image.workdir)
                if not result.patch_applied:
                    result.status = "patch_failed"
                    result.error = "the patch does not apply"
                    return result
            env = dict(LOCAL_EVAL_ENV) if image.kind == "local" and not network else None
            if stand_ins:
                phase("start stand-ins")
                started_ins = sandbox.exec(start_script(stand_ins), timeout=READY_TIMEOUT_S + 30, user="0")
                if started_ins.exit_code != 0:
                    raise SandboxError(f"the network stand-ins did not start: {_last_lines(started_ins.output)}")
                result.stand_ins = stand_ins.describe()
                env = {**(env or {}), **eval_env(stand_ins)}
            phase("run tests")
            sandbox.write_file(EVAL_SCRIPT_PATH, script)
            run = sandbox.exec(f"/bin/bash {EVAL_SCRIPT_PATH}", timeout=timeout, env=env,
                               workdir=image.workdir, output_cap=OUTPUT_CAP)
        finally:
            manager.discard(sandbox)
        log_path = log_dir / LOG_TEST_OUTPUT
        log_path.write_text(run.output + (f"\n\nTimeout error: {timeout} seconds exceeded." if run.timed_out else ""))
        if run.timed_out:
            result.status, result.error = "timeout", f"tests timed out after {timeout:.0f}s"
        else:
            phase("grade")
            patch = "" if skip_patch else model_patch
            result.report = grade_log(test_spec, patch, log_path, model_name)
            entry = result.report[instance.instance_id]
            result.resolved = bool(entry["resolved"])
            result.status = "resolved" if result.resolved else "unresolved"
            if not entry.get("patch_successfully_applied", True) and patch is not None:
                # The harness's flag means "the log has test results"; say why there are none.
                result.error = "no test results in the log" + (
                    f" ({entry['infra_failure_reason']})" if entry.get("infra_failure_reason") else "") + \
                    f": {_last_lines(run.output)}"
    except (SandboxError, ValueError, OSError) as exc:
        result.status, result.error = "error", str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    finally:
        if own_manager:
            manager.close_all()
        result.duration_s = round(time.monotonic() - started, 2)
        (log_dir / LOG_REPORT).write_text(json.dumps(result.report, indent=4))
    return result


def _last_lines(output: str, count: int = 3) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip() and not line.startswith("+ ")]
    return " ⏎ ".join(line[:200] for line in lines[-count:]) or "no output"


def _apply(sandbox, patch: str, log_dir: Path, workdir: str) -> bool:
    sandbox.write_file(CONTAINER_PATCH_FILE, patch)
    run = sandbox.exec(apply_script(), timeout=300, workdir=workdir)
    (log_dir / LOG_INSTANCE).write_text(run.output)
    return run.exit_code == 0


def mark_validation(report: InstanceReport, mode: Literal["gold", "empty"]) -> InstanceReport:
    """Flag a broken environment: the gold patch must resolve, the empty patch must not."""
    if mode == "gold" and not report.resolved:
        failing = _failing_tests(report.report.get(report.instance_id, {}))
        detail = f"failing: {', '.join(failing[:10])}" if failing else (report.error or report.status)
        report.env_broken, report.env_broken_reason = True, f"gold patch does not resolve ({detail})"
    elif mode == "empty" and report.resolved:
        report.env_broken = True
        report.env_broken_reason = "the empty patch resolves: FAIL_TO_PASS tests pass without any fix"
    return report
