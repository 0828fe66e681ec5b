"""The `service-feature` command line."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import httpx
import typer
from rich.console import Console

from service_feature.config import CommonSettings
from service_feature.follow import FINAL_STATUSES, api_key_headers, follow_feature, print_outcome
from service_feature.logs import configure_logging

if TYPE_CHECKING:
    from service_feature.store.database import Database

T = TypeVar("T")

app = typer.Typer(
    help="Service Feature: feature requests become tested, reviewed, delivered branches.",
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
apikey_app = typer.Typer(help="API keys of the HTTP API (on DATABASE_URL or the embedded database).")
app.add_typer(apikey_app, name="apikey", no_args_is_help=True)
console = Console()

DEFAULT_URL = os.environ.get("SF_API_URL", "http://127.0.0.1:8080")
UrlOption = Annotated[str, typer.Option("--url", help="The gateway's base URL (or SF_API_URL).")]
ApiKeyOption = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="SF_API_KEY",
        show_envvar=True,
        help="API key to send (default: SF_DATA_DIR/admin.key, left by `up`).",
    ),
]
PortOption = Annotated[
    int | None, typer.Option("--port", help="HTTP port (default: from SERVER_ADDRESS, 8080).")
]


def _run_platform(services: tuple[str, ...], port: int | None, migrate: bool) -> None:
    from service_feature.runtime import Platform  # imported here: client commands stay light
    from service_feature.telemetry import exporting_traces

    settings = CommonSettings()
    configure_logging(settings.log_level, settings.log_format)
    # one service's process reports as that service; `up` runs all four as one
    service_name = services[0] if len(services) == 1 else "service-feature"
    with exporting_traces(service_name, os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")):
        asyncio.run(
            Platform(services=services, port=port, migrate=migrate, settings=settings).run_until_signalled()
        )


@app.command()
def up(port: PortOption = None) -> None:
    """Run all four services in this process (embedded default: private NATS and SQLite unless configured)."""
    os.environ.setdefault("ALLOW_LOCAL_REPOSITORIES", "true")
    # Local repositories are allowed here: listen on loopback unless told otherwise (SERVER_ADDRESS).
    os.environ.setdefault("SERVER_ADDRESS", "127.0.0.1:8080")
    _run_platform(("gateway", "worker", "reviewer", "executor"), port, migrate=True)


def _service_command(name: str) -> None:
    def command(
        port: PortOption = None,
        migrate: Annotated[bool, typer.Option(help="Apply database migrations at start.")] = False,
    ) -> None:
        _run_platform((name,), port, migrate)

    command.__doc__ = f"Run the {name} service alone (distributed deployment)."
    app.command(name=name)(command)


for _name in ("gateway", "worker", "reviewer", "executor"):
    _service_command(_name)


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply the Alembic migrations to DATABASE_URL (or the embedded SQLite database)."""
    from service_feature.store.database import Database, upgrade

    async def run() -> None:
        settings = CommonSettings()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        database = Database(settings.sqlalchemy_url)
        await upgrade(database.engine, revision)
        await database.close()

    asyncio.run(run())
    console.print(f"database at [bold]{revision}[/]")


def _headers(api_key: str | None) -> dict[str, str]:
    return api_key_headers(api_key, CommonSettings().admin_key_file)


@app.command()
def submit(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="A feature request (JSON).")],
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the feature until it ends.")] = False,
) -> None:
    """Submit a feature request."""
    body = json.loads(file.read_text())
    headers = _headers(api_key)
    response = httpx.post(f"{url}/api/v1/features", json=body, timeout=30, headers=headers)
    if response.status_code >= 400:
        console.print(f"[red]{response.status_code}[/] {response.text}")
        raise typer.Exit(1)
    feature = response.json()
    console.print(f"accepted [bold]{feature['execution_id']}[/] ({feature['status']})")
    if wait:
        final = asyncio.run(follow_feature(url, feature["execution_id"], console, headers))
        print_outcome(url, final, console, headers)
        raise typer.Exit(0 if final["status"] == "delivered" else 1)


