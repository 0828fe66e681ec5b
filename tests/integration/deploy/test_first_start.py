"""docs/deployment.md's first start, run where it runs without a Docker engine: a new user's `make up`
leaves an admin API key in .env, the gateway registers it, and the page's `curl` commands answer.

- `make -n up`: its ensure-env line is run for real, on a scratch .env;
- the compose `migrate` and `gateway` services' commands run as processes (`service-feature db upgrade`,
  `service-feature gateway`) on a PostgreSQL database and a private nats-server, with the environment
  compose would give the gateway (SF_ADMIN_KEY from that .env);
- the page's first-start block is run by bash as written, except that `make` is this repository's with
  the scratch .env (`make -n` for the targets that need an engine), `http://localhost:8080` is the
  gateway's address, and `examples/simple-feature.json` names a local repository instead of the
  reference design's placeholder (the only change to what a user runs);
- `docker compose exec gateway service-feature apikey …`: the command after the container name, with the
  gateway's DATABASE_URL;
- the Kubernetes Secret command (`kubectl … --dry-run=client`), where kubectl is installed;
- every `make …` the page names: `make -n` succeeds.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from service_feature.bus.embedded import EmbeddedNatsServer
from tests.integration.deploy.test_manifests import ROOT, compose, environment
from tests.support.cluster import Cluster

DOCS = ROOT / "docs" / "deployment.md"
ENSURE_ENV = ROOT / "deploy" / "compose" / "ensure-env.sh"
KEY = re.compile(r"sf_[A-Za-z0-9_-]{43}")


def _section(title: str) -> str:
    text = DOCS.read_text()
    start = text.index(f"\n## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def _bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, re.DOTALL)


def _commands(block: str) -> list[str]:
    """The block's commands: continuation lines joined, trailing `  # comments` dropped."""
    joined = block.replace("\\\n", " ")
    return [re.sub(r"\s{2,}#.*$", "", line).strip() for line in joined.splitlines() if line.strip()]


def _user_environment() -> dict[str, str]:
    """This process's environment without the keys a user would not have set yet."""
    return {name: value for name, value in os.environ.items() if name not in ("SF_ADMIN_KEY", "SF_API_KEY")}


def _make(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        env=_user_environment(),
    )


