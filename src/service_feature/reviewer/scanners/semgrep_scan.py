"""semgrep with the project's own rules (`reviewer/rules/semgrep/*.yml`), when semgrep is installed.

semgrep's registry rule packs need the network and may not be redistributed, so the rules are our own.
`make install` and the image install semgrep (in a tool environment of its own: its pins clash with ours);
without one on PATH the scanner is skipped and `review()` says so in its reasons. It runs once per review on
the changed files, offline (`--metrics=off`, no version check), with `--disable-nosem` so the patch cannot
silence it, and keeps the results on added lines. It runs as `--experimental`, semgrep's native CLI: 0.25 s
a scan instead of 3.4 s for the Python one; the reviewer's tests (rule cases and the corpus) gave the same
results with either when it was chosen.

Severity: a rule's CRITICAL is critical, ERROR (or HIGH) high, WARNING (or MEDIUM) medium, INFO (or LOW)
low. A rule whose `metadata.category` is `security` gives security findings, any other quality findings.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from service_feature.diffs import FileChange
from service_feature.models import Finding, FindingCategory, Severity
from service_feature.reviewer.scanners.paths import source_changes

RULES_DIR = Path(__file__).resolve().parent.parent / "rules" / "semgrep"
# What the rules cover: source files by suffix, and GitHub Actions workflows (YAML, by place).
LANGUAGE_SUFFIXES = (".py", ".js", ".jsx", ".mjs", ".cjs", ".ts", ".tsx", ".go", ".rs", ".sh", ".bash")
WORKFLOW_SUFFIXES = (".yml", ".yaml")
TIMEOUT_SECONDS = 300.0
_SEVERITY = {
    "CRITICAL": Severity.critical,
    "ERROR": Severity.high,
    "HIGH": Severity.high,
    "WARNING": Severity.medium,
    "MEDIUM": Severity.medium,
    "INFO": Severity.low,
    "LOW": Severity.low,
}


def executable() -> str | None:
    """The semgrep on PATH, if any, as an absolute path (it runs in the checkout, not in this cwd)."""
    found = shutil.which("semgrep")
    return os.path.abspath(found) if found else None


def scan(changes: Sequence[FileChange], patched_tree: Path) -> list[Finding]:
    semgrep = executable()
    targets = {
        change.path: change.added_numbers
        for change in source_changes(changes)
        if change.path.endswith(LANGUAGE_SUFFIXES) or is_workflow(change.path)
    }
    if semgrep is None or not targets:
        return []
    command = [semgrep, "scan", "--experimental", "--config", str(RULES_DIR), "--json", "--quiet"]
    command += ["--metrics=off", "--disable-version-check", "--disable-nosem", "--no-git-ignore"]
    command += ["--", *sorted(targets)]
    try:
        completed = subprocess.run(
            command, cwd=patched_tree, capture_output=True, text=True, timeout=TIMEOUT_SECONDS, check=False
        )
        report: dict[str, Any] = json.loads(completed.stdout)
    except (subprocess.TimeoutExpired, json.JSONDecodeError, OSError) as error:
        return [_error(f"semgrep did not run ({type(error).__name__}), so its rules were not checked")]
    findings = [
        _error(str(error.get("message")))
        for error in report.get("errors", [])
        if error.get("level") == "error"
    ]
    for result in report.get("results", []):
        first, last = result["start"]["line"], result["end"]["line"]
        if targets.get(result["path"], frozenset()).intersection(range(first, last + 1)):
            findings.append(_finding(result))
    return findings


def is_workflow(path: str) -> bool:
    """A GitHub Actions workflow or action definition: the only YAML the workflow rules are given."""
    parts = path.split("/")
    if not path.endswith(WORKFLOW_SUFFIXES):
        return False
    in_workflows = len(parts) >= 3 and parts[-3:-1] == [".github", "workflows"]
    return in_workflows or parts[-1] in ("action.yml", "action.yaml")


def _finding(result: dict[str, Any]) -> Finding:
    extra = result.get("extra", {})
    security = extra.get("metadata", {}).get("category") == "security"
    return Finding(
        rule_id="semgrep." + result["check_id"].rsplit(".", 1)[-1],
        category=FindingCategory.security if security else FindingCategory.quality,
        severity=_SEVERITY.get(extra.get("severity", ""), Severity.medium),
        message=" ".join(str(extra.get("message", "")).split()),
        file=result["path"],
        line=result["start"]["line"],
    )


def _error(message: str) -> Finding:
    return Finding(
        rule_id="semgrep.error",
        category=FindingCategory.quality,
        severity=Severity.high,
        message=message,
    )
