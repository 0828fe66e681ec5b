"""The NATS JetStream adapter against a real, private nats-server."""

import asyncio
import json

import nats
import structlog.testing

from service_feature.bus.base import Delivery
from service_feature.bus.embedded import EmbeddedNatsServer
from service_feature.bus.nats import DEAD_LETTER_STREAM, REASON_HEADER, NatsBus
from service_feature.errors import PoisonMessage
from service_feature.events import Envelope, Subjects, TestsRequested

SUBJECT = Subjects.TESTS_REQUESTED


async def _bus(server: EmbeddedNatsServer, **options: float) -> NatsBus:
    return await NatsBus.connect(server.url, name="test", **options)  # type: ignore[arg-type]


async def _dead_letters(server: EmbeddedNatsServer, count: int) -> list[tuple[bytes, str]]:
    client = await nats.connect(server.url)
    js = client.jetstream()
    found = []
    async with asyncio.timeout(10):
        while len(found) < count:
            try:
                message = await js.get_msg(DEAD_LETTER_STREAM, seq=len(found) + 1)
            except nats.js.errors.NotFoundError:
                await asyncio.sleep(0.05)
                continue
            found.append((message.data or b"", (message.headers or {}).get(REASON_HEADER, "")))
    await client.close()
    return found


async def test_published_events_are_consumed_and_acked_once(nats_server: EmbeddedNatsServer) -> None:
    bus = await _bus(nats_server)
    received: list[Delivery] = []
    done = asyncio.Event()

    async def handler(delivery: Delivery) -> None:
        received.append(delivery)
        if len(received) == 3:
            done.set()

    await bus.consume(SUBJECT, "test", handler)
    for number in range(3):
        await bus.publish(SUBJECT, Envelope.of(f"f{number}", TestsRequested(attempt=number + 1)))
    await asyncio.wait_for(done.wait(), 10)
    await asyncio.sleep(0.3)
    assert [d.envelope.payload for d in received] == [TestsRequested(attempt=n) for n in (1, 2, 3)]
    assert all(d.attempt == 1 for d in received)
    info = await bus._js.consumer_info("FEATURES", "test")
    assert info.num_ack_pending == 0
    assert info.num_pending == 0
    await bus.close()


async def test_a_repeated_event_id_is_dropped_by_the_server(nats_server: EmbeddedNatsServer) -> None:
    bus = await _bus(nats_server)
    envelope = Envelope.of("same", TestsRequested(attempt=1))
    for _ in range(3):
        await bus.publish(SUBJECT, envelope)
    info = await bus._js.stream_info("FEATURES")
    assert info.state.messages == 1
    await bus.close()


async def test_a_failing_handler_is_retried_then_succeeds(nats_server: EmbeddedNatsServer) -> None:
    bus = await _bus(nats_server)
    attempts: list[int] = []
    done = asyncio.Event()

    async def flaky(delivery: Delivery) -> None:
        attempts.append(delivery.attempt)
        if delivery.attempt < 2:
            raise RuntimeError("transient")
        done.set()

    await bus.consume(SUBJECT, "test", flaky)
    await bus.publish(SUBJECT, Envelope.of("x", TestsRequested(attempt=1)))
    await asyncio.wait_for(done.wait(), 15)
    assert attempts == [1, 2]
    await bus.close()


async def test_poison_and_permanent_failures_go_to_the_dead_letter_subject(
    nats_server: EmbeddedNatsServer,
) -> None:
    hooked: list[tuple[str, str]] = []

    async def hook(envelope: Envelope, reason: str) -> None:
        hooked.append((envelope.execution_id, reason))

    bus = await NatsBus.connect(nats_server.url, name="test", on_dead_letter=hook)
    handled: list[str] = []

    async def handler(delivery: Delivery) -> None:
        if delivery.envelope.execution_id == "bad":
            raise PoisonMessage("cannot ever work")
        handled.append(delivery.envelope.execution_id)

    await bus.consume(SUBJECT, "test", handler)
    await bus._js.publish(SUBJECT, b"{not json")
    await bus.publish(SUBJECT, Envelope.of("bad", TestsRequested(attempt=1)))
    await bus.publish(SUBJECT, Envelope.of("good", TestsRequested(attempt=1)))
    letters = await _dead_letters(nats_server, 2)
    assert letters[0][0] == b"{not json"
    assert "invalid event" in letters[0][1]
    assert letters[1][1] == "cannot ever work"
    assert hooked == [("bad", "cannot ever work")]
    async with asyncio.timeout(5):
        while handled != ["good"]:
            await asyncio.sleep(0.05)
    await bus.close()


