"""`service-feature watch` against a real stream: it shows status events as they are published."""

import asyncio
import io

from rich.console import Console

from service_feature.bus.embedded import EmbeddedNatsServer
from service_feature.bus.nats import NatsBus
from service_feature.events import Envelope, Subjects
from service_feature.watch import embedded_nats_url, watch


async def test_watch_prints_status_changes(nats_server: EmbeddedNatsServer) -> None:
    bus = await NatsBus.connect(nats_server.url, name="test")
    await bus.publish(
        Subjects.status("old"),
        Envelope(type="status.changed", execution_id="old", payload={"status": "queued"}),
    )
    output = io.StringIO()
    watcher = asyncio.create_task(watch(nats_server.url, Console(file=output, width=200), replay=True))
    await asyncio.sleep(0.5)
    await bus.publish(
        Subjects.status("f1"),
        Envelope(
            type="status.changed",
            execution_id="f1",
            payload={"status": "failed", "from": "testing", "reason": "boom"},
        ),
    )
    async with asyncio.timeout(10):
        while "boom" not in output.getvalue():
            await asyncio.sleep(0.05)
    watcher.cancel()
    await asyncio.gather(watcher, return_exceptions=True)
    text = output.getvalue()
    assert "old ? → queued" in text
    assert "f1 testing → failed — boom" in text
    assert embedded_nats_url(nats_server.store_dir.parent) == nats_server.url
    await bus.close()
