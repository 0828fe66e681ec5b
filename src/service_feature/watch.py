"""`service-feature watch`: the live status stream of every feature, from the STATUS stream."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
from nats.js.api import DeliverPolicy
from rich.console import Console

from service_feature.events import Envelope, StatusChanged, Subjects


def embedded_nats_url(data_dir: Path) -> str | None:
    """The private server's URL that a running `up` wrote under its data dir."""
    marker = data_dir / "nats" / "url"
    return marker.read_text().strip() if marker.exists() else None


async def watch(url: str, console: Console, *, replay: bool = False) -> None:
    client = await nats.connect(url, max_reconnect_attempts=-1)
    js = client.jetstream()
    policy = DeliverPolicy.ALL if replay else DeliverPolicy.NEW
    subscription = await js.subscribe(
        f"{Subjects.STATUS_PREFIX}.>", ordered_consumer=True, deliver_policy=policy
    )
    console.print(f"watching {Subjects.STATUS_PREFIX}.> on {url} (Ctrl-C to stop)")
    try:
        async for message in subscription.messages:
            envelope = Envelope.model_validate_json(message.data)
            status = envelope.payload
            if not isinstance(status, StatusChanged):
                continue
            reason = f" — {status.reason}" if status.reason else ""
            moved = f"{status.source or '?'} → [cyan]{status.status}[/]"
            clock = f"{envelope.time:%H:%M:%S.%f}"[:-3]
            console.print(f"[dim]{clock}[/] [bold]{envelope.execution_id}[/] {moved}{reason}")
    except asyncio.CancelledError:
        pass
    finally:
        await client.close()
