"""API keys in the database: the command line, the embedded platform's first admin key, what is stored."""

import asyncio
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from service_feature.auth import Role, bootstrap_admin_key, hash_key
from service_feature.cli import app
from service_feature.store.apikeys import list_keys
from service_feature.store.database import Database, upgrade


@pytest.fixture
async def database(tmp_path: Path) -> Database:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}")
    await upgrade(database.engine)
    return database


async def test_the_first_start_generates_an_admin_key_once(
    database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SF_ADMIN_KEY", raising=False)
    key_file = tmp_path / "data" / "admin.key"
    await bootstrap_admin_key(database, key_file, generate=True)
    key = key_file.read_text().strip()
    assert key.startswith("sf_")
    assert len(key) >= 40
    assert key in capsys.readouterr().err
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

    await bootstrap_admin_key(database, key_file, generate=True)  # a restart: no new key, nothing printed
    assert capsys.readouterr().err == ""
    async with database.transaction() as session:
        keys = await list_keys(session)
    assert [(k.role, k.key_hash) for k in keys] == [(Role.admin.value, hash_key(key))]
    assert all(key not in (k.prefix, k.key_hash, k.name) for k in keys)
    await database.close()


async def test_sf_admin_key_is_registered_once_and_never_generated_beside(
    database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chosen = "sf_operator-chosen-key-0123456789abcdef"
    key_file = tmp_path / "admin.key"
    for _ in range(2):
        await bootstrap_admin_key(database, key_file, generate=True, wanted=chosen)
    async with database.transaction() as session:
        keys = await list_keys(session)
    assert len(keys) == 1
    assert key_file.read_text().strip() == "sf_operator-chosen-key-0123456789abcdef"
    await database.close()


def test_apikey_create_list_revoke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SF_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    runner = CliRunner()
    created = runner.invoke(app, ["apikey", "create", "--role", "submitter", "--name", "ci"])
    assert created.exit_code == 0, created.output
    secret = created.output.strip().splitlines()[-1]
    assert secret.startswith("sf_")
    key_id = created.output.split()[1]

    listed = runner.invoke(app, ["apikey", "list"])
    assert listed.exit_code == 0
    assert key_id in listed.output
    assert secret[:10] in listed.output
    assert secret not in listed.output

    assert runner.invoke(app, ["apikey", "revoke", key_id]).exit_code == 0
    assert runner.invoke(app, ["apikey", "revoke", key_id]).exit_code == 1
    assert runner.invoke(app, ["apikey", "create", "--role", "root", "--name", "x"]).exit_code == 2


async def test_gateways_starting_together_register_sf_admin_key_once(
    database_url: str, tmp_path: Path
) -> None:
    """Replicas of the gateway start at once on a fresh database: one registers the key, the others find
    it, and none fails its start."""
    chosen = "sf_operator-chosen-key-race-0123456789abcdef"
    replicas = [Database(database_url) for _ in range(4)]
    await upgrade(replicas[0].engine)
    await asyncio.gather(
        *(
            bootstrap_admin_key(db, tmp_path / f"admin-{n}.key", generate=False, wanted=chosen)
            for n, db in enumerate(replicas)
        )
    )
    async with replicas[0].transaction() as session:
        keys = await list_keys(session)
    assert [key.role for key in keys] == ["admin"]
    for db in replicas:
        await db.close()
