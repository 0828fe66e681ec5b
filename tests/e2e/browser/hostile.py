"""A feature whose every stored text carries markup: title, diff (a file name too), test names, review
findings and transcript. The dashboard must show all of it as text."""

from __future__ import annotations

from service_feature.models import FeatureRequest
from service_feature.store.database import Database
from service_feature.store.features import create_feature
from service_feature.store.tables import Execution, Patch, Review, TranscriptEntry

SCRIPT = "<script>alert('xss')</script>"
IMAGE = '<img src=x onerror="alert(1)">'
DIFF = f"""diff --git a/{IMAGE}.py b/{IMAGE}.py
new file mode 100644
--- /dev/null
+++ b/{IMAGE}.py
@@ -0,0 +1 @@
+print("{SCRIPT}")
"""


async def add_hostile_feature(
    database: Database, execution_id: str, submitted_by: str | None, status: str = "awaiting_approval"
) -> None:
    request = FeatureRequest.model_validate(
        {
            "execution_id": execution_id,
            "repository_url": "https://example.com/demo.git",
            "specification": {"title": f"Title {IMAGE}", "language": "python"},
        }
    )
    async with database.transaction() as session:
        feature = await create_feature(session, request, announce=False, submitted_by=submitted_by)
        feature.status = status
        feature.attempts = 1
        session.add(Patch(execution_id=execution_id, attempt=1, diff=DIFF, summary=SCRIPT))
        session.add(Execution(execution_id=execution_id, attempt=1, result=_test_run()))
        session.add(
            Review(
                execution_id=execution_id,
                attempt=1,
                decision="needs_human",
                risk_score=40,
                result={
                    "decision": "needs_human",
                    "risk_score": 40,
                    "reasons": [SCRIPT],
                    "findings": [_finding()],
                },
            )
        )
        for kind, content in _transcript():
            session.add(TranscriptEntry(execution_id=execution_id, attempt=1, kind=kind, content=content))


def _test_run() -> dict[str, object]:
    return {
        "command": "pytest",
        "sandbox": "process",
        "exit_code": 1,
        "passed": 3,
        "failed": 1,
        "baseline": {"passed": 2, "failed": 1},
        "failures": [{"name": f"test_{IMAGE}", "outcome": "failed", "message": SCRIPT}],
        "classification": {
            "fixed": ["test_fixed"],
            "broken": [f"test_{IMAGE}"],
            "still_failing": ["test_old"],
            "new_passing": ["test_new"],
            "still_passing": ["test_same"],
        },
    }


def _finding() -> dict[str, object]:
    return {
        "rule_id": "policy.scope",
        "category": "policy",
        "severity": "medium",
        "message": f"edited {SCRIPT}",
        "file": f"{IMAGE}.py",
        "line": 7,
    }


def _transcript() -> list[tuple[str, dict[str, object]]]:
    model = {
        "text": SCRIPT,
        "model": "scripted",
        "tool_calls": [{"id": "1", "name": "write_file", "arguments": {"path": IMAGE}}],
        "usage": {"input_tokens": 120, "output_tokens": 30, "cached_input_tokens": 0},
        "cost_usd": 0.0012,
    }
    tool = {
        "id": "1",
        "name": "write_file",
        "arguments": {"path": IMAGE},
        "result": SCRIPT,
        "is_error": False,
    }
    return [("model", model), ("tool", tool)]