async def test_a_message_that_keeps_failing_is_dead_lettered_after_max_deliver(
    nats_server: EmbeddedNatsServer,
) -> None:
    bus = await _bus(nats_server, max_deliver=2)
    seen: list[int] = []

    async def broken(delivery: Delivery) -> None:
        seen.append(delivery.attempt)
        raise ValueError("boom")

    await bus.consume(SUBJECT, "test", broken)
    await bus.publish(SUBJECT, Envelope.of("x", TestsRequested(attempt=1)))
    letters = await _dead_letters(nats_server, 1)
    assert seen == [1, 2]
    assert "gave up after 2 tries" in letters[0][1]
    assert "boom" in letters[0][1]
    await bus.close()


async def test_heartbeats_keep_a_long_step_from_being_redelivered(nats_server: EmbeddedNatsServer) -> None:
    bus = await _bus(nats_server, ack_wait_seconds=1.0)
    starts: list[int] = []

    async def slow(delivery: Delivery) -> None:
        starts.append(delivery.attempt)
        await asyncio.sleep(3.0)

    await bus.consume(SUBJECT, "test", slow, concurrency=2)
    await bus.publish(SUBJECT, Envelope.of("x", TestsRequested(attempt=1)))
    await asyncio.sleep(4.0)
    assert starts == [1]
    await bus.close()


async def test_replicas_share_one_durable_and_a_crashed_replicas_message_is_redelivered(
    nats_server: EmbeddedNatsServer,
) -> None:
    crashed = await _bus(nats_server, ack_wait_seconds=1.0)
    survivor = await _bus(nats_server, ack_wait_seconds=1.0)
    taken = asyncio.Event()
    completed: list[tuple[str, int]] = []

    async def hang(delivery: Delivery) -> None:
        taken.set()
        await asyncio.Event().wait()

    async def work(delivery: Delivery) -> None:
        completed.append((delivery.envelope.execution_id, delivery.attempt))

    await crashed.consume(SUBJECT, "shared", hang)
    await crashed.publish(SUBJECT, Envelope.of("crash-me", TestsRequested(attempt=1)))
    await asyncio.wait_for(taken.wait(), 10)
    await crashed._nc.close()  # the replica dies holding the message, without acking it
    for task in list(crashed._tasks):
        task.cancel()
    await survivor.consume(SUBJECT, "shared", work)
    for number in range(5):
        await survivor.publish(SUBJECT, Envelope.of(f"n{number}", TestsRequested(attempt=1)))
    async with asyncio.timeout(15):
        while len(completed) < 6:
            await asyncio.sleep(0.05)
    await asyncio.sleep(1.5)
    ids = sorted(execution_id for execution_id, _ in completed)
    assert ids == sorted(["crash-me", *(f"n{n}" for n in range(5))])
    assert dict(completed)["crash-me"] == 2
    await survivor.close()


async def test_request_reply_is_served_by_a_queue_group(nats_server: EmbeddedNatsServer) -> None:
    bus = await _bus(nats_server)

    async def answer(data: bytes) -> bytes:
        return json.dumps({"echo": json.loads(data)}).encode()

    await bus.serve("svc.echo", "svc", answer)
    reply = await bus.request("svc.echo", b'{"a": 1}', timeout=5)
    assert json.loads(reply) == {"echo": {"a": 1}}
    assert await bus.ready()
    await bus.close()


async def test_the_embedded_server_keeps_accepted_work_across_a_restart(
    nats_server: EmbeddedNatsServer,
) -> None:
    bus = await _bus(nats_server)
    await bus.publish(SUBJECT, Envelope.of("durable", TestsRequested(attempt=1)))
    await bus.close()
    await nats_server.stop()
    await nats_server.start()
    bus = await _bus(nats_server)
    got = asyncio.Event()

    async def handler(delivery: Delivery) -> None:
        assert delivery.envelope.execution_id == "durable"
        got.set()

    await bus.consume(SUBJECT, "test", handler)
    await asyncio.wait_for(got.wait(), 10)
    await bus.close()


async def test_a_failing_background_task_says_why_in_the_log(nats_server: EmbeddedNatsServer) -> None:
    bus = await _bus(nats_server)
    heard = asyncio.Event()

    async def listener(data: bytes) -> None:
        heard.set()
        raise RuntimeError("listener broke")

    with structlog.testing.capture_logs() as logs:
        await bus.listen("status.feature.x", listener)
        await bus._nc.publish("status.feature.x", b"{}")
        await asyncio.wait_for(heard.wait(), 10)
        async with asyncio.timeout(10):
            while not any(entry["event"] == "bus.task_failed" for entry in logs):
                await asyncio.sleep(0.05)
    failure = next(entry for entry in logs if entry["event"] == "bus.task_failed")
    assert "listener broke" in failure["error"]
    await bus.close()
