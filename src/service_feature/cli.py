"""The `service-feature` command line."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar
from urllib.parse import quote

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from service_feature.config import CommonSettings
from service_feature.follow import (
    FINAL_STATUSES,
    StreamRefused,
    api_key_headers,
    detail_of,
    event_line,
    follow_feature,
    print_outcome,
    stream_feature_events,
)
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
killswitch_app = typer.Typer(help="The kill switch: stop every autonomous action, and resume.")
app.add_typer(killswitch_app, name="killswitch", no_args_is_help=True)
console = Console()
errors = Console(stderr=True)

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
JsonOption = Annotated[
    bool, typer.Option("--json", help="Machine-readable output: JSON on stdout, errors as JSON on stderr.")
]
ReasonOption = Annotated[str, typer.Option("--reason", help="Why: recorded with the change.")]
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


# -- decisions and inspection over the HTTP API -----------------------------------------------------------

EXIT_REFUSED = 1  # the gateway answered with an error (4xx, 5xx): its detail is on stderr
EXIT_UNREACHABLE = 3  # no answer from the gateway at all
HINTS = {
    401: "the API key is missing or not valid: pass --api-key or set SF_API_KEY",
    403: "this key's role may not do this: approve, reject and the kill switch need an admin key",
    404: "no such feature for this key (a submitter key sees only the features it submitted)",
    409: "the feature is not in a state that allows this: see `service-feature status ID`",
}


def _text(detail: Any) -> str:
    return detail if isinstance(detail, str) else json.dumps(detail)


def _refused(status_code: int, detail: Any, as_json: bool) -> NoReturn:
    """Say why the gateway refused (on stderr, JSON for scripts) and exit with EXIT_REFUSED."""
    if as_json:
        typer.echo(json.dumps({"status_code": status_code, "detail": detail}), err=True)
    else:
        errors.print(f"[red]error {status_code}[/]: {escape(_text(detail))}")
        if hint := HINTS.get(status_code):
            errors.print(f"[dim]hint: {hint}[/]")
    raise typer.Exit(EXIT_REFUSED)


def _unreachable(url: str, error: Exception, as_json: bool) -> NoReturn:
    message = f"cannot reach the gateway at {url}: {error}"
    if as_json:
        typer.echo(json.dumps({"status_code": None, "detail": message}), err=True)
    else:
        errors.print(f"[red]{escape(message)}[/]\n[dim]hint: is it running? pass --url or set SF_API_URL[/]")
    raise typer.Exit(EXIT_UNREACHABLE)


def _call(
    method: str, url: str, path: str, api_key: str | None, as_json: bool, body: dict[str, Any] | None = None
) -> Any:
    """One request to the gateway; its JSON answer, or an exit that says why there is none."""
    try:
        response = httpx.request(
            method, url.rstrip("/") + path, json=body, headers=_headers(api_key), timeout=30
        )
    except httpx.TransportError as error:
        _unreachable(url, error, as_json)
    if response.status_code >= 400:
        _refused(response.status_code, detail_of(response), as_json)
    return response.json()


def _feature_path(execution_id: str, action: str) -> str:
    # Quoted: an argument holding "/" or "?" names no other route.
    return f"/api/v1/features/{quote(execution_id, safe='')}/{action}"


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(value))


def _decided(verb: str, feature: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _print_json(feature)
    else:
        console.print(f"{verb} [bold]{escape(feature['execution_id'])}[/]: now [cyan]{feature['status']}[/]")


@app.command()
def approve(
    execution_id: str,
    reason: Annotated[str, typer.Option("--reason", help="A comment, recorded with the approval.")] = "",
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Approve a feature the reviewer held for a person (awaiting_approval): it is delivered. Admin key."""
    body = {"reason": reason}
    feature = _call("POST", url, _feature_path(execution_id, "approve"), api_key, as_json, body)
    _decided("approved", feature, as_json)


