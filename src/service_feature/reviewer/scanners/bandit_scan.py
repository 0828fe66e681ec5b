"""bandit on the Python files a patch changes, keeping only the issues on lines the patch adds.

bandit has no diff mode, so it runs once per review on every changed Python file of the patched tree,
in-process through its API (`BanditManager`): a subprocess cost a Python start and bandit's import per review
(0.5-0.9 s of a review that should take a tenth of that); the import is paid once per process now. bandit
only parses the code (`ast`), never runs it; a file over `MAX_FILE_BYTES` is not parsed but reported, so a
pathological file cannot hold a reviewer thread, and one that does not parse is an error finding.
nosec comments are ignored, because the patch's author could otherwise silence bandit with a comment.
Skipped: `B101` (assert: tests are made of asserts) and `B105`-`B107` (hard-coded passwords: the
secrets scanner's job, and bandit's message would quote the secret into the findings). In test files, low
findings (`random`, temporary paths) are dropped. A `.bandit` file in the repository is not read: bandit
looks for one only under directory targets, and the targets here are files.

Severity mapping: bandit's severity (HIGH→high, MEDIUM→medium, LOW→low), raised one level when bandit is
highly confident or when the weakness is an injection or unsafe deserialization (CWE-78, 89, 94, 95, 502),
for severities MEDIUM and above. So `shell=True` on a variable (HIGH/HIGH) is critical, and SQL built from
input (B608, MEDIUM), `pickle.loads`, `eval`, `exec` and `yaml.load` are high.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from service_feature.diffs import FileChange
from service_feature.models import Finding, FindingCategory, Severity
from service_feature.reviewer.scanners.paths import is_test_path, source_changes

MAX_FILE_BYTES = 1024 * 1024
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
    findings: list[Finding] = []
    parsed: list[str] = []
    for path in sorted(targets):
        file = patched_tree / path
        if file.is_file() and file.stat().st_size > MAX_FILE_BYTES:
            findings.append(_error(path, f"the file is over {MAX_FILE_BYTES // 1024} KB, too large to check"))
        else:
            parsed.append(path)
    try:
        issues, skipped = _run_bandit(patched_tree, parsed)
    except Exception as error:  # bandit's own failure: fail closed, the change is unchecked
        return [
            _error(None, f"bandit did not run ({type(error).__name__}), so the Python changes are unchecked")
        ]
    findings += [_error(path, reason) for path, reason in skipped]
    for result in issues:
        path = result["filename"]
        if targets.get(path, frozenset()).intersection(result.get("line_range") or [result["line_number"]]):
            if result["test_id"] == "B608" and reads_as_prose(str(result.get("code", ""))):
                continue
            finding = _finding(path, result)
            if finding.severity is not Severity.low or not is_test_path(path):
                findings.append(finding)
    return findings


def _run_bandit(tree: Path, paths: Sequence[str]) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """bandit's issues (as its JSON report has them, file names relative to `tree`) and the files it
    skipped with why."""
    if not paths:
        return [], []
    config_class, manager_class = _bandit()
    manager = manager_class(
        config_class(), "file", quiet=True, ignore_nosec=True, profile={"exclude": list(SKIPPED)}
    )
    manager.discover_files([str(tree / path) for path in paths], False)
    manager.run_tests()
    issues = []
    for issue in manager.get_issue_list():
        result = issue.as_dict(with_code=True)
        result["filename"] = _relative(tree, result["filename"])
        issues.append(result)
    return issues, [(_relative(tree, name), reason) for name, reason in manager.skipped]


def _relative(tree: Path, name: str) -> str:
    return os.path.normpath(os.path.relpath(name, tree))


@functools.cache
def _bandit() -> tuple[Any, Any]:
    """bandit's config and manager classes, imported on first use (its plugins load once per process)."""
    with warnings.catch_warnings():  # stevedore's deprecation notices while bandit loads its plugins
        warnings.simplefilter("ignore", DeprecationWarning)
        from bandit.core import config, manager  # type: ignore[import-untyped]

    logging.getLogger("bandit").setLevel(logging.ERROR)  # its per-file progress is not ours to log
    return config.BanditConfig, manager.BanditManager


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
