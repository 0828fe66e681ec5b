"""A private Docker engine for tests, and a small base image built from Debian's packages.

No test may touch the machine's own engine (another suite may be using it) or pull from a hub (none is
reachable), so:

* **The engine** is Debian's `dockerd` with its own data root, exec root, pid file and socket under a fresh
  temporary directory, no bridge and no iptables changes (containers get no network, or the host's with
  `--network host`); stopped and its directory removed at the end. `SF_DOCKER_HOST=unix:///path` reuses an
  engine that already answers there instead (nothing is started or stopped then).
* **The base image** is `debootstrap --variant=minbase` of the machine's own Debian release from the mirror
  apt is configured with, plus python3, venv, git and CA certificates, imported with `docker import`. The
  root file system's tarball is cached under `SF_CACHE_DIR` (default `~/.cache/service-feature`) by a key of
  the release and the package list, so only the first run on a machine pays for debootstrap (about a
  minute); later runs import the tarball (seconds).
* **Missing tools** (`dockerd`, `debootstrap`) are installed with apt-get when `SF_REQUIRE_DOCKER=1`;
  otherwise the tests that need them skip and say why.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

BASE_PACKAGES = ("python3", "python3-venv", "git", "ca-certificates")
IMAGE_REPOSITORY = "service-feature-test-base"
_TOOLS = {"dockerd": "docker.io", "docker": "docker.io", "debootstrap": "debootstrap"}
_START_TIMEOUT_SECONDS = 60
_STOP_TIMEOUT_SECONDS = 20
_APT_SOURCES = Path("/etc/apt/sources.list")
_APT_SOURCES_DIR = Path("/etc/apt/sources.list.d")


class DockerUnavailable(Exception):
    """No engine can be had here; the message says why (and what would fix it)."""


@dataclass(frozen=True)
class DockerEngine:
    """An engine answering at `host` (a `unix://` URL), with `image` (the base image's tag) loaded."""

    host: str
    image: str
    started: bool

    def environment(self) -> dict[str, str]:
        """The variables that point the Docker SDK and CLI at this engine."""
        return {"DOCKER_HOST": self.host}

    def docker(self, *args: str, timeout: float = 120, stdin: bytes | None = None) -> str:
        """`docker <args>` against this engine; raises with its output when it fails."""
        done = subprocess.run(
            ["docker", "--host", self.host, *args],
            input=stdin,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)} failed: {done.stderr.decode(errors='replace')}")
        return done.stdout.decode(errors="replace")


def required() -> bool:
    return os.environ.get("SF_REQUIRE_DOCKER") == "1"


def cache_dir() -> Path:
    root = os.environ.get("SF_CACHE_DIR") or str(Path.home() / ".cache" / "service-feature")
    return Path(root) / "docker"


@contextlib.contextmanager
def private_engine() -> Iterator[DockerEngine]:
    """An engine with the base image loaded, for the duration of the block; see the module docstring."""
    ensure_tools()
    reused = os.environ.get("SF_DOCKER_HOST")
    if reused:
        if not _answers(reused):
            raise DockerUnavailable(f"SF_DOCKER_HOST={reused} is set but no engine answers there")
        engine = DockerEngine(reused, "", started=False)
        yield DockerEngine(reused, load_base_image(engine), started=False)
        return
    with _started_engine() as host:
        engine = DockerEngine(host, "", started=True)
        yield DockerEngine(host, load_base_image(engine), started=True)


def ensure_tools() -> None:
    """Install dockerd and debootstrap when missing and tests require Docker; else say what is missing."""
    missing = sorted({package for tool, package in _TOOLS.items() if shutil.which(tool) is None})
    if not missing:
        return
    if not required():
        raise DockerUnavailable(f"missing {', '.join(missing)} (SF_REQUIRE_DOCKER=1 installs them)")
    if os.geteuid() != 0:
        raise DockerUnavailable(
            f"missing {', '.join(missing)} and not root: apt-get install {' '.join(missing)}"
        )
    apt = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=apt, capture_output=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=apt, capture_output=True)


