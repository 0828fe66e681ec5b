from __future__ import annotations

import os

import pytest
import yaml

from service_feature.models import FindingCategory, Severity
from service_feature.reviewer.diff import parse_diff
from service_feature.reviewer.scanners import semgrep_scan
from tests.support.review_corpus import MakePatch


def test_without_semgrep_the_scanner_returns_nothing(
    make_patch: MakePatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkouts = make_patch({"a.py": "\n"}, {"a.py": "eval(input())\n"})
    monkeypatch.setattr(semgrep_scan.shutil, "which", lambda name: None)

    assert semgrep_scan.executable() is None
    assert semgrep_scan.scan(parse_diff(checkouts.diff), checkouts.patched) == []


def test_a_relative_path_entry_still_gives_a_runnable_semgrep(monkeypatch: pytest.MonkeyPatch) -> None:
    """The scan runs in the checkout: `.tools/scanners/bin/semgrep` would not resolve from there."""
    monkeypatch.setattr(semgrep_scan.shutil, "which", lambda name: ".tools/scanners/bin/semgrep")

    assert semgrep_scan.executable() == os.path.abspath(".tools/scanners/bin/semgrep")


def test_the_vendored_rules_are_well_formed() -> None:
    files = sorted(semgrep_scan.RULES_DIR.glob("*.yml"))
    rules = [rule for path in files for rule in yaml.safe_load(path.read_text())["rules"]]

    assert len(files) >= 3
    assert len({rule["id"] for rule in rules}) == len(rules)
    for rule in rules:
        assert rule["id"].startswith("sf-")
        assert rule["severity"] in {"CRITICAL", "ERROR", "WARNING", "INFO"}
        assert rule["message"].strip()
        assert rule["metadata"]["category"] == "security"


@pytest.mark.usefixtures("semgrep_on_path")
@pytest.mark.parametrize(
    ("path", "bad", "good", "rule_id", "severity"),
    [
        (
            "app/auth.py",
            "import jwt\n\ndef claims(t, k):\n"
            '    return jwt.decode(t, k, options={"verify_signature": False})\n',
            'import jwt\n\ndef claims(t, k):\n    return jwt.decode(t, k, algorithms=["HS256"])\n',
            "semgrep.sf-python-jwt-unverified",
            Severity.high,
        ),
        (
            "app/archive.py",
            "import subprocess\n\ndef archive(name):\n"
            '    subprocess.run(["sh", "-c", f"tar czf x.tgz {name}"])\n',
            'import subprocess\n\ndef archive(name):\n    subprocess.run(["tar", "czf", "x.tgz", name])\n',
            "semgrep.sf-python-shell-argv-injection",
            Severity.critical,
        ),
        (
            "web/run.ts",
            'import { exec } from "child_process";\nexport const run = (n: string) => exec(`ls ${n}`);\n',
            'import { exec } from "child_process";\nexport const run = () => exec("ls -l");\n',
            "semgrep.sf-js-child-process-shell",
            Severity.high,
        ),
        (
            "web/eval.js",
            "export const calc = (expr) => eval(expr);\n",
            'export const calc = () => eval("1 + 1");\n',
            "semgrep.sf-js-eval",
            Severity.high,
        ),
        (
            "svc/db.go",
            'package svc\n\nimport (\n\t"database/sql"\n\t"fmt"\n)\n\nfunc F(db *sql.DB, n string) {\n'
            "\tdb.Query(fmt.Sprintf(\"SELECT * FROM t WHERE n = '%s'\", n))\n}\n",
            'package svc\n\nimport "database/sql"\n\nfunc F(db *sql.DB, n string) {\n'
            '\tdb.Query("SELECT * FROM t WHERE n = ?", n)\n}\n',
            "semgrep.sf-go-sql-sprintf",
            Severity.high,
        ),
    ],
)
def test_rules_find_the_bad_code_and_pass_the_good(
    make_patch: MakePatch, path: str, bad: str, good: str, rule_id: str, severity: Severity
) -> None:
    bad_patch = make_patch({"README.md": "x\n"}, {path: bad})
    good_patch = make_patch({"README.md": "x\n"}, {path: good})

    findings = semgrep_scan.scan(parse_diff(bad_patch.diff), bad_patch.patched)

    assert [(f.rule_id, f.category, f.severity, f.file) for f in findings] == [
        (rule_id, FindingCategory.security, severity, path)
    ]
    assert semgrep_scan.scan(parse_diff(good_patch.diff), good_patch.patched) == []


@pytest.mark.usefixtures("semgrep_on_path")
def test_the_patch_cannot_silence_a_rule(make_patch: MakePatch) -> None:
    silenced = (
        "import jwt\n\ndef claims(t, k):\n"
        '    return jwt.decode(t, k, options={"verify_signature": False})  # nosemgrep\n'
    )
    patch = make_patch({"README.md": "x\n"}, {"app/auth.py": silenced})

    findings = semgrep_scan.scan(parse_diff(patch.diff), patch.patched)

    assert [f.rule_id for f in findings] == ["semgrep.sf-python-jwt-unverified"]
