"""A round-robin TCP proxy on one port of 127.0.0.1, the way a load balancer puts replicas behind one
address: each new connection goes to the next backend in turn, and `served` records which."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator


class RoundRobinProxy:
    def __init__(self, backends: list[tuple[str, int]]) -> None:
        self._next = itertools.cycle(range(len(backends)))
        self.backends = backends
        self.served: list[int] = []  # the backend's index, per connection, in the order they came
        self.port = 0

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(ConnectionError, OSError):
            writer.close()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        index = next(self._next)
        self.served.append(index)
        host, port = self.backends[index]
        backend_reader, backend_writer = await asyncio.open_connection(host, port)
        await asyncio.gather(
            self._pipe(client_reader, backend_writer), self._pipe(backend_reader, client_writer)
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.asynccontextmanager
async def round_robin_proxy(backends: list[tuple[str, int]]) -> AsyncIterator[RoundRobinProxy]:
    proxy = RoundRobinProxy(backends)
    server = await asyncio.start_server(proxy._serve, "127.0.0.1", 0)
    proxy.port = server.sockets[0].getsockname()[1]
    async with server:
        yield proxy
