"""bandit on the Python files a patch changes, keeping only the issues on lines the patch adds.

bandit has no diff mode, so it runs once per review on every changed Python file of the patched tree, in a
subprocess: the code under review is parsed outside the reviewer's process and a pathological file costs a
timeout, not the service. `--ignore-nosec` because the patch's author could otherwise silence bandit with a
comment. Skipped: `B101` (assert: tests are made of asserts) and `B105`-`B107` (hard-coded passwords: the
secrets scanner's job, and bandit's message would quote the secret into the findings). In test files, low
findings (`random`, temporary paths) are dropped. A `.bandit` file in the repository is not read: bandit
looks for one only under directory targets, and the targets here are files.

Severity mapping: bandit's severity (HIGH→high, MEDIUM→medium, LOW→low), raised one level when bandit is
highly confident or when the weakness is an injection or unsafe deserialization (CWE-78, 89, 94, 95, 502),
for severities MEDIUM and above. So `shell=True` on a variable (HIGH/HIGH) is critical, and SQL built from
input (B608, MEDIUM), `pickle.loads`, `eval`, `exec` and `yaml.load` are high.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from service_feature.models import Finding, FindingCategory, Severity
from service_feature.reviewer.diff import FileChange
from service_feature.reviewer.scanners.paths import is_test_path, source_changes

TIMEOUT_SECONDS = 120.0
SKIPPED = ("B101", "B105", "B106", "B107")  # assert; hard-coded passwords (the secrets scanner's job)
_LEVELS = (Severity.low, Severity.medium, Severity.high, Severity.critical)
_RANK = {"LOW": 0, "MEDIUM": 1, "HIGH": 2}
_INJECTION_CWES = frozenset({78, 89, 94, 95, 502})
_CODE_LINE_NUMBER = re.compile(r"^\d+\s?")
_STRING_LITERAL = re.compile(r"""[fFrRbBuU]{0,2}(["'])(.*?)(?<!\\)\1""")
_PROSE_WORDS = re.compile(
    r"(?i)\b(?:a|an|the|your|you|my|our|please|this|these|those|will|would|should|cannot|can't|won't)\b"
)
_SQL_SIGNS = re.compile(
    r"(?i)[=*<>]|\bwhere\b|\bjoin\b|\border\s+by\b|\bgroup\s+by\b|\blimit\s+\d|\bvalues\s*\(|\bset\s+\w+\s*="
    r"|\binto\s+[\w.`\"\[]+\s*\(|%s|\$\d|:\w+\b|\?\s*[,)]"
)


def scan(changes: Sequence[FileChange], patched_tree: Path) -> list[Finding]:
    targets = {change.path: change.added_numbers for change in source_changes(changes, (".py",))}
    if not targets:
        return []
    command = [sys.executable, "-m", "bandit", "--format", "json", "--quiet", "--ignore-nosec"]
    command += ["--skip", ",".join(SKIPPED), "--", *sorted(targets)]
    try:
        completed = subprocess.run(
            command, cwd=patched_tree, capture_output=True, text=True, timeout=TIMEOUT_SECONDS, check=False
        )
        report: dict[str, Any] = json.loads(completed.stdout)
    except (subprocess.TimeoutExpired, json.JSONDecodeError, OSError) as error:
        return [
            _error(None, f"bandit did not run ({type(error).__name__}), so the Python changes are unchecked")
        ]
    findings = [_error(os.path.normpath(e["filename"]), e["reason"]) for e in report.get("errors", [])]
    for result in report.get("results", []):
        path = os.path.normpath(result["filename"])
        if targets.get(path, frozenset()).intersection(result.get("line_range") or [result["line_number"]]):
            if result["test_id"] == "B608" and reads_as_prose(str(result.get("code", ""))):
                continue
            finding = _finding(path, result)
            if finding.severity is not Severity.low or not is_test_path(path):
                findings.append(finding)
    return findings


def reads_as_prose(code: str) -> bool:
    """Whether the string bandit took for SQL (B608: a string starting with SELECT, DELETE, ... that is
    formatted) reads as an English sentence for a person, such as a UI message ("Delete {name} from your
    list?"), rather than a statement: it has words no statement has and none of SQL's operators."""
    text = " ".join(_CODE_LINE_NUMBER.sub("", line) for line in code.splitlines())
    literals = " ".join(match.group(2) for match in _STRING_LITERAL.finditer(text)) or text
    return bool(_PROSE_WORDS.search(literals)) and not _SQL_SIGNS.search(literals)


def severity(bandit_severity: str, confidence: str, cwe: int | None) -> Severity:
    """Our severity for a bandit issue (see the module's docstring)."""
    rank = _RANK.get(bandit_severity.upper(), 0)
    if rank >= 1 and (confidence.upper() == "HIGH" or cwe in _INJECTION_CWES):
        rank += 1
    return _LEVELS[rank]


def _finding(path: str, result: dict[str, Any]) -> Finding:
    cwe = (result.get("issue_cwe") or {}).get("id")
    sev, conf = result["issue_severity"], result["issue_confidence"]
    return Finding(
        rule_id=f"bandit.{result['test_id']}",
        category=FindingCategory.security,
        severity=severity(sev, conf, cwe),
        message=f"{result['issue_text']} (bandit {result['test_name']}, severity {sev}, confidence {conf}"
        + (f", CWE-{cwe})" if cwe else ")"),
        file=path,
        line=result["line_number"],
    )


def _error(path: str | None, reason: str) -> Finding:
    return Finding(
        rule_id="bandit.error",
        category=FindingCategory.quality,
        severity=Severity.high,
        message=f"bandit could not check this code: {reason}",
        file=path,
    )
