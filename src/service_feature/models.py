"""Data models shared by every service: the feature request and the results that travel with it."""

from __future__ import annotations

import re
import uuid
from enum import StrEnum
from pathlib import PurePosixPath
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from service_feature.git import check_no_credentials

ExecutionId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]

# Requesters' text is untrusted. No NUL anywhere (PostgreSQL refuses it, C tools truncate at it); no control
# characters in one-line fields (a newline in a title would forge commit trailers).
_NO_NUL = r"^[^\x00]*$"
_ONE_LINE = r"^[^\x00-\x1f\x7f]*$"
_REF_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//")


def check_branch_name(name: str) -> str:
    """The rules of `git check-ref-format --branch` in pure Python: refs/heads/<name> must be a valid ref."""
    components = name.split("/")
    if (
        not name
        or name.startswith(("-", "/"))
        or name.endswith(("/", "."))
        or name == "HEAD"
        or _REF_FORBIDDEN.search(name)
        or any(c.startswith(".") or c.endswith(".lock") for c in components)
    ):
        raise ValueError(f"'{name}' is not a valid branch name (see git check-ref-format)")
    return name


def check_repository_path(path: str) -> str:
    """A path inside the repository, normalised (`./a//b` → `a/b`); absolute, `..` and `.git` refused."""
    if path.startswith("/"):
        raise ValueError(f"'{path}' is absolute; give a path inside the repository")
    parts = PurePosixPath(path).parts
    if ".." in parts:
        raise ValueError(f"'{path}' leaves the repository")
    if any(part.lower().rstrip(". ") == ".git" for part in parts):
        raise ValueError(f"'{path}' is inside .git")
    if not parts:
        raise ValueError("a target file needs a path")
    return "/".join(parts)


def new_execution_id() -> str:
    return uuid.uuid4().hex


class StrictModel(BaseModel):
    """Rejects unknown fields, so a typo in a request is an error rather than silently ignored."""

    model_config = ConfigDict(extra="forbid")


class Language(StrEnum):
    python = "python"
    go = "go"
    javascript = "javascript"
    typescript = "typescript"
    rust = "rust"


class Specification(StrictModel):
    title: Annotated[
        str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True, pattern=_ONE_LINE)
    ]
    description: Annotated[str, StringConstraints(max_length=20_000, pattern=_NO_NUL)] = ""
    requirements: list[Annotated[str, StringConstraints(min_length=1, max_length=2_000, pattern=_NO_NUL)]] = (
        Field(default_factory=list, max_length=100)
    )
    target_files: list[
        Annotated[
            str,
            StringConstraints(min_length=1, max_length=500, pattern=_ONE_LINE),
            AfterValidator(check_repository_path),
        ]
    ] = Field(default_factory=list, max_length=200)
    language: Language


class DeliveryMode(StrEnum):
    """How a tested, reviewed change reaches the repository: a branch `feature/<id>`, or that branch and a
    pull request (a merge request on GitLab) opened on its forge."""

    branch = "branch"
    pull_request = "pull_request"


class FollowUp(StrictModel):
    """A feature that answers a review comment on one of the platform's pull requests: it starts from the
    pull request's branch (the request's `branch`), pushes its commit onto that branch, and replies in the
    comment's thread (GitHub: the comment id; GitLab: the discussion id; Gitea: the comment id)."""

    pull_request: Annotated[int, Field(ge=1)]
    # None: the comment has no thread to answer in (a Gitea review summary): the answer is a comment.
    thread_id: (
        Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_-]+$")] | None
    ) = None


class FeatureRequest(StrictModel):
    """The reference design's example request. `execution_id` is generated when absent; `delivery` is the
    worker's DELIVERY_MODE when absent."""

    execution_id: ExecutionId = Field(default_factory=new_execution_id)
    repository_url: Annotated[
        str,
        StringConstraints(min_length=1, max_length=2_000, strip_whitespace=True, pattern=_ONE_LINE),
        AfterValidator(check_no_credentials),
    ]
    branch: Annotated[
        str,
        StringConstraints(min_length=1, max_length=255, strip_whitespace=True),
        AfterValidator(check_branch_name),
    ] = "main"
    specification: Specification
    test_command: (
        Annotated[str, StringConstraints(min_length=1, max_length=2_000, pattern=_NO_NUL)] | None
    ) = None
    delivery: DeliveryMode | None = None
    follow_up: FollowUp | None = None


