from __future__ import annotations

import os

import pytest
import yaml

from service_feature.diffs import parse_diff
from service_feature.models import FindingCategory, Severity
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


# Variant spellings of each covered shape, with a safe look-alike in the same file: one semgrep run.
_VARIANTS = {
    "web/node_prefix.js": (
        'const cp = require("node:child_process");\n'  # 1
        'const { exec: run, execSync } = require("node:child_process");\n'
        "function f(name) {\n"
        "  cp.exec(`ls ${name}`);\n"  # 4
        '  run("ls " + name);\n'  # 5
        "  execSync(name);\n"  # 6
        '  cp.exec("ls");\n'
        '  cp.execFile("git", ["log", name]);\n'
        '  cp.spawn("/bin/sh", ["-c", name]);\n'  # 9
        "  cp.spawn(name, { shell: true });\n"  # 10
        '  cp.execFile("/usr/bin/bash", ["-lc", name]);\n'  # 11
        '  cp.spawn("ls", { shell: false });\n'
        "}\n"
    ),
    "web/esm.ts": (
        'import { execSync as sh } from "node:child_process";\n'
        'import * as child from "node:child_process";\n'
        "export function g(name: string) {\n"
        "  sh(`git log ${name}`);\n"  # 4
        "  child.exec(name);\n"  # 5
        "}\n"
    ),
    "app/shells.py": (
        "import asyncio\nimport os\nimport subprocess as sp\n\n\n"
        "def f(name: str) -> None:\n"
        '    os.execl("/bin/sh", "sh", "-c", name)\n'  # 7
        '    sp.run(["/usr/local/bin/bash", "-lc", name])\n'  # 8
        '    sp.run(["/usr/bin/env", "bash", "-c", name])\n'  # 9
        "    asyncio.create_subprocess_shell(name)\n"  # 10
        '    asyncio.create_subprocess_exec("sh", "-c", name)\n'  # 11
        '    sp.run(["sh", "-c", "ls"])\n'
        '    asyncio.create_subprocess_exec("ls", name)\n'
    ),
    "app/tokens.py": (
        "import random\n\n\n"
        "def reset_token() -> str:\n"
        '    return "".join(random.choice("abc") for _ in range(32))\n'  # 5
        "\n\n"
        "def tips(items: list[str]) -> list[str]:\n"
        "    return random.sample(items, 3)\n"
    ),
    "svc/run.go": (
        "package svc\n\nimport (\n"
        '\tosexec "os/exec"\n'
        ")\n\n"
        "func Run(name string, prog string) {\n"
        '\tosexec.Command("/bin/sh", "-c", "ls "+name).Run()\n'  # 8
        '\tosexec.Command("/usr/bin/env", "bash", "-c", name).Run()\n'  # 9
        '\tosexec.Command("ls", name).Run()\n'
        "\tosexec.Command(prog, name).Run()\n"  # 11
        '\tosexec.Command("sh", "-c", "ls").Run()\n'
        "}\n"
    ),
}


@pytest.mark.usefixtures("semgrep_on_path")
def test_variant_spellings_of_a_covered_shape_are_found(make_patch: MakePatch) -> None:
    patch = make_patch({"README.md": "x\n"}, _VARIANTS)

    findings = semgrep_scan.scan(parse_diff(patch.diff), patch.patched)

    assert sorted((f.file or "", f.line or 0, f.rule_id) for f in findings) == [
        ("app/shells.py", 7, "semgrep.sf-python-shell-argv-injection"),
        ("app/shells.py", 8, "semgrep.sf-python-shell-argv-injection"),
        ("app/shells.py", 9, "semgrep.sf-python-shell-argv-injection"),
        ("app/shells.py", 10, "semgrep.sf-python-async-shell"),
        ("app/shells.py", 11, "semgrep.sf-python-shell-argv-injection"),
        ("app/tokens.py", 5, "semgrep.sf-python-insecure-random-secret"),
        ("svc/run.go", 8, "semgrep.sf-go-shell-command"),
        ("svc/run.go", 9, "semgrep.sf-go-shell-command"),
        ("svc/run.go", 11, "semgrep.sf-go-computed-program"),
        ("web/esm.ts", 4, "semgrep.sf-js-child-process-shell"),
        ("web/esm.ts", 5, "semgrep.sf-js-child-process-shell"),
        ("web/node_prefix.js", 4, "semgrep.sf-js-child-process-shell"),
        ("web/node_prefix.js", 5, "semgrep.sf-js-child-process-shell"),
        ("web/node_prefix.js", 6, "semgrep.sf-js-child-process-shell"),
        ("web/node_prefix.js", 9, "semgrep.sf-js-child-process-spawn-shell"),
        ("web/node_prefix.js", 10, "semgrep.sf-js-child-process-spawn-shell"),
        ("web/node_prefix.js", 11, "semgrep.sf-js-child-process-spawn-shell"),
    ]


@pytest.mark.usefixtures("semgrep_on_path")
def test_a_grouped_import_of_unsafe_is_found(make_patch: MakePatch) -> None:
    source = (
        'package svc\n\nimport (\n\t"fmt"\n\t"unsafe"\n)\n\n'
        "func F(s string) { fmt.Println(unsafe.Sizeof(s)) }\n"
    )
    patch = make_patch({"README.md": "x\n"}, {"svc/cast.go": source})

    findings = semgrep_scan.scan(parse_diff(patch.diff), patch.patched)

    assert [(f.rule_id, f.severity) for f in findings] == [("semgrep.sf-go-unsafe", Severity.high)]
