"""The SQS side of LIVE_EVENTS: a boto3 client from config, receive and delete in batches.

boto3 is imported only here, when the job runs. Errors reaching the queue become
``QueueUnavailable`` with the queue URL and the AWS error code (never credentials).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

SQS_BATCH = 10  # SQS's own limit per receive and per delete call


class QueueUnavailable(Exception):
    """The queue could not be reached or refused a call."""


@dataclass(frozen=True)
class Message:
    message_id: str
    receipt_handle: str
    body: str


class Queue:
    """One SQS queue, read with long polling."""

    def __init__(self, section: Mapping[str, Any], *, max_attempts: int = 3) -> None:
        import boto3
        from botocore.config import Config

        self.url = section["SQS_QUEUE_URL"]
        self.wait_seconds = int(section.get("WAIT_SECONDS", 2))
        self.visibility_timeout = int(section.get("VISIBILITY_TIMEOUT", 300))
        keys = {}
        if section.get("AWS_ACCESS_KEY_ID"):
            keys = {
                "aws_access_key_id": section["AWS_ACCESS_KEY_ID"],
                "aws_secret_access_key": section["AWS_SECRET_ACCESS_KEY"],
            }
        config = Config(
            retries={"max_attempts": max_attempts, "mode": "standard"},
            connect_timeout=10,
            read_timeout=self.wait_seconds + 20,
            max_pool_connections=16,
            # Requests are built here from fixed shapes; checking each against the API
            # model costs ~10 % of a call's CPU, which is the job's main cost.
            parameter_validation=False,
        )
        self._client = boto3.client(
            "sqs",
            region_name=section.get("AWS_REGION"),
            endpoint_url=section.get("SQS_ENDPOINT_URL"),
            config=config,
            **keys,
        )

    def receive(self, limit: int = SQS_BATCH, *, wait: bool = True) -> list[Message]:
        """Up to ``limit`` (<= 10) messages; long-polls ``WAIT_SECONDS`` when ``wait``."""
        reply = self._call(
            "receive_message",
            QueueUrl=self.url,
            MaxNumberOfMessages=max(1, min(limit, SQS_BATCH)),
            WaitTimeSeconds=self.wait_seconds if wait else 0,
            VisibilityTimeout=self.visibility_timeout,
        )
        return [
            Message(m["MessageId"], m["ReceiptHandle"], m.get("Body", ""))
            for m in reply.get("Messages", [])
        ]

    def delete(self, messages: Sequence[Message]) -> int:
        """Delete ``messages``; returns how many SQS refused (they will come back)."""
        return self._batched("delete_message_batch", messages, {})

    def release(self, messages: Sequence[Message]) -> int:
        """Make ``messages`` visible again at once (their batch was not stored)."""
        return self._batched("change_message_visibility_batch", messages, {"VisibilityTimeout": 0})

    def _batched(self, operation: str, messages: Sequence[Message], extra: dict) -> int:
        failed = 0
        for start in range(0, len(messages), SQS_BATCH):
            chunk = messages[start : start + SQS_BATCH]
            entries = [
                {"Id": str(i), "ReceiptHandle": m.receipt_handle, **extra}
                for i, m in enumerate(chunk)
            ]
            reply = self._call(operation, QueueUrl=self.url, Entries=entries)
            failed += len(reply.get("Failed", []))
        return failed

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self._client, operation)(**kwargs)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "error")
            raise QueueUnavailable(f"SQS {operation} on {self.url} failed: {code}") from None
        except BotoCoreError as error:
            kind = type(error).__name__
            raise QueueUnavailable(f"SQS {operation} on {self.url} failed: {kind}") from None

    def depth(self) -> tuple[int, int]:
        """(visible, in flight) messages: SQS's approximate counts."""
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        reply = self._call("get_queue_attributes", QueueUrl=self.url, AttributeNames=names)
        attrs = reply.get("Attributes", {})
        return int(attrs.get(names[0], 0)), int(attrs.get(names[1], 0))

    def close(self) -> None:
        self._client.close()
