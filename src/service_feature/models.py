"""Data models shared by every service: the feature request and the results that travel with it."""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

ExecutionId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


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
    title: Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
    description: Annotated[str, StringConstraints(max_length=20_000)] = ""
    requirements: list[Annotated[str, StringConstraints(min_length=1, max_length=2_000)]] = Field(
        default_factory=list, max_length=100
    )
    target_files: list[Annotated[str, StringConstraints(min_length=1, max_length=500)]] = Field(
        default_factory=list, max_length=200
    )
    language: Language


class FeatureRequest(StrictModel):
    """The seed's example request. `execution_id` is generated when absent."""

    execution_id: ExecutionId = Field(default_factory=new_execution_id)
    repository_url: Annotated[str, StringConstraints(min_length=1, max_length=2_000, strip_whitespace=True)]
    branch: Annotated[str, StringConstraints(min_length=1, max_length=255, strip_whitespace=True)] = "main"
    specification: Specification
    test_command: Annotated[str, StringConstraints(min_length=1, max_length=2_000)] | None = None


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
    """What the executor reports for one test run."""

    __test__: ClassVar[bool] = False

    command: str
    sandbox: str
    exit_code: int | None
    passed: int = 0
    failed: int = 0
    errored: int = 0
    skipped: int = 0
    timed_out: bool = False
    duration_seconds: float = 0.0
    output_tail: str = ""
    failures: list[TestCase] = Field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        return (
            not self.timed_out
            and self.exit_code == 0
            and self.failed == 0
            and self.errored == 0
            and self.passed > 0
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