@contextlib.contextmanager
def _started_engine() -> Iterator[str]:
    """dockerd on a socket of its own; stopped (SIGTERM, then SIGKILL) and its files removed afterwards."""
    if os.geteuid() != 0:
        raise DockerUnavailable("starting a private dockerd needs root (or set SF_DOCKER_HOST)")
    # Short: a unix socket's path is limited to 108 bytes.
    root = Path(tempfile.mkdtemp(prefix="sf-docker-"))
    host = f"unix://{root}/docker.sock"
    log = (root / "dockerd.log").open("wb")
    process = subprocess.Popen(
        [
            "dockerd",
            "--bridge=none",
            "--iptables=false",
            "--ip-masq=false",
            # A test's container still running at the end is killed, not waited for (default 15 s).
            "--shutdown-timeout=1",
            "--data-root",
            str(root / "data"),
            "--exec-root",
            str(root / "exec"),
            "--pidfile",
            str(root / "dockerd.pid"),
            "--host",
            host,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_until_answering(host, process, root / "dockerd.log")
        yield host
    finally:
        _stop(process)
        log.close()
        _remove_tree(root)


def _wait_until_answering(host: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DockerUnavailable(f"dockerd exited ({process.returncode}): {log.read_text()[-2000:]}")
        if _answers(host):
            return
        time.sleep(0.2)
    raise DockerUnavailable(
        f"dockerd did not answer within {_START_TIMEOUT_SECONDS}s: {log.read_text()[-2000:]}"
    )


def _answers(host: str) -> bool:
    done = subprocess.run(
        ["docker", "--host", host, "version", "--format", "{{.Server.Version}}"],
        capture_output=True,
        timeout=10,
        check=False,
    )
    return done.returncode == 0


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(_STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, 9)
        process.wait(_STOP_TIMEOUT_SECONDS)


def _remove_tree(root: Path) -> None:
    """The engine's directory; overlay mounts it left behind (a killed engine) are unmounted first."""
    mounts = Path("/proc/self/mounts").read_text().splitlines()
    for line in reversed(mounts):
        target = line.split()[1]
        if target.startswith(str(root)):
            subprocess.run(["umount", "-l", target], check=False, capture_output=True)
    shutil.rmtree(root, ignore_errors=True)


# -- the base image ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DebianSource:
    release: str
    mirror: str


def debian_source() -> DebianSource:
    """This machine's Debian release and the mirror apt is configured with (never a hard-coded host)."""
    release = _os_release().get("VERSION_CODENAME", "")
    if not release:
        raise DockerUnavailable("not a Debian release with a codename (/etc/os-release)")
    for uri, suites in _apt_entries():
        if release in suites and "security" not in uri:
            return DebianSource(release, uri)
    raise DockerUnavailable(f"no apt source for {release} in {_APT_SOURCES} or {_APT_SOURCES_DIR}")


def _os_release() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in Path("/etc/os-release").read_text().splitlines():
        name, _, value = line.partition("=")
        values[name] = value.strip().strip('"')
    return values


def _apt_entries() -> Iterator[tuple[str, list[str]]]:
    """(URI, suites) of every enabled `deb` source, one-line and deb822 formats alike."""
    if _APT_SOURCES.is_file():
        for line in _APT_SOURCES.read_text().splitlines():
            words = re.sub(r"\[[^]]*\]", "", line).split()
            if len(words) >= 3 and words[0] == "deb":
                yield words[1], [words[2]]
    for path in sorted(_APT_SOURCES_DIR.glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", path.read_text()):
            fields = _deb822(stanza)
            if "deb" in fields.get("Types", "").split() and fields.get("Enabled", "yes") != "no":
                for uri in fields.get("URIs", "").split():
                    yield uri, fields.get("Suites", "").split()


def _deb822(stanza: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in stanza.splitlines():
        if line.startswith("#") or ":" not in line or line[0].isspace():
            continue
        name, _, value = line.partition(":")
        fields[name.strip()] = value.strip()
    return fields


def image_key(source: DebianSource, packages: tuple[str, ...] = BASE_PACKAGES) -> str:
    return hashlib.sha256(f"{source.release}\0{' '.join(sorted(packages))}".encode()).hexdigest()[:16]


def base_image_tarball(packages: tuple[str, ...] = BASE_PACKAGES) -> Path:
    """The cached root file system tarball, built now (under a lock: parallel test runs build it once)."""
    source = debian_source()
    tarball = cache_dir() / f"debian-{source.release}-{image_key(source, packages)}.tar"
    if tarball.is_file():
        return tarball
    tarball.parent.mkdir(parents=True, exist_ok=True)
    with tarball.with_suffix(".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not tarball.is_file():
            _debootstrap(source, packages, tarball)
    return tarball


def _debootstrap(source: DebianSource, packages: tuple[str, ...], tarball: Path) -> None:
    if os.geteuid() != 0:
        raise DockerUnavailable("building the base image with debootstrap needs root")
    with tempfile.TemporaryDirectory(prefix="sf-rootfs-") as scratch:
        rootfs = Path(scratch) / "rootfs"
        done = subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(packages)}",
                source.release,
                str(rootfs),
                source.mirror,
            ],
            capture_output=True,
            timeout=900,
            check=False,
        )
        if done.returncode != 0:
            output = (done.stdout + done.stderr).decode(errors="replace")[-3000:]
            raise DockerUnavailable(f"debootstrap failed ({done.returncode}):\n{output}")
        # The image needs neither downloaded packages nor package lists (50 MB): they only make it bigger.
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for path in (rootfs / leftover).glob("*"):
                if path.is_file():
                    path.unlink()
        partial = tarball.with_suffix(".partial")
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(partial), "."], check=True, timeout=600)
        partial.replace(tarball)


def load_base_image(engine: DockerEngine, packages: tuple[str, ...] = BASE_PACKAGES) -> str:
    """The base image's tag on `engine`, imported from the cached tarball unless it is there already."""
    tarball = base_image_tarball(packages)
    tag = f"{IMAGE_REPOSITORY}:{tarball.stem}"
    if engine.docker("images", "--quiet", tag).strip():
        return tag
    done = subprocess.run(
        ["docker", "--host", engine.host, "import", "--change", "ENV LANG=C.UTF-8", str(tarball), tag],
        capture_output=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise DockerUnavailable(f"docker import failed: {done.stderr.decode(errors='replace')}")
    return tag
