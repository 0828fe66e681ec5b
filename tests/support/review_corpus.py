"""The labelled review corpus: each `tests/data/review/<case>.yml` becomes a real patch on a real checkout.

A case is one YAML file (whole, so the corpus has no loose `.py` files for linters and pytest to trip on):

    description: what the case shows
    source: where its shape comes from (an advisory, a scanner's own test case, a real leak shape)
    held_out: true                                                  # optional: never tuned on (see below)
    labels: classes                                                 # optional: `expected.rules` are classes
    specification: {title, requirements, target_files, language}   # optional; a small Python feature
    policy: {max_changed_lines: 40}                                 # optional ReviewPolicy fields
    base: {path: content}                                           # the base commit's files
    patch: {path: content or null}                                  # files the patch writes (null deletes)
    tests: {passed: 3, failed: 1, failures: [{name, outcome}]}      # optional; null: the tests did not run
    base_tests: {...}                                               # optional: the same run on the base
    expected:
      decision: approve                     # the right decision
      rules: [rule ids]                     # the findings a careful reviewer would report
      known_gap: {decision, misses: [...], false_alarms: [...]}   # optional: where the reviewer falls short

The labels are the truth; `known_gap` records today's shortfall, so the corpus test pins today's behaviour
exactly (`observed_*`) while the bench scores precision and recall against the truth.

Held-out cases measure the reviewer the way an independent set would: they were marked when written,
before the reviewer was run on them, and no rule or threshold is changed to fit them; their shortfalls are
recorded as `known_gap`, never fixed against them. `bench/bench_review.py --held-out` reports them apart.

Class labels (`labels: classes`, the third blind batch): `expected.rules` name classes of issue
(`class.tls-verification-disabled`, `class.path-traversal`, `class.secret`, …) rather than rule ids, since the
batch was labelled without knowing which rule would report what. A finding counts as its class
(`finding_class`) when it is medium or above; low and info findings are notes that decide nothing.

Content may be `!!binary` (base64) for binary files. `materialise()` commits the base in a git repository,
makes the diff with `git diff --binary -M` from a copy with the patch written, and `git apply`s it to a fresh
copy of the base: the review sees what the service gives it, a diff and a patched checkout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from service_feature.models import Decision, Finding, Language, Severity, Specification, TestResult
from service_feature.reviewer.review import ReviewInput, ReviewPolicy

Files = Mapping[str, str | bytes | None]  # path -> content; None deletes
CORPUS_DIR = Path(__file__).resolve().parents[1] / "data" / "review"
_GIT_ENV = {
    "GIT_CONFIG_GLOBAL": os.devnull,  # the user's config (e.g. diff.noprefix) must not shape the diff
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "corpus",
    "GIT_AUTHOR_EMAIL": "corpus@example.invalid",
    "GIT_COMMITTER_NAME": "corpus",
    "GIT_COMMITTER_EMAIL": "corpus@example.invalid",
}


@dataclass(frozen=True)
class Case:
    name: str
    description: str
    subject: ReviewInput
    policy: ReviewPolicy
    decision: Decision
    rules: frozenset[str]
    observed_decision: Decision
    observed_rules: frozenset[str]
    held_out: bool = False
    class_labels: bool = False

    def found(self, findings: list[Finding]) -> frozenset[str]:
        """What the case's labels are compared with: rule ids, or classes for a class-labelled case."""
        if self.class_labels:
            return finding_classes(findings)
        return frozenset(finding.rule_id for finding in findings)


_BANDIT_CLASSES = {
    "command-injection": "B602 B603 B604 B605 B606 B607 B609",
    "sql-injection": "B608 B610 B611",
    "code-injection": "B102 B307",
    "unsafe-deserialization": "B301 B302 B403 B506 B614",
    "weak-crypto": "B303 B304 B305 B324 B413 B505",
    "insecure-randomness": "B311",
    "tls-verification-disabled": "B323 B501 B502 B503 B504",
    "insecure-temp-file": "B108 B306",
    "path-traversal": "B202",
    "ssrf": "B310",
    "xss": "B701 B702 B703 B704",
    "xxe": "B313 B314 B315 B316 B317 B318 B319 B320 B405 B406 B407 B408 B409 B410 B411",
}
_BANDIT = {test: name for name, tests in _BANDIT_CLASSES.items() for test in tests.split()}
# A semgrep rule's class from the words of its id, first match wins.
_SEMGREP_WORDS = (
    ("tls-verification-disabled", ("tls", "cert", "ssl")),
    ("ssrf", ("ssrf", "url-fetch")),
    (
        "command-injection",
        ("shell", "child-process", "command", "computed-program", "exec", "script-injection"),
    ),
    ("code-injection", ("eval", "vm", "code-")),
    ("xss", ("html", "xss", "dangerously")),
    ("sql-injection", ("sql",)),
    ("insecure-randomness", ("random",)),
    ("path-traversal", ("tarfile", "zip", "traversal", "path", "file")),
    ("insecure-temp-file", ("temp", "tmp")),
    ("weak-crypto", ("hash", "md5", "sha1", "crypto")),
    ("unsafe-deserialization", ("deserial", "pickle", "yaml")),
    ("jwt-unverified", ("jwt",)),
)
_WEIGHTY = {Severity.critical, Severity.high, Severity.medium}


