"""The kill switch's state, propagation and fail-closed reading, on a real bus and database."""

import asyncio
import shutil
import time
from pathlib import Path

from service_feature.bus.embedded import EmbeddedNatsServer
from service_feature.bus.nats import NatsBus
from service_feature.killswitch import KillSwitch, audit_log, change_switch, recorded_state
from service_feature.store import Database, upgrade


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
