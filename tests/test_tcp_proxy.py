"""The TCP proxy forwards PostgreSQL transparently and cuts the network on demand, against a real server."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import suppress

import psycopg
import pytest
from sqlalchemy.engine import make_url

from tests.tcp_proxy import TcpProxy

FAST_S = 1.0  # a cut must show within this, not after a timeout
APP = "tcp-proxy-test"


@pytest.fixture
def proxy(pg_admin_url: str) -> Iterator[TcpProxy]:
    url = make_url(pg_admin_url)
    with TcpProxy(url.host or "127.0.0.1", url.port or 5432) as running:
        yield running


def conninfo(pg_admin_url: str, port: int | None = None) -> str:
    """libpq's form of the admin URL; with ``port``, pointed at that port on 127.0.0.1 (the proxy)."""
    url = make_url(pg_admin_url).set(drivername="postgresql")
    if port is not None:
        url = url.set(host="127.0.0.1", port=port)
    return url.render_as_string(hide_password=False)


def connect(pg_admin_url: str, proxy: TcpProxy) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(
        conninfo(pg_admin_url, proxy.port), connect_timeout=2, autocommit=True, application_name=APP
    )


def backends(pg_admin_url: str) -> int:
    """Server sessions opened through the proxy (seen directly, not through it)."""
    with psycopg.connect(conninfo(pg_admin_url)) as direct:
        row = direct.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [APP]
        ).fetchone()
    assert row is not None
    return int(row[0])


def wait_for_no_backends(pg_admin_url: str) -> None:
    deadline = time.monotonic() + FAST_S
    while backends(pg_admin_url) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert backends(pg_admin_url) == 0


def test_forwards_queries_and_large_copies(pg_admin_url: str, proxy: TcpProxy) -> None:
    with connect(pg_admin_url, proxy) as connection:
        assert connection.execute("SELECT 1").fetchone() == (1,)
        connection.execute("CREATE TEMPORARY TABLE blob (n int, text text)")
        line = "x" * 1000
        with connection.cursor().copy("COPY blob (n, text) FROM STDIN") as copy:
            for n in range(10_000):  # about 10 MB in
                copy.write_row((n, line))
        received = 0
        with connection.cursor().copy("COPY (SELECT n, text FROM blob) TO STDOUT") as copy:
            for block in copy:  # and out again
                received += len(block)
        assert received > 10_000 * 1000
        assert connection.execute("SELECT count(*), sum(length(text)) FROM blob").fetchone() == (
            10_000,
            10_000_000,
        )
    assert proxy.connections_total == 1
    wait_for_no_backends(pg_admin_url)  # a clean close passes through too


def test_cut_resets_open_connections_and_refuses_new_ones(pg_admin_url: str, proxy: TcpProxy) -> None:
    port = proxy.port
    connection = connect(pg_admin_url, proxy)
    try:
        assert connection.execute("SELECT 1").fetchone() == (1,)
        proxy.cut()
        assert proxy.is_cut
        started = time.monotonic()
        with pytest.raises(psycopg.OperationalError):
            connection.execute("SELECT 1")
        assert time.monotonic() - started < FAST_S
    finally:
        connection.close()
    wait_for_no_backends(pg_admin_url)  # the server's side was reset too

    started = time.monotonic()
    with pytest.raises(psycopg.OperationalError):
        connect(pg_admin_url, proxy)
    assert time.monotonic() - started < FAST_S

    proxy.restore()
    assert not proxy.is_cut
    assert proxy.port == port
    with connect(pg_admin_url, proxy) as again:
        assert again.execute("SELECT 1").fetchone() == (1,)
    assert proxy.connections_total >= 3  # libpq may try twice while cut (with, then without, SSL)


def test_stop_closes_everything(pg_admin_url: str) -> None:
    url = make_url(pg_admin_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432).start()
    connection = connect(pg_admin_url, proxy)
    try:
        assert connection.execute("SELECT 1").fetchone() == (1,)
        proxy.stop()
        with pytest.raises(psycopg.OperationalError):
            connection.execute("SELECT 1")
    finally:
        connection.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=FAST_S).close()
    with pytest.raises(RuntimeError):
        proxy.cut()
    proxy.stop()  # twice is fine
    assert not [thread for thread in threading.enumerate() if thread.name == "tcp-proxy"]
    wait_for_no_backends(pg_admin_url)


def test_unreachable_target_closes_the_client() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        closed_port = unused.getsockname()[1]  # nothing listens there once closed
    with (
        TcpProxy("127.0.0.1", closed_port) as proxy,
        socket.create_connection(("127.0.0.1", proxy.port)) as client,
    ):
        client.settimeout(FAST_S)
        with suppress(ConnectionResetError):  # an RST, or at least an end of stream: no hang
            assert client.recv(1) == b""
    assert proxy.connections_total == 1


def test_cut_in_the_middle_of_a_copy(pg_admin_url: str, proxy: TcpProxy) -> None:
    connection = connect(pg_admin_url, proxy)
    try:
        connection.execute("CREATE TEMPORARY TABLE blob (text text)")
        cut_at = 0.0
        cursor = connection.cursor()
        with pytest.raises(psycopg.OperationalError), cursor.copy("COPY blob (text) FROM STDIN") as copy:
            for n in range(50_000):  # 50 MB if nothing stopped it
                copy.write_row(("x" * 1000,))
                if n == 2_000:
                    proxy.cut()
                    cut_at = time.monotonic()
        assert time.monotonic() - cut_at < FAST_S
    finally:
        connection.close()
    wait_for_no_backends(pg_admin_url)