def finding_class(rule_id: str) -> str:
    """The class of issue a rule id reports (`class.<name>`), for class-labelled cases."""
    scanner, _, rest = rule_id.partition(".")
    if scanner == "secrets":
        return "class.secret"
    if scanner == "bandit" and rest in _BANDIT:
        return f"class.{_BANDIT[rest]}"
    if scanner == "semgrep":
        for name, words in _SEMGREP_WORDS:
            if any(word in rest for word in words):
                return f"class.{name}"
    if scanner == "policy":
        return f"class.{rest}"
    if scanner == "tests":
        return f"class.tests-{rest}"
    if scanner == "architecture":
        return "class.architecture"
    return f"class.{rule_id}"


def finding_classes(findings: list[Finding]) -> frozenset[str]:
    return frozenset(finding_class(finding.rule_id) for finding in findings if finding.severity in _WEIGHTY)


def case_names() -> list[str]:
    return sorted(path.stem for path in CORPUS_DIR.glob("*.yml"))


@dataclass(frozen=True)
class Checkouts:
    diff: str
    base: Path
    patched: Path


MakePatch = Callable[[Files, Files], Checkouts]  # the unit tests' fixture: base files, patched files


def build(base_files: Files, patch_files: Files, workdir: Path) -> Checkouts:
    """Commit `base_files`, diff them against the patch with git, and `git apply` that diff to a copy."""
    base, after, patched = workdir / "base", workdir / "after", workdir / "patched"
    _write(base, base_files)
    _git(base, "init", "--quiet", "--initial-branch=main")
    _git(base, "add", "--all")
    _git(base, "commit", "--quiet", "--allow-empty", "--message=base")
    shutil.copytree(base, after, symlinks=True)
    _write(after, patch_files)
    _git(after, "add", "--all")
    diff = _git(after, "diff", "--cached", "--binary", "-M")
    shutil.copytree(base, patched, symlinks=True)
    if diff:
        _git(patched, "apply", "--whitespace=nowarn", "-", stdin=diff)
    shutil.rmtree(after)
    return Checkouts(diff.decode("utf-8", errors="replace"), base, patched)


def materialise(name: str, workdir: Path) -> Case:
    """Build the case's checkouts under `workdir` (which must be empty or absent)."""
    raw: dict[str, Any] = yaml.safe_load((CORPUS_DIR / f"{name}.yml").read_text(encoding="utf-8"))
    checkouts = build(raw["base"], raw["patch"], workdir)
    expected = raw["expected"]
    gap = expected.get("known_gap") or {}
    rules = frozenset(expected.get("rules") or [])
    return Case(
        name=name,
        description=raw.get("description", ""),
        subject=ReviewInput(
            specification=_specification(name, raw.get("specification") or {}),
            diff=checkouts.diff,
            tests=run_result(raw["tests"]) if "tests" in raw else run_result({}),
            patched_tree=checkouts.patched,
            base_tree=checkouts.base,
            base_test_result=run_result(raw["base_tests"]) if raw.get("base_tests") is not None else None,
        ),
        policy=ReviewPolicy(**(raw.get("policy") or {})),
        decision=Decision(expected["decision"]),
        rules=rules,
        observed_decision=Decision(gap.get("decision", expected["decision"])),
        observed_rules=(rules - set(gap.get("misses", []))) | set(gap.get("false_alarms", [])),
        held_out=bool(raw.get("held_out", False)),
        class_labels=raw.get("labels") == "classes",
    )


def _write(root: Path, files: Files) -> None:
    for relative, content in files.items():
        path = root / relative
        if content is None:
            path.unlink()
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


def _git(repo: Path, *args: str, stdin: bytes | None = None) -> bytes:
    completed = subprocess.run(
        ["git", *args],
        cwd=repo,
        input=stdin,
        capture_output=True,
        check=False,
        env={**os.environ, **_GIT_ENV},
    )
    if completed.returncode != 0:
        raise RuntimeError(f"git {args[0]} failed in {repo}: {completed.stderr.decode(errors='replace')}")
    return completed.stdout


def _specification(name: str, raw: dict[str, Any]) -> Specification:
    return Specification(
        title=raw.get("title", name),
        description=raw.get("description", ""),
        requirements=raw.get("requirements", []),
        target_files=raw.get("target_files", []),
        language=Language(raw.get("language", "python")),
    )


def run_result(raw: dict[str, Any] | None) -> TestResult | None:
    """A passing run unless the case says otherwise; `null` means the tests were not run."""
    if raw is None:
        return None
    failed, errored = raw.get("failed", 0), raw.get("errored", 0)
    return TestResult.model_validate(
        {
            "command": "pytest -q",
            "sandbox": "corpus",
            "exit_code": raw.get("exit_code", 1 if failed or errored else 0),
            "passed": raw.get("passed", 5),
            **{key: value for key, value in raw.items() if key not in ("exit_code", "passed")},
        }
    )
