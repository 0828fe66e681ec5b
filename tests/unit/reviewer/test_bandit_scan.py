from __future__ import annotations

import pytest

from service_feature.diffs import parse_diff
from service_feature.models import Finding, FindingCategory, Severity
from service_feature.reviewer.scanners import bandit_scan
from tests.support.review_corpus import Files, MakePatch

BASE = {"app/__init__.py": "", "app/jobs.py": "def run(name: str) -> str:\n    return name\n"}


def scan(make_patch: MakePatch, patch: Files, base: Files = BASE) -> list[Finding]:
    checkouts = make_patch(base, patch)
    return bandit_scan.scan(parse_diff(checkouts.diff), checkouts.patched)


def test_shell_true_on_input_is_critical(make_patch: MakePatch) -> None:
    source = (
        "import subprocess\n\n\ndef run(name: str) -> None:\n    subprocess.run(f'echo {name}', shell=True)\n"
    )

    findings = {f.rule_id: f for f in scan(make_patch, {"app/jobs.py": source})}

    shell = findings["bandit.B602"]
    assert (shell.severity, shell.category, shell.file, shell.line) == (
        Severity.critical,
        FindingCategory.security,
        "app/jobs.py",
        5,
    )
    assert "CWE-78" in shell.message


def test_sql_built_from_input_is_found(make_patch: MakePatch) -> None:
    source = (
        "def find(cursor, name: str) -> None:\n"
        "    cursor.execute(\"SELECT * FROM users WHERE name = '%s'\" % name)\n"
    )

    findings = scan(make_patch, {"app/jobs.py": source})

    assert [(f.rule_id, f.severity, f.line) for f in findings] == [("bandit.B608", Severity.high, 2)]


def test_issues_on_lines_the_patch_does_not_add_are_not_reported(make_patch: MakePatch) -> None:
    base = {
        "app/jobs.py": "import pickle\n\n\ndef load(blob: bytes) -> object:\n    return pickle.loads(blob)\n"
    }
    patch = {"app/jobs.py": base["app/jobs.py"] + "\n\ndef size(blob: bytes) -> int:\n    return len(blob)\n"}

    assert scan(make_patch, patch, base) == []


def test_nosec_comments_do_not_silence_bandit(make_patch: MakePatch) -> None:
    source = "def run(code: str) -> None:\n    eval(code)  # nosec\n"

    assert [f.rule_id for f in scan(make_patch, {"app/jobs.py": source})] == ["bandit.B307"]


def test_asserts_and_hardcoded_passwords_are_left_to_others(make_patch: MakePatch) -> None:
    source = 'password = "hunter2hunter2"\n\n\ndef check(x: int) -> None:\n    assert x > 0\n'

    assert scan(make_patch, {"app/jobs.py": source}) == []


def test_low_findings_in_test_files_are_dropped_but_serious_ones_kept(make_patch: MakePatch) -> None:
    source = "import random\n\n\ndef test_x() -> None:\n    random.random()\n    eval('1 + 1')\n"

    findings = scan(make_patch, {"tests/test_jobs.py": source})

    assert [f.rule_id for f in findings] == ["bandit.B307"]


def test_a_file_bandit_cannot_parse_is_an_error_finding(make_patch: MakePatch) -> None:
    findings = scan(make_patch, {"app/jobs.py": "def broken(:\n"})

    assert [(f.rule_id, f.category, f.severity, f.file) for f in findings] == [
        ("bandit.error", FindingCategory.quality, Severity.high, "app/jobs.py")
    ]


def test_a_bandit_that_does_not_run_fails_closed(
    make_patch: MakePatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkouts = make_patch(BASE, {"app/jobs.py": "X = 1\n"})

    def broken() -> None:
        raise ImportError("bandit's plugins did not load")

    monkeypatch.setattr(bandit_scan, "_bandit", broken)

    findings = bandit_scan.scan(parse_diff(checkouts.diff), checkouts.patched)

    assert [(f.rule_id, f.severity) for f in findings] == [("bandit.error", Severity.high)]
    assert "unchecked" in findings[0].message


def test_no_changed_python_file_runs_nothing(make_patch: MakePatch, monkeypatch: pytest.MonkeyPatch) -> None:
    checkouts = make_patch(BASE, {"README.md": "docs\n", "app/jobs.py": None})
    monkeypatch.setattr(bandit_scan, "_bandit", None)

    assert bandit_scan.scan(parse_diff(checkouts.diff), checkouts.patched) == []


def test_a_file_too_large_to_parse_is_reported_not_parsed(
    make_patch: MakePatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bandit_scan, "MAX_FILE_BYTES", 64)
    findings = scan(make_patch, {"app/jobs.py": "import os\n" + "X = eval(os.environ['A'])\n" * 10})

    assert [(f.rule_id, f.file) for f in findings] == [("bandit.error", "app/jobs.py")]
    assert "too large" in findings[0].message


def test_files_in_subfolders_keep_their_repository_paths(make_patch: MakePatch) -> None:
    source = "import pickle\n\n\ndef load(b: bytes) -> object:\n    return pickle.loads(b)\n"
    findings = scan(make_patch, {"app/deep/er/tool.py": source})

    assert {(f.rule_id, f.file, f.line) for f in findings} >= {("bandit.B301", "app/deep/er/tool.py", 5)}


@pytest.mark.parametrize(
    ("severity", "confidence", "cwe", "expected"),
    [
        ("HIGH", "HIGH", 78, Severity.critical),
        ("HIGH", "MEDIUM", 327, Severity.high),
        ("MEDIUM", "HIGH", 20, Severity.high),
        ("MEDIUM", "LOW", 89, Severity.high),
        ("MEDIUM", "MEDIUM", 400, Severity.medium),
        ("LOW", "HIGH", 78, Severity.low),
        ("LOW", "LOW", None, Severity.low),
    ],
)
def test_severity_mapping(severity: str, confidence: str, cwe: int | None, expected: Severity) -> None:
    assert bandit_scan.severity(severity, confidence, cwe) is expected


@pytest.mark.parametrize(
    ("code", "prose"),
    [
        ('12 msg = f"Delete {name} from your list?"', True),
        ('4 label = "Select an item from the {} menu".format(kind)', True),
        ('12 q = f"SELECT * FROM users WHERE id = {uid}"', False),
        ('3 q = "select name from %s" % table', False),
        ('5 q = f"DELETE FROM {table}"', False),
    ],
)
def test_sql_words_in_a_sentence_are_not_sql(code: str, prose: bool) -> None:
    assert bandit_scan.reads_as_prose(code) is prose


def test_a_ui_message_starting_with_an_sql_word_is_no_finding(make_patch: MakePatch) -> None:
    source = 'def confirm(name: str) -> str:\n    return f"Delete {name} from your list?"\n'
    checkouts = make_patch({"app/__init__.py": ""}, {"app/ui.py": source})

    assert bandit_scan.scan(parse_diff(checkouts.diff), checkouts.patched) == []
