"""Following a feature from the command line: each status change as it happens, then the outcome.
Requests carry the caller's API key (see `api_key_headers`)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.syntax import Syntax
from rich.table import Table

FINAL_STATUSES = frozenset({"delivered", "failed", "rejected", "cancelled", "awaiting_approval"})


def api_key_headers(explicit: str | None, key_file: Path) -> dict[str, str]:
    """`Authorization` for a local client: `--api-key`, else SF_API_KEY, else the key file the embedded
    `up` wrote (SF_DATA_DIR/admin.key); no header when there is none (the gateway will say 401)."""
    key = explicit or os.environ.get("SF_API_KEY")
    if not key and key_file.is_file():
        key = key_file.read_text().strip()
    return {"Authorization": f"Bearer {key}"} if key else {}


async def follow_feature(
    url: str, execution_id: str, console: Console, headers: dict[str, str], *, timeout: float = 900.0
) -> dict[str, Any]:
    """Print the feature's events as they are appended; return the feature once it stops moving."""
    seen = 0
    async with httpx.AsyncClient(base_url=url, timeout=30, headers=headers) as client:
        with console.status(f"following {execution_id}…") as spinner:
            async with asyncio.timeout(timeout):
                while True:
                    events = (await client.get(f"/api/v1/features/{execution_id}/events")).json()["events"]
                    for event in events[seen:]:
                        console.print(_event_line(event))
                        spinner.update(f"[bold]{event['status']}[/] …")
                    seen = len(events)
                    feature: dict[str, Any] = (await client.get(f"/api/v1/features/{execution_id}")).json()
                    if (
                        feature["status"] in FINAL_STATUSES
                        and seen
                        and events[-1]["status"] == feature["status"]
                    ):
                        return feature
                    await asyncio.sleep(0.2)


def _event_line(event: dict[str, Any]) -> str:
    detail = event.get("detail") or {}
    extra = ""
    if "reason" in detail:
        extra = f" — {detail['reason']}"
    elif event["type"] == "tests.completed":
        extra = f" — {detail.get('passed', 0)} passed, {detail.get('failed', 0)} failed"
    elif event["type"] == "environment.completed":
        extra = f" — base: {detail.get('passed', 0)} passed, {detail.get('failed', 0)} failed"
        extra += " (cannot be tested)" if detail.get("untestable") else ""
    elif "branch" in detail:
        extra = f" — {detail['branch']} @ {str(detail.get('commit', ''))[:12]}"
    time = event["created_at"][11:23]
    return f"[dim]{time}[/] [bold cyan]{event['status']:<18}[/] {event['type']}{extra}"


def describe_preparation(preparation: dict[str, Any]) -> str:
    """One line for the setup and baseline on the base commit (the feature's `preparation`)."""
    setup = f"setup {preparation['setup']} ({preparation.get('setup_seconds', 0):.1f} s)"
    baseline = preparation.get("baseline")
    if baseline:
        counts = (
            f"base: {baseline['passed']} passed, {baseline['failed']} failed, {baseline['errored']} errored"
        )
        setup += f"; {counts}" + (" (cached)" if baseline.get("cached") else "")
    if preparation.get("untestable"):
        setup += f"; cannot be tested: {preparation['untestable']}"
    return setup


def print_outcome(url: str, feature: dict[str, Any], console: Console, headers: dict[str, str]) -> None:
    execution_id = feature["execution_id"]
    patch = httpx.get(f"{url}/api/v1/features/{execution_id}/patch", timeout=30, headers=headers)
    if patch.status_code == 200:
        console.rule("diff")
        console.print(Syntax(patch.text, "diff", word_wrap=True))
    table = Table(show_header=False, box=None)
    table.add_row("status", f"[bold]{feature['status']}[/]")
    if preparation := feature.get("preparation"):
        table.add_row("preparation", describe_preparation(preparation))
    tests = feature.get("test_summary") or {}
    if tests:
        table.add_row(
            "tests",
            f"{tests['passed']} passed, {tests['failed']} failed, {tests['errored']} errored "
            f"({tests['sandbox']}: {tests['command']})",
        )
    review = feature.get("review_summary") or {}
    if review:
        table.add_row(
            "review",
            f"{review['decision']} (risk score {review['risk_score']}): "
            + "; ".join(review.get("reasons", [])),
        )
    if feature.get("delivered_branch"):
        table.add_row("branch", f"{feature['delivered_branch']} @ {feature['delivered_commit']}")
    if feature.get("failure_reason"):
        table.add_row("reason", feature["failure_reason"])
    console.rule("outcome")
    console.print(table)