@app.command()
def status(execution_id: str, url: UrlOption = DEFAULT_URL, api_key: ApiKeyOption = None) -> None:
    """Show one feature."""
    response = httpx.get(f"{url}/api/v1/features/{execution_id}", timeout=30, headers=_headers(api_key))
    if response.status_code >= 400:
        console.print(f"[red]{response.status_code}[/] {response.text}")
        raise typer.Exit(1)
    console.print_json(response.text)
    raise typer.Exit(0 if response.json()["status"] not in FINAL_STATUSES - {"delivered"} else 1)


def _with_database(work: Callable[[Database], Awaitable[T]]) -> T:
    """Run `work` on DATABASE_URL (or the embedded database), migrated first."""
    from service_feature.store.database import Database, upgrade

    async def run() -> T:
        settings = CommonSettings()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        database = Database(settings.sqlalchemy_url)
        try:
            await upgrade(database.engine)
            return await work(database)
        finally:
            await database.close()

    return asyncio.run(run())


@apikey_app.command("create")
def apikey_create(
    role: Annotated[str, typer.Option("--role", help="submitter, reader or admin.")],
    name: Annotated[str, typer.Option("--name", help="Who or what holds the key.")],
) -> None:
    """Create a key and print it (the only time it is shown)."""
    from service_feature.auth import Role, issue_key

    if role not in {r.value for r in Role}:
        console.print(f"[red]unknown role '{role}'[/] (one of: {', '.join(r.value for r in Role)})")
        raise typer.Exit(2)
    issued = _with_database(lambda database: issue_key(database, name=name, role=Role(role)))
    console.print(f"key [bold]{issued.id}[/] ({issued.role}, {issued.name}); shown once:")
    print(issued.secret)  # plain, so it can be piped


@apikey_app.command("list")
def apikey_list() -> None:
    """Every key: id, prefix (not secret), role, name, created, revoked."""
    from service_feature.store.apikeys import list_keys

    async def rows(database: Database) -> list[tuple[str, ...]]:
        async with database.transaction() as session:
            keys = await list_keys(session)
        return [
            (
                k.id,
                k.prefix + "…",
                k.role,
                k.name,
                k.created_at.isoformat(timespec="seconds"),
                k.revoked_at.isoformat(timespec="seconds") if k.revoked_at else "",
            )
            for k in keys
        ]

    # Tab-separated, one key a line: whole at any terminal width, and easy to pipe.
    for row in [("id", "prefix", "role", "name", "created", "revoked"), *_with_database(rows)]:
        typer.echo("\t".join(row))


@apikey_app.command("revoke")
def apikey_revoke(key_id: str) -> None:
    """Revoke a key: requests with it get 401 from now on."""
    from service_feature.store.apikeys import revoke_key

    async def revoke(database: Database) -> bool:
        async with database.transaction() as session:
            return await revoke_key(session, key_id)

    if not _with_database(revoke):
        console.print(f"[red]no active key '{key_id}'[/]")
        raise typer.Exit(1)
    console.print(f"revoked [bold]{key_id}[/]")


@app.command()
def watch(
    nats_url: Annotated[
        str | None, typer.Option("--nats", help="NATS URL (default: configured or embedded).")
    ] = None,
    replay: Annotated[bool, typer.Option(help="Start from the oldest kept status event.")] = False,
) -> None:
    """Show every feature's status changes live (the NATS status stream)."""
    from service_feature.watch import embedded_nats_url, watch

    settings = CommonSettings()
    url = nats_url or settings.nats_url or embedded_nats_url(settings.data_dir)
    if url is None:
        console.print(
            "[red]no NATS server: set QUEUE_FEATURE_REQUEST_URI, pass --nats, or start `up` first[/]"
        )
        raise typer.Exit(2)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(watch(url, console, replay=replay))


@app.command()
def demo(
    port: PortOption = None,
    examples: Annotated[Path, typer.Option(help="The examples folder.")] = Path("examples"),
) -> None:
    """Run a real feature end to end on the embedded default, live, and show what was delivered."""
    from service_feature.demo import run_demo

    raise typer.Exit(run_demo(examples, port, console))


if __name__ == "__main__":
    app()
