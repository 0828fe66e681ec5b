"""The kill switch's state, propagation and fail-closed reading, on a real bus and database."""

import asyncio
import shutil
import time
from pathlib import Path

import httpx

from service_feature.auth import Role, issue_key
from service_feature.bus.embedded import EmbeddedNatsServer
from service_feature.bus.nats import NatsBus
from service_feature.config import GatewaySettings
from service_feature.gateway.routes import feature_router
from service_feature.http import create_app
from service_feature.killswitch import KillSwitch, audit_log, change_switch, recorded_state
from service_feature.store import Database, upgrade
from service_feature.store.outbox import OutboxRelay


async def _database(tmp_path: Path) -> Database:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'ks.db'}")
    await upgrade(database.engine)
    return database


async def test_unknown_state_reads_as_engaged_until_the_first_read(
    tmp_path: Path, nats_server: EmbeddedNatsServer
) -> None:
    database = await _database(tmp_path)
    bus = await NatsBus.connect(nats_server.url, name="t")
    switch = KillSwitch(database, bus)
    assert switch.engaged
    assert "fail-closed" in switch.state.reason
    await switch.start()
    assert not switch.engaged
    assert (await recorded_state(database)).reason == "never engaged"
    await switch.stop()
    await bus.close()
    await database.close()


async def test_a_change_reaches_every_replica_within_a_second(
    tmp_path: Path, nats_server: EmbeddedNatsServer
) -> None:
    database = await _database(tmp_path)
    buses = [await NatsBus.connect(nats_server.url, name=f"r{n}") for n in range(3)]
    replicas = [KillSwitch(database, bus) for bus in buses]
    stopped: list[int] = []
    for number, replica in enumerate(replicas):
        replica.on_engage(lambda n=number: stopped.append(n))
        await replica.start()
    started = time.monotonic()
    await change_switch(database, buses[0], engaged=True, reason="incident", actor="alice")
    async with asyncio.timeout(1.0):
        while not all(replica.engaged for replica in replicas):
            await asyncio.sleep(0.02)
    assert time.monotonic() - started < 1.0
    assert sorted(stopped) == [0, 1, 2]
    assert replicas[2].state.actor == "alice"

    waiter = asyncio.create_task(replicas[1].wait_released())
    await asyncio.sleep(0.3)
    assert not waiter.done()
    await change_switch(database, buses[0], engaged=False, reason="fixed", actor="bob")
    await asyncio.wait_for(waiter, 1.0)
    assert [(s.engaged, s.actor) for s in await audit_log(database)] == [(False, "bob"), (True, "alice")]
    for replica in replicas:
        await replica.stop()
    for bus in buses:
        await bus.close()
    await database.close()


async def test_a_replica_that_loses_the_bus_acts_as_engaged(
    tmp_path: Path, nats_server: EmbeddedNatsServer
) -> None:
    database = await _database(tmp_path)
    bus = await NatsBus.connect(nats_server.url, name="t")
    switch = KillSwitch(database, bus)
    await switch.start()
    assert not switch.engaged
    await nats_server.stop()
    async with asyncio.timeout(5):
        while not switch.engaged:
            await asyncio.sleep(0.1)
    await switch.stop()
    await database.close()


async def test_a_new_deployment_mirrors_the_recorded_state(
    tmp_path: Path, nats_server: EmbeddedNatsServer
) -> None:
    database = await _database(tmp_path)
    bus = await NatsBus.connect(nats_server.url, name="t")
    await change_switch(database, bus, engaged=True, reason="left on", actor="ops")
    await nats_server.stop()  # the bus loses its key-value state: a fresh NATS
    for item in nats_server.store_dir.iterdir():
        if item.is_dir():
            shutil.rmtree(item)
    await nats_server.start()
    fresh = await NatsBus.connect(nats_server.url, name="t2")
    switch = KillSwitch(database, fresh)
    await switch.start()
    assert switch.engaged
    assert switch.state.reason == "left on"
    await switch.stop()
    await fresh.close()
    await database.close()


async def test_the_gateway_serves_the_switch_to_admins_and_every_replica_follows(
    tmp_path: Path, nats_server: EmbeddedNatsServer
) -> None:
    """The gateway alone (no reviewer in its process) engages and releases the switch; a replica on
    another bus connection follows; readers read it; only admins change it."""
    database = await _database(tmp_path)
    bus = await NatsBus.connect(nats_server.url, name="gateway")
    other_bus = await NatsBus.connect(nats_server.url, name="worker")
    switch, replica = KillSwitch(database, bus), KillSwitch(database, other_bus)
    await switch.start()
    await replica.start()
    router = feature_router(GatewaySettings(), database, OutboxRelay(database, bus), bus=bus, switch=switch)
    app = create_app("gateway", {}, [router])
    keys = {role: (await issue_key(database, name=role.value, role=role)).secret for role in Role}

    def client(role: Role) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://gateway",
            headers={"Authorization": f"Bearer {keys[role]}"},
        )

    async with (
        client(Role.admin) as admin,
        client(Role.reader) as reader,
        client(Role.submitter) as submitter,
    ):
        assert (await reader.post("/api/v1/killswitch/engage", json={"reason": "no"})).status_code == 403
        assert (await submitter.get("/api/v1/killswitch/status")).status_code == 403
        invalid = await admin.post(
            "/api/v1/killswitch/engage",
            content=b'{"reason": "\\ud800"}',
            headers={"content-type": "application/json"},
        )
        assert invalid.status_code == 422
        engaged = await admin.post("/api/v1/killswitch/engage", json={"reason": "incident"})
        assert engaged.status_code == 200
        assert (await reader.get("/api/v1/killswitch/status")).json()["engaged"] is True
        async with asyncio.timeout(10):
            while not replica.engaged:
                await asyncio.sleep(0.05)
        assert replica.state.reason == "incident"
        assert (await admin.post("/api/v1/killswitch/release", json={"reason": "fixed"})).status_code == 200
        await asyncio.wait_for(replica.wait_released(), 10)
        audit = (await reader.get("/api/v1/killswitch/audit")).json()
        assert [(entry["engaged"], entry["actor"]) for entry in audit] == [(False, "admin"), (True, "admin")]
    for each in (switch, replica):
        await each.stop()
    for connection in (bus, other_bus):
        await connection.close()
    await database.close()
