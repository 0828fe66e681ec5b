"""Setup's egress proxy: which destinations it refuses, and that it refuses them before connecting.

Every request here goes to the proxy on 127.0.0.1; a refused destination is never contacted (the proxy
checks before it connects), so no test sends traffic anywhere else.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading

import pytest

from service_feature.executor.sandbox import egress
from service_feature.executor.sandbox.egress import EgressProxy, Refused, checked_addresses, internal

REFUSED = [
    "127.0.0.1", "127.255.0.9", "0.0.0.0", "10.1.2.3", "172.16.0.1", "172.31.255.254", "192.168.1.1",
    "169.254.169.254", "100.64.0.1", "100.127.255.254", "224.0.0.1", "255.255.255.255",
    "::1", "::", "fc00::1", "fd00:ec2::254", "fe80::1", "ff02::1",
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "2002:7f00:1::", "2002:a00:1::", "64:ff9b::a9fe:a9fe",
    "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo whose client is 10.0.0.1
]  # fmt: skip
ALLOWED = ["151.101.0.223", "8.8.8.8", "172.32.0.1", "100.128.0.1", "2a04:4e42::223", "2002:9765:df::"]


@pytest.mark.parametrize("address", REFUSED)
def test_host_and_private_addresses_are_internal(address: str) -> None:
    assert internal(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_are_not(address: str) -> None:
    assert not internal(ipaddress.ip_address(address))


async def test_internal_literals_other_ports_and_unlisted_hosts_are_refused() -> None:
    with pytest.raises(Refused, match=r"internal address 127\.0\.0\.1"):
        await checked_addresses("127.0.0.1", 443, ())
    with pytest.raises(Refused, match="internal address ::1"):
        await checked_addresses("::1", 443, ())
    with pytest.raises(Refused, match="port 22"):
        await checked_addresses("github.com", 22, ())
    with pytest.raises(Refused, match="not in SANDBOX_SETUP_ALLOWED_HOSTS"):
        await checked_addresses("evil.example", 443, ("pypi.org", "*.pythonhosted.org"))


async def test_a_name_resolving_to_the_host_is_refused() -> None:
    """`localhost` (from /etc/hosts) is what a rebinding name looks like: refused for its address."""
    with pytest.raises(Refused, match="internal address"):
        await checked_addresses("localhost", 443, ())


@pytest.fixture(scope="module")
def proxy() -> EgressProxy:
    return egress.shared_proxy(())


@pytest.fixture(scope="module")
def narrow_proxy() -> EgressProxy:
    return egress.shared_proxy(("*.allowed.example",))


class Listener:
    """A host service on 127.0.0.1 that counts connections: the proxy must never open one."""

    def __init__(self) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen()
        self.port = self.socket.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            self.connections += 1
            connection.close()


async def ask(proxy: EgressProxy, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(request)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), timeout=30)
    writer.close()
    return answer


@pytest.mark.parametrize(
    ("request_line", "reason"),
    [
        ("CONNECT 127.0.0.1:{port} HTTP/1.1", "port {port} is not allowed"),
        ("CONNECT localhost:443 HTTP/1.1", "internal address"),
        ("CONNECT [::1]:443 HTTP/1.1", "internal address ::1"),
        ("CONNECT 169.254.169.254:443 HTTP/1.1", "internal address 169.254.169.254"),
        ("CONNECT 10.0.0.1:443 HTTP/1.1", "internal address 10.0.0.1"),
        ("GET http://127.0.0.1:{port}/simple/ HTTP/1.1", "only HTTPS through CONNECT"),
    ],
)
async def test_the_proxy_refuses_the_host_with_a_403(
    proxy: EgressProxy, request_line: str, reason: str
) -> None:
    listener = Listener()
    try:
        line = request_line.format(port=listener.port)
        answer = await ask(proxy, f"{line}\r\nHost: x\r\n\r\n".encode())
    finally:
        listener.socket.close()

    assert answer.startswith(b"HTTP/1.1 403 Forbidden\r\n"), answer
    assert reason.format(port=listener.port).encode() in answer
    assert listener.connections == 0


async def test_the_allow_list_is_checked_first(narrow_proxy: EgressProxy, proxy: EgressProxy) -> None:
    answer = await ask(narrow_proxy, b"CONNECT pypi.org:443 HTTP/1.1\r\n\r\n")

    assert answer.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert b"pypi.org is not in SANDBOX_SETUP_ALLOWED_HOSTS" in answer
    assert narrow_proxy.port != proxy.port
    assert egress.shared_proxy(()) is proxy  # one proxy per allow-list and process


async def test_a_malformed_request_is_refused(proxy: EgressProxy) -> None:
    assert (await ask(proxy, b"CONNECT nonsense HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 403")
    assert (await ask(proxy, b"\xff" * 20000)).startswith(b"HTTP/1.1 400")
