"""Policy rules: what a feature patch should not touch without a person looking, whatever the code says.

Each changed path is checked against ordered groups of sensitive files (the first group that matches names the
finding): `.git` internals (critical: a patch has no business there; `.GIT` and `.git.` count, as on
case-insensitive or dot-trimming file systems), the reviewer's own configuration
`.service-feature.yml` (high: the patch could relax the rules it is judged by), CI and repository governance
(high: CI holds secrets and decides what "green" means), build scripts (high: they run code at build and test
time), lock files and dependency manifests (medium: a supply-chain change, often legitimate).

Beyond paths: files outside the specification's `target_files` (medium each; test files are always allowed,
because a feature's tests belong wherever the repository keeps them), deleted test files and removed test
functions (high), tests newly skipped, marked xfail or focused with `.only` (high), binary files (high: no
scanner can read them), and a diff larger than `max_changed_lines` (medium).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from service_feature.diffs import FileChange, FileStatus
from service_feature.models import Finding, FindingCategory, Severity
from service_feature.reviewer.scanners.paths import is_test_path, matches
from service_feature.reviewer.scanners.tests_scan import defined_tests


@dataclass(frozen=True)
class _PathRule:
    rule_id: str
    severity: Severity
    what: str
    patterns: tuple[str, ...]

    @property
    def lowered(self) -> tuple[str, ...]:
        return tuple(pattern.lower() for pattern in self.patterns)


_PATH_RULES = (
    _PathRule(
        "policy.review-config", Severity.high, "the reviewer's configuration", ("/.service-feature.yml",)
    ),
    _PathRule(
        "policy.ci-config",
        Severity.high,
        "a CI or repository-governance file",
        (
            ".github/workflows/",
            ".github/actions/",
            ".github/CODEOWNERS",
            "/CODEOWNERS",
            "/.gitlab-ci.yml",
            "/.gitlab-ci.yaml",
            ".gitlab/",
            "Jenkinsfile",
            ".circleci/",
            "/.travis.yml",
            "/azure-pipelines.yml",
            "/azure-pipelines.yaml",
            "/bitbucket-pipelines.yml",
            ".buildkite/",
            "/.drone.yml",
            ".woodpecker/",
            ".ci/",
            "/.pre-commit-config.yaml",
        ),
    ),
    _PathRule(
        "policy.build-script",
        Severity.high,
        "a build script",
        (
            "Makefile",
            "GNUmakefile",
            "*.mk",
            "setup.py",
            "setup.cfg",
            "noxfile.py",
            "tox.ini",
            "build.gradle",
            "build.gradle.kts",
            "settings.gradle",
            "settings.gradle.kts",
            "gradlew",
            "pom.xml",
            "CMakeLists.txt",
            "*.cmake",
            "meson.build",
            "BUILD",
            "BUILD.bazel",
            "WORKSPACE",
            "build.rs",
            "Dockerfile",
            "Dockerfile.*",
            "*.dockerfile",
            "Containerfile",
            "Containerfile.*",
            "*.containerfile",
            ".husky/",
            ".githooks/",
            ".justfile",
            "justfile",
            "Taskfile.yml",
            "Taskfile.yaml",
            "Rakefile",
        ),
    ),
    _PathRule(
        "policy.lock-file",
        Severity.medium,
        "a dependency lock file",
        (
            "package-lock.json",
            "npm-shrinkwrap.json",
            "yarn.lock",
            "pnpm-lock.yaml",
            "bun.lockb",
            "bun.lock",
            "go.work.sum",
            "poetry.lock",
            "uv.lock",
            "pdm.lock",
            "Pipfile.lock",
            "go.sum",
            "Cargo.lock",
            "Gemfile.lock",
            "composer.lock",
        ),
    ),
    _PathRule(
        "policy.dependency-manifest",
        Severity.medium,
        "a dependency manifest",
        (
            "requirements*.txt",
            "*-requirements.txt",
            "*_requirements.txt",
            "requirements*.in",
            "requirements/*.txt",
            "requirements/*.in",
            "constraints*.txt",
            "pyproject.toml",
            "Pipfile",
            "environment.yml",
            "package.json",
            "go.mod",
            "go.work",
            ".npmrc",
            ".yarnrc",
            ".yarnrc.yml",
            "pip.conf",
            "Cargo.toml",
            "Gemfile",
            "composer.json",
            "/.gitmodules",
        ),
    ),
)

# Ways to skip, expect to fail or focus tests, per language (a JavaScript pattern such as `fit(` would match
# scikit-learn's `model.fit(` in Python). Imports with other names are covered where the API is reached
# through an attribute (`from pytest import mark` → `mark.skip`).
_PYTHON_SKIPS = (
    r"\bmark\.(?:skip|skipif|xfail)\b|\bpytest\.(?:skip|xfail|importorskip)\s*\("  # pytest
    r"|\bunittest\.(?:skip\w*|expectedFailure)\b|@(?:skip(?:If|Unless)?|expectedFailure)\b"  # unittest
    r"|\.skipTest\s*\(|\braise\s+(?:\w+\.)*SkipTest\b"
)
_GO_SKIPS = r"\b\w+\.Skip(?:Now|f)?\s*\("  # t.Skip, b.SkipNow, tb.Skipf
_JS_SKIPS = (
    r"\b(?:it|test|describe|suite|context|bench)(?:\.\w+)*\.(?:skip|only|skipIf|runIf|failing)\b"
    r"|(?<![.\w$])(?:x|f)(?:it|describe|test|context)\s*\(|\b(?:this|ctx|t)\.skip\s*\("
)
_RUST_SKIPS = r"#\[\s*ignore\b|#\[\s*cfg_attr\s*\(.*\bignore\b"
_SKIPS_BY_SUFFIX: dict[str, re.Pattern[str]] = {
    ".py": re.compile(_PYTHON_SKIPS),
    ".go": re.compile(_GO_SKIPS),
    ".rs": re.compile(_RUST_SKIPS),
    **dict.fromkeys((".js", ".jsx", ".mjs", ".cjs", ".ts", ".tsx", ".mts", ".cts"), re.compile(_JS_SKIPS)),
}
# A file of another kind (a notebook, a doc) is checked against all of them but the JavaScript short forms.
_ANY_SKIPS = re.compile("|".join((_PYTHON_SKIPS, _GO_SKIPS, _RUST_SKIPS)))


def scan(changes: Sequence[FileChange], target_files: Sequence[str], max_changed_lines: int) -> list[Finding]:
    findings = [finding for change in changes for finding in _path_findings(change)]
    if target_files:
        findings += _outside_targets(changes, target_files)
    findings += _test_tampering(changes)
    findings += [
        _finding(
            "policy.binary-file", Severity.high, change, "a binary file: no scanner can review its content"
        )
        for change in changes
        if change.is_binary and change.exists_after
    ]
    changed = sum(change.changed_lines for change in changes)
    if changed > max_changed_lines:
        findings.append(
            Finding(
                rule_id="policy.large-diff",
                category=FindingCategory.policy,
                severity=Severity.medium,
                message=f"the diff changes {changed} lines, over {max_changed_lines}: too large to review",
            )
        )
    return findings


def _path_findings(change: FileChange) -> Iterator[Finding]:
    paths = {path for path in (change.old_path, change.new_path) if path}
    if any(_in_git_dir(path) for path in paths):
        yield _finding(
            "policy.git-internals", Severity.critical, change, f"changes git's internals ({change.status})"
        )
        return
    for rule in _PATH_RULES:
        # Case-insensitive: `makefile`, `DOCKERFILE` and `.github/workflows/CI.YML` do the same job.
        if any(matches(path.lower(), rule.lowered) for path in paths):
            yield _finding(rule.rule_id, rule.severity, change, f"changes {rule.what} ({change.status})")
            return


def _in_git_dir(path: str) -> bool:
    """Under a `.git` directory; `.GIT` and `.git.` count (case-insensitive, dot-trimming file systems)."""
    return any(part.lower().rstrip(". ") == ".git" for part in path.split("/")[:-1])


def _outside_targets(changes: Sequence[FileChange], target_files: Sequence[str]) -> Iterator[Finding]:
    patterns = [pattern for target in target_files for pattern in _target_patterns(target)]
    for change in changes:
        if not is_test_path(change.path) and not matches(change.path, patterns):
            yield _finding(
                "policy.outside-target",
                Severity.medium,
                change,
                "changes a file outside the specification's targets",
            )


def _target_patterns(target: str) -> tuple[str, ...]:
    """A target is a glob, a file or a directory; anchored at the root, unlike bare-name globs."""
    target = "/" + target.strip().removeprefix("./").lstrip("/")
    if any(char in target for char in "*?"):
        return (target,)
    return (target, target.rstrip("/") + "/")


def _test_tampering(changes: Sequence[FileChange]) -> Iterator[Finding]:
    still_defined = {name for change in changes for line in change.added for name in defined_tests(line.text)}
    for change in changes:
        if change.status is FileStatus.deleted and is_test_path(change.path):
            yield _finding("policy.deleted-test", Severity.high, change, "deletes a test file")
            continue
        if is_test_path(change.path):
            for line in change.removed:
                for name in defined_tests(line.text):
                    if name not in still_defined:
                        yield _finding(
                            "policy.deleted-test",
                            Severity.high,
                            change,
                            f"removes the test {name}",
                            line.number,
                        )
        skips = _SKIPS_BY_SUFFIX.get(posixpath.splitext(change.path.lower())[1], _ANY_SKIPS)
        for line in change.added:
            if skips.search(line.text):
                yield _finding(
                    "policy.skipped-test",
                    Severity.high,
                    change,
                    "skips, expects to fail or focuses tests",
                    line.number,
                )


def _finding(
    rule_id: str, severity: Severity, change: FileChange, message: str, line: int | None = None
) -> Finding:
    return Finding(
        rule_id=rule_id,
        category=FindingCategory.policy,
        severity=severity,
        message=message,
        file=change.path,
        line=line,
    )
