"""Setup's network: its own namespace, joined to the host by pasta for one port only, the egress proxy's.

The run's wrapper execs pasta (Debian package `passt`), which creates a fresh network namespace and runs the
rest of the wrapper (setpriv, bwrap) inside it; bwrap then shares that namespace instead of making its own.
pasta is started with every automatic forward off: no inbound ports, no UDP, ICMP, DHCP, NDP or router
advertisements, the gateway not mapped to the host, and its tap interface left unconfigured, so the
namespace has no route anywhere. Its one way out is `-T PORT`: a connection to 127.0.0.1:PORT inside is
spliced to 127.0.0.1:PORT on the host, where `egress.py` listens. A connection to any other loopback port
stays inside the namespace and is refused there.

A root executor makes the namespace belong to the host's user namespace (`--netns-only`), where the sandbox
has no capability at all, so nothing inside can add an address or a route. pasta runs in the run's cgroup
and exits with the command; the cgroup's kill removes it in any case. Its own messages go to a memfd of the
executor rather than into the command's output, and `failure()` reads them back.
"""

from __future__ import annotations

import os
import shlex
import shutil
from pathlib import Path

NETWORK_LOG_FD_NAME = "sf-pasta-log"
_FORWARDS_OFF = (
    "-q", "-t", "none", "-u", "none", "-U", "none", "--no-map-gw", "--no-udp", "--no-icmp",
    "--no-dhcp", "--no-ndp", "--no-dhcpv6", "--no-ra",
)  # fmt: skip
# What pasta always says where it cannot isolate itself further or reach a syslog: not a failure.
_NOISE = ("syslog", "uid_map", "user mappings", "ping_group_range", "ICMP requests might fail")
_LOG_LIMIT = 2000


def pasta_path() -> str | None:
    return shutil.which("pasta")


def proxy_environment(port: int) -> dict[str, str]:
    """What points pip, uv, npm, Go, cargo and git at the proxy (each reads one spelling or another)."""
    url = f"http://127.0.0.1:{port}"
    names = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
    return {**dict.fromkeys(names, url), "NO_PROXY": "", "no_proxy": ""}


def pasta_command(pasta: str, port: int, *, as_root: bool) -> str:
    """Shell words that run "$@" (the rest of the wrapper) in the new namespace; the command keeps the
    wrapper's stderr (saved as fd 9 across pasta, whose own stderr goes to its log: `redirections`)."""
    owner = ["--runas", "0", "--netns-only"] if as_root else []
    pasta_words = shlex.join([pasta, *_FORWARDS_OFF, "-T", str(port), *owner, "--"])
    restore = shlex.quote('exec 2>&9 9>&-; exec "$@"')
    return f"{pasta_words} /bin/sh -c {restore} sf-net"


def redirections(log: Path) -> str:
    """Appended to the `exec pasta …` step: keep stderr as fd 9, send pasta's own to the log (a path, as
    dash takes single-digit fds only, and one the sandbox does not inherit)."""
    return f"9>&2 2>{shlex.quote(str(log))}"


def failure(log_fd: int) -> str | None:
    """pasta's own complaints, without its routine noise; None when it said nothing that matters."""
    os.lseek(log_fd, 0, os.SEEK_SET)
    text = os.read(log_fd, _LOG_LIMIT * 4).decode(errors="replace")
    lines = [line for line in text.splitlines() if line.strip() and not any(n in line for n in _NOISE)]
    return " ".join(lines)[-_LOG_LIMIT:] or None