@app.command()
def reject(
    execution_id: str,
    reason: ReasonOption,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Reject a feature the reviewer held for a person; the reason is recorded on it. Admin key."""
    body = {"reason": reason}
    feature = _call("POST", url, _feature_path(execution_id, "reject"), api_key, as_json, body)
    _decided("rejected", feature, as_json)


@app.command()
def cancel(
    execution_id: str, url: UrlOption = DEFAULT_URL, api_key: ApiKeyOption = None, as_json: JsonOption = False
) -> None:
    """Cancel a feature that has not ended (a submitter key its own features, an admin key any)."""
    feature = _call("POST", url, _feature_path(execution_id, "cancel"), api_key, as_json)
    _decided("cancelled", feature, as_json)


def _print_switch(state: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _print_json(state)
        return
    shown = "[red bold]ENGAGED[/]" if state["engaged"] else "[green]released[/]"
    table = Table(show_header=False, box=None)
    table.add_row("kill switch", shown)
    for name in ("reason", "actor", "changed_at"):
        if state.get(name):
            table.add_row(name.replace("_", " "), escape(str(state[name])))
    console.print(table)


@killswitch_app.command("status")
def killswitch_status(
    url: UrlOption = DEFAULT_URL, api_key: ApiKeyOption = None, as_json: JsonOption = False
) -> None:
    """Whether the kill switch is engaged, by whom and why (a reader or admin key)."""
    _print_switch(_call("GET", url, "/api/v1/killswitch/status", api_key, as_json), as_json)


@killswitch_app.command("engage")
def killswitch_engage(
    reason: ReasonOption,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Stop every autonomous action: nothing new starts, running executions stop. Admin key."""
    body = {"reason": reason}
    _print_switch(_call("POST", url, "/api/v1/killswitch/engage", api_key, as_json, body), as_json)


@killswitch_app.command("release")
def killswitch_release(
    reason: ReasonOption,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Resume: paused work continues where it stopped. Admin key."""
    body = {"reason": reason}
    _print_switch(_call("POST", url, "/api/v1/killswitch/release", api_key, as_json, body), as_json)


@app.command()
def logs(
    execution_id: str,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Stream new events until the feature ends.")
    ] = False,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """A feature's event log. With --json: the log as one JSON document, or with --follow one event per
    line (JSON Lines) as they happen."""
    if not follow:
        body = _call("GET", url, _feature_path(execution_id, "events"), api_key, as_json)
        if as_json:
            _print_json(body)
            return
        for event in body["events"]:
            console.print(event_line(event))
        return
    try:
        asyncio.run(_follow_log(url, execution_id, _headers(api_key), as_json))
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


async def _follow_log(url: str, execution_id: str, headers: dict[str, str], as_json: bool) -> None:
    async with httpx.AsyncClient(base_url=url, headers=headers) as client:
        try:
            async for event in stream_feature_events(client, execution_id):
                if as_json:
                    typer.echo(json.dumps(event))
                else:
                    console.print(event_line(event))
        except StreamRefused as refused:
            _refused(refused.status_code, refused.detail, as_json)
        except httpx.TransportError as error:
            _unreachable(url, error, as_json)


def _entry_line(entry: dict[str, Any]) -> str:
    content = json.dumps(entry["content"], ensure_ascii=False)
    shown = content if len(content) <= 300 else content[:300] + "…"
    when = entry["created_at"][11:19]
    return f"[dim]{when}[/] attempt {entry['attempt']} [bold]{escape(entry['kind'])}[/] {escape(shown)}"


@app.command()
def transcript(
    execution_id: str, url: UrlOption = DEFAULT_URL, api_key: ApiKeyOption = None, as_json: JsonOption = False
) -> None:
    """Every model call, tool call and tool result of a feature, in order (long ones shortened; --json
    has them whole)."""
    body = _call("GET", url, _feature_path(execution_id, "transcript"), api_key, as_json)
    if as_json:
        _print_json(body)
        return
    for entry in body["entries"]:
        console.print(_entry_line(entry))
    if not body["entries"]:
        console.print(f"[dim]no transcript for {escape(execution_id)} yet[/]")


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
