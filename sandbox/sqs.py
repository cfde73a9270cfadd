"""A local SQS-compatible server for tests, the demo and benchmarks (development only).

Runs MiniStack (``ministack`` from PyPI, an open-source local AWS emulator) with only its
SQS service, in a child process on 127.0.0.1, spoken to by unmodified boto3. Measured
here (2 busy cores): moto's server spends per call time that grows with the queue's
length (158 queued messages: 3 s per receive; 200 messages drained at 14/s), MiniStack
drained 2,000 queued messages at 79/s and 200 at 123/s. Callers still keep queues
moderate (the benchmark tops its queue up while it drains).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

REGION = "us-east-1"
# The local server accepts any credentials; these are obviously fake ones.
ACCESS_KEY = "AKIASANDBOXLOCALONLY"
SECRET_KEY = "sandbox-secret-not-a-real-key"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class SqsServer:
    """A running local SQS server and a boto3 client for it."""

    url: str
    process: subprocess.Popen

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "sqs",
            region_name=REGION,
            endpoint_url=self.url,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def create_queue(self, name: str, *, visibility_timeout: int = 30) -> str:
        reply = self.client().create_queue(
            QueueName=name, Attributes={"VisibilityTimeout": str(visibility_timeout)}
        )
        return reply["QueueUrl"]

    def config(self, queue_url: str, **extra: Any) -> dict[str, Any]:
        """The LIVE_EVENTS config section pointing the job at ``queue_url`` here."""
        return {
            "SQS_QUEUE_URL": queue_url,
            "AWS_REGION": REGION,
            "SQS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "WAIT_SECONDS": 1,
            **extra,
        }

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def sqs_server(*, timeout: float = 60.0) -> Iterator[SqsServer]:
    """Start a local SQS server on a free port; stop it on exit."""
    port = _free_port()
    env = {
        **os.environ,
        "GATEWAY_PORT": str(port),
        "BIND_HOST": "127.0.0.1",
        "SERVICES": "sqs",
        "LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "ministack"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    server = SqsServer(f"http://127.0.0.1:{port}", process)
    try:
        _wait_listening(port, process, timeout)
        yield server
    finally:
        server.stop()


def _wait_listening(port: int, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the local SQS server exited with code {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the local SQS server did not listen on port {port} in {timeout:.0f} s")


def send_all(client: Any, queue_url: str, bodies: Iterable[str]) -> int:
    """Send ``bodies`` in batches of 10; returns how many were sent."""
    sent = 0
    chunk: list[str] = []
    for body in bodies:
        chunk.append(body)
        if len(chunk) == 10:
            sent += _send(client, queue_url, chunk)
            chunk = []
    if chunk:
        sent += _send(client, queue_url, chunk)
    return sent


def _send(client: Any, queue_url: str, bodies: list[str]) -> int:
    entries = [{"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies)]
    reply = client.send_message_batch(QueueUrl=queue_url, Entries=entries)
    if reply.get("Failed"):
        raise RuntimeError(f"the local SQS server refused {len(reply['Failed'])} messages")
    return len(bodies)


def queue_depth(client: Any, queue_url: str) -> tuple[int, int]:
    """(visible, in flight) messages of a queue."""
    attrs = client.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(
        attrs["ApproximateNumberOfMessagesNotVisible"]
    )
