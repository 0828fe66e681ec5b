"""The `service-feature` command line."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console

from service_feature.config import CommonSettings
from service_feature.follow import FINAL_STATUSES, follow_feature, print_outcome
from service_feature.logs import configure_logging

app = typer.Typer(
    help="Service Feature: feature requests become tested, reviewed, delivered branches.",
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
console = Console()

DEFAULT_URL = os.environ.get("SF_API_URL", "http://127.0.0.1:8080")
UrlOption = Annotated[str, typer.Option("--url", help="The gateway's base URL (or SF_API_URL).")]
PortOption = Annotated[
    int | None, typer.Option("--port", help="HTTP port (default: from SERVER_ADDRESS, 8080).")
]


def _run_platform(services: tuple[str, ...], port: int | None, migrate: bool) -> None:
    from service_feature.runtime import Platform  # imported here: client commands stay light

    settings = CommonSettings()
    configure_logging(settings.log_level, settings.log_format)
    asyncio.run(
        Platform(services=services, port=port, migrate=migrate, settings=settings).run_until_signalled()
    )


@app.command()
def up(port: PortOption = None) -> None:
    """Run all four services in this process (embedded default: private NATS and SQLite unless configured)."""
    os.environ.setdefault("ALLOW_LOCAL_REPOSITORIES", "true")
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


@app.command()
def submit(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="A feature request (JSON).")],
    url: UrlOption = DEFAULT_URL,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the feature until it ends.")] = False,
) -> None:
    """Submit a feature request."""
    body = json.loads(file.read_text())
    response = httpx.post(f"{url}/api/v1/features", json=body, timeout=30)
    if response.status_code >= 400:
        console.print(f"[red]{response.status_code}[/] {response.text}")
        raise typer.Exit(1)
    feature = response.json()
    console.print(f"accepted [bold]{feature['execution_id']}[/] ({feature['status']})")
    if wait:
        final = asyncio.run(follow_feature(url, feature["execution_id"], console))
        print_outcome(url, final, console)
        raise typer.Exit(0 if final["status"] == "delivered" else 1)


@app.command()
def status(execution_id: str, url: UrlOption = DEFAULT_URL) -> None:
    """Show one feature."""
    response = httpx.get(f"{url}/api/v1/features/{execution_id}", timeout=30)
    if response.status_code >= 400:
        console.print(f"[red]{response.status_code}[/] {response.text}")
        raise typer.Exit(1)
    console.print_json(response.text)
    raise typer.Exit(0 if response.json()["status"] not in FINAL_STATUSES - {"delivered"} else 1)


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
