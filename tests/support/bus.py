"""The `Bus` protocol in memory, for unit tests of the services' step handlers.

It keeps what the NATS adapter decides about a handler's outcome (ack, retry, dead-letter) and nothing of
its timing: `deliver` runs the consumer of one message and says what the real bus would do with it. The
real-NATS behaviour (redelivery, back-off, de-duplication, heartbeats) is tested against nats-server.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from service_feature.bus.base import Delivery, Gate, Handler, Listener, RequestHandler
from service_feature.errors import PoisonMessage
from service_feature.events import Envelope, decode

Outcome = Literal["acked", "retried", "dead-lettered"]


@dataclass
class InMemoryBus:
    published: list[tuple[str, Envelope]] = field(default_factory=list)
    dead_letters: list[tuple[Envelope, str]] = field(default_factory=list)
    consumers: dict[str, Handler] = field(default_factory=dict)
    servers: dict[str, RequestHandler] = field(default_factory=dict)
    listeners: dict[str, list[Listener]] = field(default_factory=dict)
    control: dict[str, bytes] = field(default_factory=dict)

    async def publish(self, subject: str, envelope: Envelope) -> None:
        # Through bytes, as on the wire: what does not survive encoding fails here as it would there.
        self.published.append((subject, decode(envelope.to_bytes())))

    async def consume(
        self, subject: str, durable: str, handler: Handler, *, concurrency: int = 1, gate: Gate | None = None
    ) -> None:
        self.consumers[subject] = handler

    async def request(self, subject: str, data: bytes, timeout: float) -> bytes:
        return await self.servers[subject](data)

    async def serve(self, subject: str, group: str, handler: RequestHandler) -> None:
        self.servers[subject] = handler

    async def listen(self, subject: str, listener: Listener) -> None:
        self.listeners.setdefault(subject, []).append(listener)

    async def control_get(self, key: str) -> bytes | None:
        return self.control.get(key)

    async def control_put(self, key: str, value: bytes) -> None:
        self.control[key] = value

    async def ready(self) -> bool:
        return True

    async def close(self) -> None:
        """Nothing to release."""

    async def deliver(self, subject: str, envelope: Envelope, attempt: int = 1) -> Outcome:
        """Run the consumer of `subject` on `envelope` once; what the NATS adapter would do next."""
        handler = self.consumers[subject]
        try:
            await handler(Delivery(envelope=decode(envelope.to_bytes()), subject=subject, attempt=attempt))
        except PoisonMessage as poison:
            self.dead_letters.append((envelope, str(poison)))
            return "dead-lettered"
        except Exception:
            return "retried"
        return "acked"

    def taken(self, subject: str) -> list[Envelope]:
        """The messages published on `subject` so far, removed from the record."""
        kept = [(s, e) for s, e in self.published if s != subject]
        taken = [e for s, e in self.published if s == subject]
        self.published = kept
        return taken
