"""Fixtures shared by the HTTP layer tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.http_client.servers import ScriptedServer


@pytest.fixture(scope="module")
def shared_server() -> Iterator[ScriptedServer]:
    """One scripted server per test module (starting one per test is slow)."""
    with ScriptedServer() as s:
        yield s


@pytest.fixture
def server(shared_server: ScriptedServer) -> ScriptedServer:
    """The module's scripted server, with its script and counters reset."""
    shared_server.reset()
    return shared_server
