"""Following a feature from the command line: each status change as it happens, then the outcome; and
reading the gateway's event stream (`stream_feature_events`). Requests carry the caller's API key (see
`api_key_headers`)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from rich.console import Console
from rich.syntax import Syntax
from rich.table import Table

FINAL_STATUSES = frozenset({"delivered", "failed", "rejected", "cancelled", "awaiting_approval"})
STREAM_READ_TIMEOUT = 60.0


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
                        console.print(event_line(event))
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


def event_line(event: dict[str, Any]) -> str:
    """One event of a feature's log as a line for the terminal (Rich markup)."""
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


_event_line = event_line  # the name it had before it was shared with `service-feature logs`


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


# -- the gateway's event stream (Server-Sent Events) ----------------------------------------------------


@dataclass(frozen=True)
class StreamMessage:
    """One Server-Sent Events message: `event` ("message" when unnamed), `data` (lines joined), `id`."""

    event: str
    data: str
    id: str | None


class StreamRefused(Exception):
    """The gateway answered the stream's request with an error: its status code and detail."""

    def __init__(self, status_code: int, detail: Any) -> None:
        super().__init__(f"{status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail


async def stream_messages(lines: AsyncIterator[str]) -> AsyncIterator[StreamMessage]:
    """The messages of an event stream's lines; comments (heartbeats) and retry fields are skipped."""
    event, data, last_id = "", list[str](), None
    async for line in lines:
        if not line:
            if data:
                yield StreamMessage(event or "message", "\n".join(data), last_id)
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id":
            last_id = value


def detail_of(response: httpx.Response) -> Any:
    """The gateway's `detail`, or the body's text when it is not the gateway's JSON."""
    try:
        body = response.json()
    except ValueError:
        return response.text
    return body.get("detail", body) if isinstance(body, dict) else body


async def stream_feature_events(
    client: httpx.AsyncClient,
    execution_id: str,
    *,
    after: int | None = None,
    reconnects: int = 10,
    reconnect_wait: float = 1.0,
) -> AsyncIterator[dict[str, Any]]:
    """The feature's events from its stream, until the feature ends. A dropped connection is resumed
    after the last event received (`Last-Event-ID`): nothing is missed or repeated. Gives up after
    `reconnects` drops in a row; raises `StreamRefused` when the gateway answers with an error."""
    failures = 0
    path = f"/api/v1/features/{quote(execution_id, safe='')}/stream"
    # A silent connection is a dead one: the gateway sends a heartbeat every 15 s by default.
    timeout = httpx.Timeout(30.0, read=STREAM_READ_TIMEOUT)
    while True:
        headers = {"Last-Event-ID": str(after)} if after is not None else {}
        try:
            async with client.stream("GET", path, headers=headers, timeout=timeout) as response:
                if response.status_code == 204:
                    return  # ended before we asked: nothing more will come
                if response.status_code >= 400:
                    await response.aread()
                    raise StreamRefused(response.status_code, detail_of(response))
                async for message in stream_messages(response.aiter_lines()):
                    if message.event == "end":
                        return
                    if message.event == "status" and message.id is not None:
                        after, failures = int(message.id), 0
                        yield json.loads(message.data)
            # Closed without its end (a gateway shutting down, a proxy's timeout): a drop like any other.
            error: httpx.TransportError = httpx.RemoteProtocolError(
                "the stream closed before the feature ended"
            )
        except httpx.TransportError as dropped:
            error = dropped
        failures += 1
        if failures > reconnects:
            raise error
        await asyncio.sleep(reconnect_wait)
