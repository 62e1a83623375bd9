"""A TCP proxy on 127.0.0.1 for tests: put it between a client and a server, then cut the network.

Bytes go both ways untouched (PostgreSQL's protocol, COPY streams, TLS alike), with flow control: while one
side cannot take more, the other side is not read. ``cut()`` resets every open connection, both sides, with
an RST, and resets new ones as soon as they are accepted, until ``restore()``; the listening port stays the
same. Standard library only: an asyncio loop in one daemon thread; use ``with`` or start()/stop().
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections.abc import Callable, Coroutine
from contextlib import suppress
from types import TracebackType
from typing import Any, TypeVar

_T = TypeVar("_T")
_LINGER_0 = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends an RST and drops unsent data
_CALL_TIMEOUT_S = 10.0


def _reset(transport: asyncio.BaseTransport) -> None:
    """Close at once with an RST (the socket is closed on the loop's next turn)."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_0)
    transport.abort()


class _End(asyncio.Protocol):
    """One socket of a link; what it receives is written to the other end."""

    def __init__(self, link: _Link, on_made: Callable[[], None]) -> None:
        self.link = link
        self.on_made = on_made
        self.transport: asyncio.Transport | None = None
        self.peer: _End | None = None
        self.eof = False  # this end will send nothing more

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.on_made()

    def data_received(self, data: bytes) -> None:
        if self.peer is not None:
            self.peer.write(data)

    def eof_received(self) -> bool:
        """Pass the half-close on; once both ends have sent theirs, the link is done."""
        self.eof = True
        if self.peer is not None and self.peer.eof:
            self.link.close(reset=False)
        elif self.peer is not None:
            self.peer.write_eof()
        return True  # keep the other direction open

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.link.close(reset=exc is not None)

    def pause_writing(self) -> None:
        if self.peer is not None:
            self.peer.pause_reading(True)

    def resume_writing(self) -> None:
        if self.peer is not None:
            self.peer.pause_reading(False)

    def pause_reading(self, pause: bool) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if pause:
            transport.pause_reading()
        else:
            transport.resume_reading()

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def write_eof(self) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing() and transport.can_write_eof():
            transport.write_eof()

    def close(self, *, reset: bool) -> None:
        transport = self.transport
        if transport is None:
            return
        if reset:
            _reset(transport)
        else:
            transport.close()  # after the buffered data


class _Link:
    """One proxied connection: the client's socket (accepted) and ours to the target (connected)."""

    def __init__(self, proxy: TcpProxy) -> None:
        self.proxy = proxy
        self.client = _End(self, self._accepted)
        self.server = _End(self, self._connected)
        self.client.peer, self.server.peer = self.server, self.client
        self.closed = False

    def _accepted(self) -> None:
        self.proxy._accepted(self)

    def _connected(self) -> None:
        """The target answered: start reading the client (or hang up, if cut in the meantime)."""
        if self.closed:
            self.server.close(reset=True)
        else:
            self.client.pause_reading(False)

    def close(self, *, reset: bool) -> None:
        if self.closed:
            return
        self.closed = True
        self.proxy._links.discard(self)
        self.client.close(reset=reset)
        self.server.close(reset=reset)


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to (``target_host``, ``target_port``) until stop().

    ``port`` is picked at the first start() and kept: across cut()/restore() and across stop()/start().
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = 0  # the listening port, known once started
        self.is_cut = False
        self.connections_total = 0  # connections accepted, whether forwarded or reset
        self._links: set[_Link] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None

    # --------------------------------------------------------------------------------- life cycle

    def start(self) -> TcpProxy:
        if self._loop is not None:
            return self
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=_run, args=(self._loop,), name="tcp-proxy", daemon=True)
        self._thread.start()
        try:
            self._call(self._listen())
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop listening, reset every connection, end the thread and close the loop."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            self._call(self._shutdown())
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            self._loop = self._thread = None

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    # --------------------------------------------------------------------------------- network

    def cut(self) -> None:
        """Reset every open connection (both sides) and every new one, until restore()."""
        self._call(self._cut())

    def restore(self) -> None:
        """Accept and forward again."""
        self._call(self._restore())

    # --------------------------------------------------------------------------------- on the loop

    def _call(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        """Run ``coroutine`` on the proxy's loop and wait for it."""
        if self._loop is None:
            coroutine.close()
            raise RuntimeError("the proxy is not running: use it in a with block or call start()")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(_CALL_TIMEOUT_S)

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        bind_port = self.port  # a restarted proxy listens on its old port again
        self._server = await loop.create_server(lambda: _Link(self).client, "127.0.0.1", bind_port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _cut(self) -> None:
        self.is_cut = True
        self._reset_all()
        await asyncio.sleep(0)  # the aborted sockets are closed (and the RSTs sent) on this turn

    async def _restore(self) -> None:
        self.is_cut = False

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self._reset_all()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.sleep(0)

    def _reset_all(self) -> None:
        for link in list(self._links):
            link.close(reset=True)

    def _accepted(self, link: _Link) -> None:
        """A client connected: reset it if cut, else connect to the target before reading it."""
        self.connections_total += 1
        if self.is_cut:
            link.close(reset=True)
            return
        self._links.add(link)
        link.client.pause_reading(True)
        task = asyncio.get_running_loop().create_task(self._connect(link))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self, link: _Link) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.create_connection(lambda: link.server, self.target_host, self.target_port)
        except OSError:
            link.close(reset=True)  # the target refused: so does the proxy


def _run(loop: asyncio.AbstractEventLoop) -> None:
    """The proxy's thread: run the loop until stop(), then close it."""
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