class TestOutcome(StrEnum):
    __test__ = False  # a domain enum, not a pytest class

    passed = "passed"
    failed = "failed"
    errored = "errored"
    skipped = "skipped"


class TestCase(BaseModel):
    __test__: ClassVar[bool] = False  # a domain model, not a pytest class

    name: str
    outcome: TestOutcome
    message: str = ""


class TestResult(BaseModel):
    """What the executor reports for one test run.

    `passed`/`failed`/`errored`/`skipped`/`failures` are the patched run's raw numbers. When the base
    commit's tests were run too (`baseline`: that run's counts), `classification` sorts every named test by
    its base → patched outcome into `fixed`, `broken`, `still_failing`, `still_passing`, `new_passing`,
    `new_failing` and `removed` (on the base, not run by the patch), so that failures already there before
    the patch are reported as pre-existing rather than blamed on it. `unattributed_failures` counts the
    failures no test can be named for (a crash, a build or collection error). `dependency_files_changed`
    lists the dependency manifests/lock files the patch changed (their setup reruns only when policy allows).
    `environment` says which installed environment the tests ran with and whether it came from the cache.
    `disk_quota_exceeded`: the run wrote more than the sandbox's disk quota (SANDBOX_DISK_QUOTA_MB).
    `untestable` is set by a preparation run (the base commit alone, before any model call) when the base
    cannot be tested at all: the step, the command and the tail of its output, in words a user can act on.
    """

    __test__: ClassVar[bool] = False

    command: str
    sandbox: str
    exit_code: int | None
    passed: int = 0
    failed: int = 0
    errored: int = 0
    skipped: int = 0
    timed_out: bool = False
    disk_quota_exceeded: bool = False
    duration_seconds: float = 0.0
    output_tail: str = ""
    failures: list[TestCase] = Field(default_factory=list)
    unattributed_failures: int = 0
    baseline: dict[str, Any] | None = None
    classification: dict[str, list[str]] = Field(default_factory=dict)
    dependency_files_changed: list[str] = Field(default_factory=list)
    environment: dict[str, Any] | None = None
    untestable: str | None = None

    @property
    def succeeded(self) -> bool:
        """Whether the patch passes its tests.

        Always: the run finished (not timed out, an exit code) and at least one test passed.
        Without a baseline: besides, exit code 0 and no failed or errored test at all.
        With a baseline, pre-existing failures do not block; instead: no test that passed on the base fails
        now (`broken` empty), every test the base did not have passes (`new_failing` empty), and there are
        no more unattributed failures than on the base (a crash cannot hide behind an old failure). A
        failing test the base also failed (`still_failing`) does not block; a removed test does not block
        either (deleting tests is the reviewer's concern).
        """
        if self.untestable or self.timed_out or self.exit_code is None or self.passed == 0:
            return False
        if self.baseline is None:
            return self.exit_code == 0 and self.failed == 0 and self.errored == 0
        return (
            not self.classification.get("broken")
            and not self.classification.get("new_failing")
            and self.unattributed_failures <= int(self.baseline.get("unattributed_failures", 0))
        )

    def summary(self) -> dict[str, Any]:
        return {
            "succeeded": self.succeeded,
            "passed": self.passed,
            "failed": self.failed,
            "errored": self.errored,
            "skipped": self.skipped,
            "timed_out": self.timed_out,
            "exit_code": self.exit_code,
            "duration_seconds": round(self.duration_seconds, 3),
            "command": self.command,
            "sandbox": self.sandbox,
        }


class Severity(StrEnum):
    critical = "critical"
    high = "high"
    medium = "medium"
    low = "low"
    info = "info"


class FindingCategory(StrEnum):
    security = "security"
    secrets = "secrets"
    policy = "policy"
    architecture = "architecture"
    tests = "tests"
    quality = "quality"


class Finding(BaseModel):
    rule_id: str
    category: FindingCategory
    severity: Severity
    message: str
    file: str | None = None
    line: int | None = None


class Decision(StrEnum):
    approve = "approve"
    reject = "reject"
    needs_human = "needs_human"


class ReviewResult(BaseModel):
    decision: Decision
    risk_score: int = Field(ge=0, le=100)
    reasons: list[str] = Field(default_factory=list)
    findings: list[Finding] = Field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "decision": self.decision.value,
            "risk_score": self.risk_score,
            "reasons": self.reasons,
            "findings": len(self.findings),
        }
