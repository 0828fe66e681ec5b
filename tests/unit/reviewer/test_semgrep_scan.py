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


# The rules after maintained rule sets (docs/review.md, "Rules and the maintained rules they follow"): each
# shape beside a safe look-alike that must stay quiet.
_MAINTAINED_SHAPES = {
    "svc/tls.go": (
        "package svc\n\n"
        'import "crypto/tls"\n\n'
        "func Insecure() *tls.Config {\n"
        "\treturn &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: true}\n"  # 6
        "}\n\n"
        "func Strict() *tls.Config { return &tls.Config{MinVersion: tls.VersionTLS12} }\n"
    ),
    "svc/unzip.go": (
        "package svc\n\n"
        'import (\n\t"archive/zip"\n\t"os"\n\t"path/filepath"\n\t"strings"\n)\n\n'
        "func Unchecked(r *zip.Reader, dest string) {\n"
        "\tfor _, f := range r.File {\n"
        "\t\ttarget := filepath.Join(dest, f.Name)\n"  # 12
        "\t\tif f.FileInfo().IsDir() {\n\t\t\tcontinue\n\t\t}\n"
        "\t\tos.Create(target)\n"
        "\t}\n}\n\n"
        "func Checked(r *zip.Reader, dest string) {\n"
        "\tfor _, f := range r.File {\n"
        "\t\ttarget := filepath.Join(dest, f.Name)\n"
        '\t\tif !strings.HasPrefix(target, filepath.Clean(dest)+"/") {\n\t\t\tcontinue\n\t\t}\n'
        "\t\tos.Create(target)\n"
        "\t}\n}\n"
    ),
    "svc/handler.go": (
        "package svc\n\n"
        'import (\n\t"crypto/md5"\n\t"math/rand"\n\t"net/http"\n\t"os"\n\t"os/exec"\n\t"path/filepath"\n)\n\n'
        "func Handle(w http.ResponseWriter, r *http.Request) {\n"
        '\tname := r.URL.Query().Get("name")\n'
        '\texec.Command("convert", name, "out.png").Run()\n'
        '\thttp.Get(r.FormValue("url"))\n'  # 15
        '\tos.ReadFile(filepath.Join("/srv", name))\n'  # 16
        '\tos.ReadFile(filepath.Join("/srv", filepath.Base(name)))\n'
        "}\n\n"
        "func ResetToken() int { return rand.Intn(1 << 30) }\n"  # 20
        "func Jitter() int     { return rand.Intn(100) }\n\n"
        "func HashPassword(password string) [16]byte { return md5.Sum([]byte(password)) }\n"  # 23
        "func ETag(body []byte) [16]byte             { return md5.Sum(body) }\n"
    ),
    "web/server.ts": (
        'import https from "node:https";\n'
        'import * as vm from "node:vm";\n'
        'import { execSync } from "child_process";\n'
        'import path from "node:path";\n'
        'import express from "express";\n\n'
        "export const insecure = new https.Agent({ keepAlive: true, rejectUnauthorized: false });\n"  # 7
        "export const strict = new https.Agent({ rejectUnauthorized: true });\n"
        'process.env.NODE_TLS_REJECT_UNAUTHORIZED = "0";\n'  # 9
        "export const run = (code: string) => vm.runInNewContext(code, {});\n"  # 10
        'export const fixed = () => vm.runInNewContext("1 + 1");\n'
        "const app = express();\n"
        'app.get("/f/:name", (req, res) => {\n'
        "  res.sendFile(path.join(__dirname, req.params.name));\n"  # 14
        '  res.sendFile(req.params.name, { root: "/srv" });\n'
        "  fetch(req.query.url as string);\n"  # 16
        "  res.send(execSync(`ls ${req.query.dir}`));\n"  # 17
        "});\n"
        "export function unpack(zip: any, dir: string, fs: any) {\n"
        "  for (const entry of zip.getEntries()) {\n"
        "    fs.writeFileSync(path.join(dir, entry.entryName), entry.getData());\n"  # 21
        "  }\n"
        "}\n"
        "export function resetCode(): string {\n"
        "  return Math.random().toString(36).slice(2);\n"  # 25
        "}\n"
        "export const delay = () => 100 + Math.random() * 50;\n"
    ),
    "web/Note.tsx": (
        'import DOMPurify from "dompurify";\n'
        "export const Raw = ({ html }: { html: string }) => "
        "<div dangerouslySetInnerHTML={{ __html: html }} />;\n"
        "export const Clean = ({ html }: { html: string }) => (\n"
        "  <div dangerouslySetInnerHTML={{ __html: DOMPurify.sanitize(html) }} />\n"
        ");\n"
    ),
    "src/net.rs": (
        "use std::process::Command;\n\n"
        "pub fn client() -> reqwest::Result<reqwest::Client> {\n"
        "    reqwest::Client::builder().danger_accept_invalid_certs(true).build()\n"  # 4
        "}\n\n"
        "pub fn thumb(name: &str) {\n"
        '    let script = format!("convert {} t.png", name);\n'
        '    Command::new("/bin/bash").args(["-c", &script]).status().ok();\n'  # 9
        '    Command::new("convert").arg(name).arg("t.png").status().ok();\n'
        "}\n\n"
        "pub fn unzip(dest: &std::path::Path, file: &zip::read::ZipFile) -> std::path::PathBuf {\n"
        "    dest.join(file.name())\n"  # 14
        "}\n\n"
        "pub fn lock() -> std::path::PathBuf {\n"
        '    std::env::temp_dir().join("app.lock")\n'  # 18
        "}\n"
    ),
    "scripts/fetch.sh": (
        "#!/bin/sh\n"
        "OUT=/tmp/fetch-$$.tar\n"  # 2
        'curl -fsSL --insecure "$URL" -o "$OUT"\n'  # 3
        'curl -fsSL "$URL" -o "$(mktemp)"\n'
    ),
    ".github/workflows/triage.yml": (
        "on:\n  pull_request_target:\n    types: [opened]\n"
        "jobs:\n  t:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - uses: actions/checkout@v4\n"
        "        with:\n"
        "          ref: ${{ github.event.pull_request.head.sha }}\n"  # 10
        '      - run: echo "${{ github.event.pull_request.title }}"\n'  # 11
        "      - env:\n          TITLE: ${{ github.event.pull_request.title }}\n"
        '        run: echo "$TITLE"\n'
    ),
    "app/views.py": (
        "import base64\nimport os\nimport pickle\n\nimport requests\n"
        "from flask import Flask, request, send_file, send_from_directory\n\n"
        "app = Flask(__name__)\n\n\n"
        '@app.get("/a")\n'
        "def a():\n"
        '    return send_file(os.path.join("/srv", request.args["f"]))\n'  # 13
        "\n\n"
        '@app.get("/b")\n'
        "def b():\n"
        '    return send_from_directory("/srv", request.args["f"])\n'
        "\n\n"
        '@app.get("/c")\n'
        "def c():\n"
        '    return requests.get(request.args["u"], timeout=5).text\n'  # 23
        "\n\n"
        '@app.get("/d")\n'
        "def d():\n"
        '    return pickle.loads(base64.b64decode(request.cookies["cart"]))\n'  # 28
    ),
}


