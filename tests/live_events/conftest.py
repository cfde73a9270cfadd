"""Fixtures of the LIVE_EVENTS tests: one local SQS server (MiniStack) per session, a fresh
queue per test, a small sandbox institution."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from courseinv.sandbox.institution import Institution, InstitutionSpec
from courseinv.sandbox.sqs import SqsServer, sqs_server


@pytest.fixture(scope="session")
def sqs() -> Iterator[SqsServer]:
    with sqs_server() as server:
        yield server


@pytest.fixture
def queue_url(sqs: SqsServer) -> str:
    """A new, empty queue (30 s visibility timeout)."""
    return sqs.create_queue(f"live-{uuid.uuid4().hex[:12]}")


@pytest.fixture(scope="session")
def institution() -> Institution:
    return Institution.generate(InstitutionSpec.sized(40, seed=7))
