"""`service-feature demo`: a real feature, end to end, on the embedded default.

It builds a small Python project with a pytest suite from `examples/demo-repo` into a bare "origin"
repository, starts all four services in this process, submits the reference design's example request
(adapted to that project), follows it live, prints what was delivered, and checks that the branch really
is on the origin.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import httpx
from rich.console import Console

from service_feature.bus.embedded import free_port
from service_feature.config import CommonSettings
from service_feature.follow import api_key_headers, follow_feature, print_outcome
from service_feature.logs import configure_logging

_GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Demo",
    "GIT_AUTHOR_EMAIL": "demo@localhost",
    "GIT_COMMITTER_NAME": "Demo",
    "GIT_COMMITTER_EMAIL": "demo@localhost",
}


def _git(*args: str, cwd: Path | None = None) -> str:
    env = {**os.environ, **_GIT_IDENTITY}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def create_origin(template: Path, destination: Path, branch: str = "main") -> Path:
    """A bare repository whose `branch` holds the template's files in one commit."""
    origin = destination / "origin.git"
    _git("init", "-q", "--bare", f"--initial-branch={branch}", str(origin))
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch) / "work"
        shutil.copytree(template, work)
        _git("init", "-q", f"--initial-branch={branch}", cwd=work)
        _git("add", "-A", cwd=work)
        _git("commit", "-q", "-m", "Initial commit", cwd=work)
        _git("push", "-q", str(origin), f"{branch}:{branch}", cwd=work)
    return origin


def run_demo(examples: Path, port: int | None, console: Console) -> int:
    if not (examples / "demo-repo").is_dir():
        console.print(f"[red]no demo repository template at {examples / 'demo-repo'}[/]")
        return 2
    home = CommonSettings().data_dir / "demo"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    origin = create_origin(examples / "demo-repo", home)
    os.environ.update(
        SF_DATA_DIR=str(home / "platform"),
        ALLOW_LOCAL_REPOSITORIES="true",
        LLM_PROVIDER="scripted",
        LLM_SCRIPT=str((examples / "scripts").resolve()),
    )
    request = json.loads((examples / "demo-feature.json").read_text())
    request["repository_url"] = str(origin)
    configure_logging("WARNING")
    return asyncio.run(_demo(request, origin, port or free_port(), console))


async def _demo(request: dict[str, object], origin: Path, port: int, console: Console) -> int:
    from service_feature.runtime import Platform

    platform = Platform(port=port, settings=CommonSettings())
    url = f"http://127.0.0.1:{port}"
    console.rule("Service Feature demo")
    console.print(f"platform: all four services in this process, API on {url}")
    console.print(f"repository: {origin}")
    await platform.start()
    try:
        key_file = platform.settings.admin_key_file  # this platform's own key, whatever SF_API_KEY says
        headers = api_key_headers(key_file.read_text().strip(), key_file)
        async with httpx.AsyncClient(base_url=url, timeout=30, headers=headers) as client:
            response = await client.post("/api/v1/features", json=request)
        response.raise_for_status()
        execution_id = response.json()["execution_id"]
        console.print(f"submitted [bold]{execution_id}[/]: {request['specification']['title']}")  # type: ignore[index]
        feature = await follow_feature(url, execution_id, console, headers)
        await asyncio.to_thread(print_outcome, url, feature, console, headers)
    finally:
        await platform.stop()
    if feature["status"] != "delivered":
        console.print(f"[red]not delivered: {feature['status']}[/]")
        return 1
    branch = feature["delivered_branch"]
    remote = _git("ls-remote", str(origin), f"refs/heads/{branch}").split()
    if not remote or remote[0] != feature["delivered_commit"]:
        console.print(f"[red]branch {branch} is not on the origin at the delivered commit[/]")
        return 1
    console.print(f"[green]delivered: {branch} is on {origin} at {remote[0][:12]}[/]")
    return 0
