"""What the services need from a message bus, and nothing more.

Work travels as durable, acknowledged messages: a handler that returns normally has committed its effect
(the message is acked); one that raises is retried later (nak with back-off); one that raises
`PoisonMessage`, or keeps failing past the delivery limit, is moved to the dead-letter subject with the
reason. Handlers must be idempotent: a message can arrive twice (crash after commit, before ack).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from service_feature.events import Envelope


@dataclass(frozen=True)
class Delivery:
    envelope: Envelope
    subject: str
    attempt: int  # 1 on first delivery


Handler = Callable[[Delivery], Awaitable[None]]
RequestHandler = Callable[[bytes], Awaitable[bytes]]
Listener = Callable[[bytes], Awaitable[None]]
Gate = Callable[[], Awaitable[None]]


class Bus(Protocol):
    async def publish(self, subject: str, envelope: Envelope) -> None:
        """Durably publish; the envelope's event id de-duplicates a repeated publish."""

    async def consume(
        self, subject: str, durable: str, handler: Handler, *, concurrency: int = 1, gate: Gate | None = None
    ) -> None:
        """Start a consumer on `subject`, shared by every replica using the same `durable` name. `gate` is
        awaited before each handler runs (the kill switch: the message is held, heartbeated, not failed)."""

    async def request(self, subject: str, data: bytes, timeout: float) -> bytes:
        """Ask a service and wait for its answer (not durable: for interactive calls only)."""

    async def serve(self, subject: str, group: str, handler: RequestHandler) -> None:
        """Answer requests on `subject`, load-balanced across the replicas in `group`."""

    async def listen(self, subject: str, listener: Listener) -> None:
        """Receive every message published on `subject` from now on (not durable: for notifications)."""

    async def control_get(self, key: str) -> bytes | None:
        """Read a replicated control value (None when unset); raises when the bus cannot answer."""

    async def control_put(self, key: str, value: bytes) -> None: ...

    async def ready(self) -> bool: ...

    async def close(self) -> None: ...
