"""Fixtures starting the loopback servers (loopback.py); each is stopped when its test ends."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator

import pytest

from support.acme_loopback import AlpnServer, DnsServer, HttpServer


@pytest.fixture
def http_server() -> Iterator[Callable[..., HttpServer]]:
    started: list[HttpServer] = []

    def start(host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> HttpServer:
        server = HttpServer(host, tls)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def alpn_server() -> Iterator[Callable[..., AlpnServer]]:
    started: list[AlpnServer] = []

    def start(context: ssl.SSLContext, host: str = "127.0.0.1") -> AlpnServer:
        server = AlpnServer(context, host)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    server = DnsServer()
    yield server
    server.stop()