def _ensure_env(env_file: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The line `make up` runs before compose, as the Makefile writes it, on `env_file`."""
    lines = _make("-n", "up", f"SF_ENV_FILE={env_file}").stdout.splitlines()
    (line,) = [line for line in lines if line.startswith("deploy/compose/ensure-env.sh")]
    return subprocess.run(
        ["bash", "-c", line],
        cwd=ROOT,
        env={**_user_environment(), **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def _admin_key(env_file: Path) -> str:
    match = re.search(r"^SF_ADMIN_KEY=(.*)$", env_file.read_text(), re.MULTILINE)
    assert match, env_file.read_text()
    return match.group(1)


@pytest.fixture(autouse=True)
def _needs_make() -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")


def test_ensure_env_creates_env_with_a_generated_admin_key(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    done = _ensure_env(env_file)
    assert done.returncode == 0, done.stderr
    key = _admin_key(env_file)
    assert KEY.fullmatch(key), key  # the shape of `service-feature apikey create`'s keys
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    # Everything else is .env.example's, as it is.
    example = (ROOT / ".env.example").read_text()
    assert env_file.read_text() == example.replace("SF_ADMIN_KEY=\n", f"SF_ADMIN_KEY={key}\n")

    # Again: the key stays (a new one would lock out clients of the old).
    assert _ensure_env(env_file).returncode == 0
    assert _admin_key(env_file) == key
    # Another run, another key: not a constant.
    other = tmp_path / "other.env"
    assert _ensure_env(other).returncode == 0
    assert _admin_key(other) != key


def test_ensure_env_fills_an_empty_key_and_keeps_the_rest(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("ANTHROPIC_API_KEY=sk-mine\nSF_ADMIN_KEY=\nGATEWAY_PORT=9000\n")
    assert _ensure_env(env_file).returncode == 0
    lines = env_file.read_text().splitlines()
    assert lines[0] == "ANTHROPIC_API_KEY=sk-mine"
    assert KEY.fullmatch(lines[1].removeprefix("SF_ADMIN_KEY="))
    assert lines[2:] == ["GATEWAY_PORT=9000"]

    missing = tmp_path / "missing.env"
    missing.write_text("LOG_LEVEL=DEBUG")  # no newline at the end
    assert _ensure_env(missing).returncode == 0
    assert missing.read_text().splitlines()[0] == "LOG_LEVEL=DEBUG"
    assert KEY.fullmatch(_admin_key(missing))


def test_ensure_env_leaves_a_key_from_the_shell_to_compose(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    done = _ensure_env(env_file, SF_ADMIN_KEY="sf_chosen")
    assert done.returncode == 0
    assert "set in this shell" in done.stdout
    assert _admin_key(env_file) == ""  # compose takes the shell's; the file is not given another
    printed = _make("-s", "admin-key", f"SF_ENV_FILE={env_file}")
    assert printed.returncode != 0
    assert "'make up' generates one" in printed.stderr


def test_ensure_env_warns_when_git_would_commit_the_secrets(tmp_path: Path) -> None:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True, timeout=30)
    shutil.copy(ROOT / ".env.example", tmp_path / ".env.example")

    def run() -> str:
        done = subprocess.run(
            [str(ENSURE_ENV)],
            cwd=tmp_path,
            env=_user_environment(),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        return done.stderr

    assert "git does not ignore .env" in run()
    (tmp_path / ".gitignore").write_text(".env\n")
    assert run() == ""


def _gateway_environment(key: str) -> dict[str, str]:
    """What compose gives the gateway that matters off-engine: the admin key, from the .env."""
    gateway = environment(compose()["services"]["gateway"])
    assert gateway["SF_ADMIN_KEY"] == "${SF_ADMIN_KEY:-}"
    return {"SF_ADMIN_KEY": key}


def test_first_start_block_runs_against_a_real_gateway(
    tmp_path: Path, origin: Path, postgres_url: str, nats_server: EmbeddedNatsServer
) -> None:
    services = compose()["services"]
    assert services["migrate"]["command"] == ["db", "upgrade"]
    assert services["gateway"]["command"] == ["gateway"]

    env_file = tmp_path / ".env"
    assert _ensure_env(env_file).returncode == 0
    key = _admin_key(env_file)

    cluster = Cluster(
        tmp_path / "cluster",
        postgres_url.replace("postgresql+asyncpg://", "postgres://"),
        nats_server.url,
        _gateway_environment(key),
    )
    cluster.migrate()  # the `migrate` service: service-feature db upgrade
    gateway = cluster.start("gateway")  # the `gateway` service: service-feature gateway
    try:
        cluster.wait_ready()
        (block, _) = _bash_blocks(_section("First start"))
        workdir = tmp_path / "user"
        (workdir / "examples").mkdir(parents=True)
        example = json.loads((ROOT / "examples" / "simple-feature.json").read_text())
        example["repository_url"] = str(origin)
        (workdir / "examples" / "simple-feature.json").write_text(json.dumps(example))
        script = (
            "set -euo pipefail\n"
            # make: this repository's, on the scratch .env; targets that need an engine only dry-run.
            f'make() {{ case " $* " in *" admin-key "*) command make --no-print-directory -C "{ROOT}" '
            f'SF_ENV_FILE="{env_file}" "$@";; *) command make -n -C "{ROOT}" "$@" >/dev/null;; esac; }}\n'
            'curl() { command curl "$@"; echo; }\n'  # one answer per line
            + block.replace("http://localhost:8080", gateway.url)
        )
        done = subprocess.run(
            ["bash", "-c", script],
            cwd=workdir,
            env=_user_environment(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        health, listing, submitted, feature = (json.loads(line) for line in done.stdout.splitlines())
        assert health == {"status": "healthy", "service": "gateway"}
        assert listing["items"] == []
        assert submitted["execution_id"] == example["execution_id"] == "demo000000001"
        assert submitted["status"] == "queued"
        assert feature["execution_id"] == "demo000000001"

        # The other keys: `docker compose exec gateway service-feature apikey …` runs in the gateway's
        # environment; here, the same command with the gateway's database.
        (_, more) = _bash_blocks(_section("First start"))
        prefix = "docker compose exec gateway service-feature "
        outputs = []
        for command in _commands(more):
            assert command.startswith(prefix), command
            ran = subprocess.run(
                [sys.executable, "-m", "service_feature.cli", *command.removeprefix(prefix).split()],
                env={
                    **os.environ,
                    "DATABASE_URL": cluster.database_url,
                    "SF_DATA_DIR": str(tmp_path / "cli"),
                },
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert ran.returncode == 0, ran.stdout + ran.stderr
            outputs.append(ran.stdout)
        alice = outputs[0].strip().splitlines()[-1]  # "prints the key once (its last line, alone)"
        assert KEY.fullmatch(alice), outputs[0]
        assert "alice" in outputs[1]
        assert "SF_ADMIN_KEY" in outputs[1]  # the key the gateway registered
        with httpx.Client(base_url=gateway.url, timeout=30) as api:
            as_alice = api.get("/api/v1/features", headers={"Authorization": f"Bearer {alice}"})
            assert as_alice.status_code == 200, as_alice.text
            assert as_alice.json()["items"] == []  # a submitter sees only its own features
            nobody = api.get("/api/v1/features", headers={"Authorization": "Bearer sf_not-a-key"})
            assert nobody.status_code == 401
    finally:
        codes = cluster.stop()
    assert all(code == 0 for code in codes.values()), codes


def test_kubernetes_secret_command_makes_a_valid_secret_with_an_admin_key() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    (block,) = [b for b in _bash_blocks(_section("Kubernetes")) if "create secret" in b]
    (create, *_) = _commands(block)
    # Up to the pipe: `--dry-run=client -o yaml` needs no cluster; `kubectl apply -f -` would.
    command, _, apply = create.rpartition(" | ")
    assert apply == "kubectl apply -f -"
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    secret = yaml.safe_load(done.stdout)
    kubernetes_validate.validate(secret, "1.32.0", strict=True)
    assert secret["metadata"] == {
        "name": "service-feature-secrets",
        "namespace": "service-feature",
        "creationTimestamp": None,
    }
    values = {name: base64.b64decode(value).decode() for name, value in secret["data"].items()}
    assert KEY.fullmatch(values["SF_ADMIN_KEY"])
    assert {"DATABASE_URL", "ANTHROPIC_API_KEY", "SF_ADMIN_KEY"} == set(values)


def _make_commands() -> set[str]:
    """`make …` in inline code and at the start of a code block's lines (or after `VAR=value`s)."""
    text = DOCS.read_text()
    code = re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.DOTALL))
    for block in re.findall(r"```bash\n(.*?)```", text, re.DOTALL):
        code += _commands(block)
    commands = set()
    for snippet in code:
        for match in re.finditer(r"(?:^|\$\(|;\s*)(?:[A-Z_]+=\S+\s+)*make ((?:-s )?[^;)`#]*)", snippet):
            words = match.group(1).split()
            target = [word for word in words if not word.startswith("-")]
            if target:  # not `make -n` or the word alone
                commands.add(" ".join(target))
    return commands


def test_every_make_command_on_the_page_dry_runs() -> None:
    commands = _make_commands()
    assert {"up", "admin-key", "scale-gateway N=3", "up-local", "k8s-apply"} <= commands
    failures = []
    for command in sorted(commands):
        done = _make("-n", *command.split())
        if done.returncode != 0:
            failures.append(f"make {command}: {done.stderr.strip()}")
    assert not failures, "\n".join(failures)