@pytest.mark.usefixtures("semgrep_on_path")
def test_the_shapes_of_maintained_rules_are_found_and_their_look_alikes_are_not(
    make_patch: MakePatch,
) -> None:
    patch = make_patch({"README.md": "x\n"}, _MAINTAINED_SHAPES)

    findings = semgrep_scan.scan(parse_diff(patch.diff), patch.patched)

    assert sorted((f.file or "", f.line or 0, f.rule_id) for f in findings) == [
        (".github/workflows/triage.yml", 10, "semgrep.sf-gha-pull-request-target-checkout"),
        (".github/workflows/triage.yml", 11, "semgrep.sf-gha-run-script-injection"),
        ("app/views.py", 13, "semgrep.sf-python-request-path"),
        ("app/views.py", 23, "semgrep.sf-python-request-url-fetch"),
        ("app/views.py", 28, "semgrep.sf-python-request-deserialization"),
        ("scripts/fetch.sh", 2, "semgrep.sf-sh-predictable-temp-file"),
        ("scripts/fetch.sh", 3, "semgrep.sf-sh-tls-verification-off"),
        ("src/net.rs", 4, "semgrep.sf-rust-tls-verification-off"),
        ("src/net.rs", 9, "semgrep.sf-rust-shell-command"),
        ("src/net.rs", 14, "semgrep.sf-rust-archive-entry-path"),
        ("src/net.rs", 18, "semgrep.sf-rust-temp-dir-fixed-name"),
        ("svc/handler.go", 15, "semgrep.sf-go-request-url-fetch"),
        ("svc/handler.go", 16, "semgrep.sf-go-request-path"),
        ("svc/handler.go", 20, "semgrep.sf-go-insecure-random-secret"),
        ("svc/handler.go", 23, "semgrep.sf-go-weak-password-hash"),
        ("svc/tls.go", 6, "semgrep.sf-go-tls-skip-verify"),
        ("svc/unzip.go", 12, "semgrep.sf-go-archive-path-join"),
        ("web/Note.tsx", 2, "semgrep.sf-js-react-dangerous-html"),
        ("web/server.ts", 7, "semgrep.sf-js-tls-verification-off"),
        ("web/server.ts", 9, "semgrep.sf-js-tls-verification-off"),
        ("web/server.ts", 10, "semgrep.sf-js-vm-code"),
        ("web/server.ts", 14, "semgrep.sf-js-request-path"),
        ("web/server.ts", 16, "semgrep.sf-js-request-url-fetch"),
        ("web/server.ts", 17, "semgrep.sf-js-child-process-shell"),
        ("web/server.ts", 17, "semgrep.sf-js-request-to-shell"),
        ("web/server.ts", 21, "semgrep.sf-js-archive-entry-path"),
        ("web/server.ts", 25, "semgrep.sf-js-insecure-random-secret"),
    ]
    severities = {f.rule_id: f.severity for f in findings}
    assert severities["semgrep.sf-js-request-to-shell"] is Severity.critical
    assert severities["semgrep.sf-python-request-deserialization"] is Severity.critical
    assert severities["semgrep.sf-gha-pull-request-target-checkout"] is Severity.critical


@pytest.mark.parametrize(
    ("path", "workflow"),
    [
        (".github/workflows/ci.yml", True),
        ("sub/.github/workflows/release.yaml", True),
        ("action.yml", True),
        ("deploy/app.yaml", False),
        (".github/dependabot.yml", False),
        ("workflows/ci.yml", False),
    ],
)
def test_only_workflow_yaml_is_given_to_the_workflow_rules(path: str, workflow: bool) -> None:
    assert semgrep_scan.is_workflow(path) is workflow
