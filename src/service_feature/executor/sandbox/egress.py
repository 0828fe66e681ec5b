"""The only way out of a dependency-setup sandbox: an HTTPS CONNECT proxy that refuses internal addresses.

Setup runs code the repository controls (`setup.py`, build backends, `--find-links` in a requirements
file), so its network must reach package registries and nothing of the host or its network: not the
embedded NATS or the gateway on 127.0.0.1, not PostgreSQL or Redis on a private address, not the cloud's
metadata service. User-mode networking alone cannot promise that (pasta and slirp4netns can hide the
host's loopback, not the host's other addresses or the private network around it), so the setup sandbox
gets its own network namespace whose only connection is one port spliced by pasta to this proxy on the
host's loopback (`netns.py`), and `HTTPS_PROXY` pointing at it, which pip, uv, npm, Go, cargo and git obey.

The proxy allows `CONNECT host:443` only. It resolves the host itself, refuses it when any address is
loopback, private, link-local, shared, reserved or multicast (IPv4 inside IPv6 included), or when an
allow-list is set and does not name it, and connects to the address it checked, so a second DNS answer
cannot redirect it. It serves on its own thread and event loop, so a slow download never stalls the
services that share the executor's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import ipaddress
import socket
import threading
from collections.abc import Sequence

import structlog

_log = structlog.get_logger()

ALLOWED_PORTS = frozenset({443})
_HEAD_LIMIT = 16 * 1024
_HEAD_TIMEOUT_SECONDS = 30
_CONNECT_TIMEOUT_SECONDS = 30
_CHUNK = 65536
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_INTERNAL = tuple(
    ipaddress.ip_network(network)
    for network in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
        "192.168.0.0/16", "224.0.0.0/4", "240.0.0.0/4",
        "::/128", "::1/128", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
    )
)  # fmt: skip

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class Refused(Exception):
    """Why a destination is refused; the message goes back to the client and into the log."""


def internal(address: Address) -> bool:
    """On the host or its networks: loopback, unspecified, private, link-local, shared (CGNAT), unique-local,
    multicast or reserved, looking through the IPv6 forms that embed an IPv4 address. Documentation and
    benchmarking ranges are not refused: nothing routes them on the internet, and a test network may."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or (address.teredo or (None, None))[1]
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None and internal(embedded):
            return True
    return any(address in network for network in _INTERNAL if network.version == address.version)


def parse_target(target: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` of a CONNECT line."""
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        raise Refused(f"bad CONNECT target {target!r}")
    return host.strip("[]").lower(), int(port)


async def checked_addresses(host: str, port: int, allowed_hosts: Sequence[str]) -> list[str]:
    """The addresses to connect to, once every one of them is public; raises Refused otherwise."""
    if port not in ALLOWED_PORTS:
        raise Refused(f"port {port} is not allowed (only {', '.join(map(str, sorted(ALLOWED_PORTS)))})")
    if allowed_hosts and not any(fnmatch.fnmatchcase(host, p.lower()) for p in allowed_hosts):
        raise Refused(f"host {host} is not in SANDBOX_SETUP_ALLOWED_HOSTS")
    try:
        async with asyncio.timeout(_CONNECT_TIMEOUT_SECONDS):
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError):
        raise Refused(f"host {host} cannot be resolved") from None
    addresses = list(dict.fromkeys(str(info[4][0]).split("%")[0] for info in infos))
    for text in addresses:
        if internal(ipaddress.ip_address(text)):
            raise Refused(f"host {host} resolves to the internal address {text}")
    return addresses


class EgressProxy:
    """The proxy on 127.0.0.1:`port`, running on a daemon thread from `start()` on."""

    def __init__(self, allowed_hosts: Sequence[str] = ()) -> None:
        self.allowed_hosts = tuple(allowed_hosts)
        self.port = 0
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> int:
        """Start serving (once) and return the port."""
        thread = threading.Thread(target=self._serve_forever, name="sf-egress-proxy", daemon=True)
        thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self.port

    def _serve_forever(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as error:  # reported to start(), which is waiting for the port
            self._error = error
            self._ready.set()

    async def _serve(self) -> None:
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0, limit=_HEAD_LIMIT)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await server.serve_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream = await self._open(reader, writer)
        except Refused as error:
            _log.warning("sandbox.egress_refused", reason=str(error))
            await _answer(writer, "403 Forbidden", str(error))
            return
        except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            await _answer(writer, "400 Bad Request", "bad proxy request")
            return
        if upstream is None:
            await _answer(writer, "502 Bad Gateway", "the destination did not answer")
            return
        up_reader, up_writer = upstream
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    async def _open(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """Read the request head, check its destination, connect to a checked address, or None."""
        async with asyncio.timeout(_HEAD_TIMEOUT_SECONDS):
            head = await reader.readuntil(b"\r\n\r\n")
        method, _, rest = head.decode("latin-1").partition(" ")
        if method.upper() != "CONNECT":
            raise Refused(f"only HTTPS through CONNECT is allowed, not {method[:16]!r}")
        host, port = parse_target(rest.split(" ", 1)[0])
        for address in await checked_addresses(host, port, self.allowed_hosts):
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(_CONNECT_TIMEOUT_SECONDS):
                    return await asyncio.open_connection(address, port)
        return None


async def _answer(writer: asyncio.StreamWriter, status: str, reason: str) -> None:
    body = f"service-feature setup proxy: {reason}\n".encode()
    writer.write(
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n".encode()
        + body
    )
    with contextlib.suppress(OSError):
        await writer.drain()
    writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(_CHUNK):
            writer.write(chunk)
            await writer.drain()
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            writer.close()


_proxies: dict[tuple[str, ...], EgressProxy] = {}
_lock = threading.Lock()


def shared_proxy(allowed_hosts: Sequence[str] = ()) -> EgressProxy:
    """The process's proxy for this allow-list, started on first use."""
    key = tuple(allowed_hosts)
    with _lock:
        if key not in _proxies:
            proxy = EgressProxy(key)
            proxy.start()
            _proxies[key] = proxy
        return _proxies[key]
