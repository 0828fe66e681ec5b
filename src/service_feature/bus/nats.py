"""The NATS JetStream adapter behind `Bus`.

Layout (see docs/architecture.md):
- stream FEATURES, WorkQueue retention, one subject per hop, each read by one filtered durable pull
  consumer that every replica of the service shares (a WorkQueue stream allows one consumer per subject);
- stream STATUS, limits retention, `status.feature.<id>`: the live status feed for watchers;
- stream DEADLETTER, limits retention, `deadletter.feature`: messages that could not be handled, with the
  reason in the `Sf-Dead-Letter-Reason` header.

The consumer's own `max_deliver` is unlimited on purpose: the server does not remove a message from a
WorkQueue stream when deliveries run out, so the adapter counts deliveries itself and dead-letters the
message (publishing the copy before `term()`, since a termed message cannot be read back).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import nats
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, KeyValueConfig, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError, BucketNotFoundError, KeyNotFoundError
from nats.js.kv import KeyValue

from service_feature.bus.base import Delivery, Gate, Handler, Listener, RequestHandler
from service_feature.errors import PoisonMessage, StepError, TransientError
from service_feature.events import Envelope, Subjects, decode
from service_feature.metrics import DEAD_LETTERS, QUEUE_PENDING
from service_feature.telemetry import current_trace_id, span_from

log = structlog.get_logger(__name__)

WORK_STREAM = "FEATURES"
STATUS_STREAM = "STATUS"
DEAD_LETTER_STREAM = "DEADLETTER"
CONTROL_BUCKET = "SF_CONTROL"
REASON_HEADER = "Sf-Dead-Letter-Reason"
SUBJECT_HEADER = "Sf-Original-Subject"
_FETCH_WAIT_SECONDS = 1.0
_LAG_POLL_SECONDS = 5.0

DeadLetterHook = Callable[[Envelope, str], Awaitable[None]]


class NatsBus:
    def __init__(
        self,
        client: Client,
        *,
        ack_wait_seconds: float = 30.0,
        max_deliver: int = 5,
        on_dead_letter: DeadLetterHook | None = None,
    ) -> None:
        self._nc = client
        self._js: JetStreamContext = client.jetstream()
        self._control: KeyValue
        self._ack_wait = ack_wait_seconds
        self._max_deliver = max_deliver
        self._on_dead_letter = on_dead_letter
        self._tasks: set[asyncio.Task[None]] = set()
        self._inflight: set[asyncio.Task[None]] = set()
        self._subscriptions: list[JetStreamContext.PullSubscription] = []
        self._core_subscriptions: list[Subscription] = []
        self._stopping = asyncio.Event()

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        name: str,
        ack_wait_seconds: float = 30.0,
        max_deliver: int = 5,
        on_dead_letter: DeadLetterHook | None = None,
    ) -> NatsBus:
        client = await nats.connect(
            url,
            name=name,
            max_reconnect_attempts=-1,  # services keep trying; the client's default gives up after ~2 min
            reconnect_time_wait=0.5,
            connect_timeout=5,
        )
        bus = cls(
            client, ack_wait_seconds=ack_wait_seconds, max_deliver=max_deliver, on_dead_letter=on_dead_letter
        )
        await bus.ensure_streams()
        return bus

    async def ensure_streams(self) -> None:
        streams = (
            StreamConfig(
                name=WORK_STREAM,
                subjects=list(Subjects.WORK),
                retention=RetentionPolicy.WORK_QUEUE,
                storage=StorageType.FILE,
                duplicate_window=120.0,
            ),
            StreamConfig(
                name=STATUS_STREAM,
                subjects=[f"{Subjects.STATUS_PREFIX}.>"],
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                max_age=7 * 24 * 3600.0,
                duplicate_window=120.0,
            ),
            StreamConfig(
                name=DEAD_LETTER_STREAM,
                subjects=[Subjects.DEAD_LETTER],
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                duplicate_window=120.0,
            ),
        )
        for config in streams:
            try:
                await self._js.add_stream(config)
            except BadRequestError:
                await self._js.update_stream(config)  # exists with another config: bring it up to date
        try:
            self._control = await self._js.key_value(CONTROL_BUCKET)
        except BucketNotFoundError:
            self._control = await self._js.create_key_value(KeyValueConfig(bucket=CONTROL_BUCKET, history=16))

    async def control_get(self, key: str) -> bytes | None:
        """A control value (the kill switch) from the replicated key-value bucket; None when unset."""
        try:
            entry = await self._control.get(key)
        except KeyNotFoundError:
            return None
        return entry.value

    async def control_put(self, key: str, value: bytes) -> None:
        await self._control.put(key, value)

    async def publish(self, subject: str, envelope: Envelope) -> None:
        headers = {**envelope.trace, "Nats-Msg-Id": f"{subject}:{envelope.event_id}"}
        await self._js.publish(subject, envelope.to_bytes(), headers=headers)

    async def consume(
        self, subject: str, durable: str, handler: Handler, *, concurrency: int = 1, gate: Gate | None = None
    ) -> None:
        if gate is not None:
            handler = _gated(handler, gate)
        config = ConsumerConfig(
            durable_name=durable,
            filter_subject=subject,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self._ack_wait,
            max_deliver=-1,
        )
        subscription = await self._js.pull_subscribe(
            subject, durable=durable, stream=WORK_STREAM, config=config
        )
        self._subscriptions.append(subscription)
        self._spawn(self._pull_loop(subscription, handler, concurrency))
        self._spawn(self._watch_lag(durable))

    async def request(self, subject: str, data: bytes, timeout: float) -> bytes:
        reply = await self._nc.request(subject, data, timeout=timeout)
        return bytes(reply.data)

    async def serve(self, subject: str, group: str, handler: RequestHandler) -> None:
        async def answer(msg: Msg) -> None:
            # Callbacks of one subscription run one after another: answer in a task so requests overlap.
            async def respond() -> None:
                await msg.respond(await handler(msg.data))

            self._spawn(respond())

        self._core_subscriptions.append(await self._nc.subscribe(subject, queue=group, cb=answer))

    async def listen(self, subject: str, listener: Listener) -> None:
        async def receive(msg: Msg) -> None:
            self._spawn(listener(msg.data))

        self._core_subscriptions.append(await self._nc.subscribe(subject, cb=receive))

    async def ready(self) -> bool:
        if not self._nc.is_connected:
            return False
        try:
            await self._js.account_info()
        except Exception:
            return False
        return True

    async def stop_consuming(self, grace_seconds: float = 25.0) -> None:
        """Stop fetching; give in-flight handlers `grace_seconds` to finish, hand the rest back (nak) so
        another replica takes them at once; then unsubscribe, so the connection drain does not hang."""
        self._stopping.set()
        if self._inflight:
            log.info("bus.draining", in_flight=sorted(task.get_name() for task in self._inflight))
            _, unfinished = await asyncio.wait(set(self._inflight), timeout=grace_seconds)
            if unfinished:
                log.warning(
                    "bus.drain_grace_expired",
                    handed_back=sorted(task.get_name() for task in unfinished),
                    grace_seconds=grace_seconds,
                )
            for task in unfinished:
                task.cancel()
            if unfinished:
                await asyncio.wait(unfinished, timeout=5)
        for subscription in self._subscriptions:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
        for core in self._core_subscriptions:
            with contextlib.suppress(Exception):
                await core.unsubscribe()
        self._subscriptions.clear()
        self._core_subscriptions.clear()

    async def close(self) -> None:
        await self.stop_consuming()
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await self._nc.drain()

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_failure)

    async def _pull_loop(
        self, subscription: JetStreamContext.PullSubscription, handler: Handler, concurrency: int
    ) -> None:
        slots = asyncio.Semaphore(concurrency)
        while not self._stopping.is_set():
            await slots.acquire()
            if self._stopping.is_set():
                slots.release()
                return
            try:
                messages = await subscription.fetch(1, timeout=_FETCH_WAIT_SECONDS)
            except TimeoutError:
                slots.release()
                continue
            except Exception as error:
                slots.release()
                log.debug("bus.fetch_failed", error=str(error))
                await asyncio.sleep(0.5)
                continue
            for message in messages:
                name = f"{message.subject}#{message.metadata.sequence.stream}"  # for the drain's logs
                task = asyncio.create_task(self._handle_and_release(message, handler, slots), name=name)
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)

    async def _watch_lag(self, durable: str) -> None:
        """Publish the consumer's backlog (pending + in flight: what KEDA scales on) as a gauge."""
        gauge = QUEUE_PENDING.labels(durable)
        while not self._stopping.is_set():
            with contextlib.suppress(Exception):
                info = await self._js.consumer_info(WORK_STREAM, durable)
                gauge.set((info.num_pending or 0) + (info.num_ack_pending or 0))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=_LAG_POLL_SECONDS)

    async def _handle_and_release(self, message: Msg, handler: Handler, slots: asyncio.Semaphore) -> None:
        try:
            await self._handle(message, handler)
        finally:
            slots.release()

    async def _handle(self, message: Msg, handler: Handler) -> None:
        attempt = message.metadata.num_delivered
        try:
            envelope = decode(message.data)
        except PoisonMessage as poison:
            await self._dead_letter(message, str(poison), None)
            return
        if attempt > self._max_deliver:
            await self._dead_letter(message, f"gave up after {attempt - 1} deliveries", envelope)
            return
        heartbeat = asyncio.create_task(self._heartbeat(message))
        with (
            span_from(envelope.trace, f"handle {message.subject}", execution_id=envelope.execution_id),
            structlog.contextvars.bound_contextvars(
                execution_id=envelope.execution_id, trace_id=current_trace_id()
            ),
        ):
            try:
                await handler(Delivery(envelope=envelope, subject=message.subject, attempt=attempt))
            except PoisonMessage as error:
                await self._dead_letter(message, str(error), envelope)
            except asyncio.CancelledError:
                # Shutting down mid-step: hand the message back now rather than after ack_wait.
                with contextlib.suppress(Exception):
                    await asyncio.shield(message.nak())
                raise
            except Exception as error:
                log.warning(
                    "bus.handler_failed",
                    subject=message.subject,
                    attempt=attempt,
                    error=repr(error),
                    exc_info=True,
                )
                if attempt >= self._max_deliver:
                    await self._dead_letter(message, _gave_up(attempt, error), envelope)
                else:
                    await message.nak(delay=redelivery_delay(attempt, error))
            else:
                await message.ack()
            finally:
                heartbeat.cancel()

    async def _heartbeat(self, message: Msg) -> None:
        """Tell the server the message is still being worked on, so a long step is not redelivered."""
        while True:
            await asyncio.sleep(self._ack_wait / 3)
            with contextlib.suppress(Exception):
                await message.in_progress()

    async def _dead_letter(self, message: Msg, reason: str, envelope: Envelope | None) -> None:
        log.error("bus.dead_letter", subject=message.subject, reason=reason)
        DEAD_LETTERS.labels(message.subject).inc()
        sequence = message.metadata.sequence.stream
        await self._js.publish(
            Subjects.DEAD_LETTER,
            message.data,
            headers={
                REASON_HEADER: reason[:4000],
                SUBJECT_HEADER: message.subject,
                "Nats-Msg-Id": f"dead-letter:{WORK_STREAM}:{sequence}",
            },
        )
        await message.term()
        if envelope is not None and self._on_dead_letter is not None:
            await self._on_dead_letter(envelope, reason)


def _gave_up(attempt: int, error: Exception) -> str:
    # A step's own error already reads as a sentence for the user; anything else is an internal error.
    last = str(error) if isinstance(error, StepError) else f"internal error: {error!r}"
    return f"gave up after {attempt} tries, the last: {last}"


def _log_failure(task: asyncio.Task[None]) -> None:
    """A background task (a request's answer, a listener, a pull loop) that died says why in the log."""
    if not task.cancelled() and (error := task.exception()) is not None:
        log.error("bus.task_failed", task=task.get_name(), error=repr(error), exc_info=error)


def _gated(handler: Handler, gate: Gate) -> Handler:
    async def gated(delivery: Delivery) -> None:
        await gate()
        await handler(delivery)

    return gated


_LONGEST_ASKED_DELAY = 900.0  # a remote's Retry-After is honoured up to this, per redelivery


def redelivery_delay(attempt: int, error: Exception) -> float:
    """Back-off before a failed step's message comes again: exponential up to 30 s, or as long as the remote
    asked (a forge's rate limit, up to 15 minutes)."""
    backoff = min(2.0**attempt, 30.0)
    asked = error.retry_after if isinstance(error, TransientError) else None
    return min(max(backoff, asked or 0.0), _LONGEST_ASKED_DELAY)
