"""Report attachments: download (token only to Canvas) and read CSVs by header name.

Download (``AttachmentDownloader``): the attachment URL is on the Canvas host and
answers a redirect to a file store on another host with a signed query string. Every
hop is a separate request with redirects *not* followed automatically: the
``Authorization`` header is added only when the hop's origin (scheme, host, port) is the
configured Canvas origin, so the token never reaches the file store. The session holds
no credentials and no cookies. Each hop is recorded in ``stats`` (the job passes its
Canvas client's ``HttpStats``, so the run's HTTP statistics count it: the Canvas hop under
``canvas``, the file store's under ``report-files``). The body streams to a file in 1 MiB
pieces. Connection errors, timeouts and 5xx restart the chain (signed URLs expire)
with exponential backoff, up to ``max_attempts``; Canvas's throttle (429, or 403 "Rate
Limit Exceeded" on the Canvas hop: the download shares the token's bucket with the REST
reads still going on) restarts it on its own budget, as every Canvas call does; other
4xx fail at once. Errors name
the host-relative path only, never the query string (it holds the signature) or the token.

Reading (``ReportFile``): a zip of ``<name>.csv`` members, or a single CSV when the run
selected exactly one. ``batches(name, required, optional)`` checks the header first
(missing required column: ``ReportFormatError`` naming it; extra columns are ignored).
``batches`` streams Arrow record batches (Arrow's multithreaded CSV reader, ids typed as
int64 while parsing), ``chunks`` the same as string DataFrames; memory holds one block
of text at a time.
"""

from __future__ import annotations

import csv
import http.cookiejar
import io
import logging
import random
import re
import time
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO
from urllib.parse import urljoin, urlsplit

import pandas as pd
import pyarrow as pa
import requests
from courseinv.http_client.canvas import canvas_classify
from courseinv.http_client.errors import RetriesExhausted, UnexpectedPayload, permanent_error
from courseinv.http_client.session import TRANSIENT_EXCEPTIONS, RetryPolicy, describe_exception
from courseinv.http_client.stats import HttpStats
from pyarrow import csv as pa_csv

log = logging.getLogger(__name__)

REDIRECTS = (301, 302, 303, 307, 308)
PIECE = 1 << 20
BLOCK_BYTES = 4 << 20  # Arrow parses a CSV in blocks of this size
THROTTLE_POLICY = RetryPolicy()  # a throttled Canvas hop waits as every Canvas call does


class ReportFormatError(Exception):
    """A report file that cannot be read as expected (message is log-safe)."""


def origin(url: str) -> tuple[str, str]:
    split = urlsplit(url)
    return split.scheme.lower(), split.netloc.lower()


class AttachmentDownloader:
    """Streams report attachments to files (see the module docstring)."""

    def __init__(
        self,
        canvas_url: str,
        token: str,
        *,
        max_attempts: int = 3,
        timeout: tuple[float, float] = (10.0, 300.0),
        max_redirects: int = 5,
        backoff_base: float = 0.5,
        stats: HttpStats | None = None,
    ) -> None:
        self._canvas = origin(canvas_url)
        self._token = token
        self.max_attempts = max(1, max_attempts)
        self.timeout = timeout
        self.max_redirects = max_redirects
        self.backoff_base = backoff_base
        self.requests = 0
        self.stats = stats if stats is not None else HttpStats()
        self._http = requests.Session()
        self._http.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        self._http.trust_env = False  # no .netrc credentials either

    def __repr__(self) -> str:
        return f"AttachmentDownloader(canvas={self._canvas[1]!r}, token=<redacted>)"

    def close(self) -> None:
        self._http.close()

    def download(self, url: str, dest: Path) -> int:
        """Save the file behind ``url`` to ``dest``; returns its size in bytes."""
        failures = throttles = 0
        while True:
            try:
                return self._follow(url, dest)
            except _Transient as exc:
                if exc.throttled:
                    throttles += 1
                    delay = self._throttled(exc, throttles, failures)
                else:
                    failures += 1
                    delay = self._failed(exc, failures, throttles)
            time.sleep(delay)

    def _failed(self, exc: _Transient, failures: int, throttles: int) -> float:
        """The wait before the next attempt after a fault (or RetriesExhausted)."""
        if failures >= self.max_attempts:
            self.stats.add("gave_up", api="report-files")
            raise RetriesExhausted("GET", exc.path, failures + throttles, exc.reason)
        self.stats.add("retries", api="report-files")
        delay = random.uniform(0, self.backoff_base * 2 ** (failures - 1))
        log.warning(
            "Report download GET %s failed (%s); attempt %d/%d in %.1fs",
            exc.path,
            exc.reason,
            failures + 1,
            self.max_attempts,
            delay,
        )
        return delay

    def _throttled(self, exc: _Transient, throttles: int, failures: int) -> float:
        """The wait after Canvas's throttle refused the hop: its own, larger budget, as
        for every Canvas call (``RetryPolicy.max_throttle_retries``)."""
        if throttles > THROTTLE_POLICY.max_throttle_retries:
            self.stats.add("gave_up", api="report-files")
            raise RetriesExhausted("GET", exc.path, failures + throttles, exc.reason)
        self.stats.add("throttled", api="report-files")
        delay = random.uniform(0, THROTTLE_POLICY.throttle_ceiling(throttles))
        log.info("Report download GET %s throttled; waiting %.1fs", exc.path, delay)
        return delay

    def _follow(self, url: str, dest: Path) -> int:
        for _ in range(self.max_redirects + 1):
            path = urlsplit(url).path
            # The one place the token is attached: only for the Canvas origin itself.
            same = origin(url) == self._canvas
            headers = {"Authorization": f"Bearer {self._token}"} if same else {}
            self.requests += 1
            api = "canvas" if same else "report-files"
            try:
                response = self._http.get(
                    url, headers=headers, allow_redirects=False, stream=True, timeout=self.timeout
                )
            except TRANSIENT_EXCEPTIONS as exc:
                self.stats.record_request(api, "GET", path, None)
                raise _Transient(path, describe_exception(exc)) from None
            with response:
                status = response.status_code
                self.stats.record_request(api, "GET", path, status)
                if status in REDIRECTS:
                    location = response.headers.get("Location")
                    if not location:
                        raise UnexpectedPayload("GET", path, f"HTTP {status} without Location")
                    url = urljoin(url, location)
                    continue
                if status == 429 or (same and canvas_classify(response) is not None):
                    raise _Transient(path, f"throttled (HTTP {status})", throttled=True)
                if status >= 500:
                    raise _Transient(path, f"HTTP {status}")
                if status >= 400:
                    raise permanent_error("GET", path, status, response.reason or "")
                try:
                    return _save(response, dest)
                except TRANSIENT_EXCEPTIONS as exc:
                    raise _Transient(path, describe_exception(exc)) from None
        raise UnexpectedPayload("GET", urlsplit(url).path, "too many redirects")


class _Transient(Exception):
    """A hop that may succeed when the chain is started again."""

    def __init__(self, path: str, reason: str, *, throttled: bool = False) -> None:
        super().__init__(reason)
        self.path, self.reason, self.throttled = path, reason, throttled


def _save(response: requests.Response, dest: Path) -> int:
    size = 0
    with dest.open("wb") as out:
        for piece in response.iter_content(PIECE):
            out.write(piece)
            size += len(piece)
    expected = response.headers.get("Content-Length")
    if expected is not None and expected.isdigit() and int(expected) != size:
        raise _Transient(urlsplit(response.url).path, f"truncated ({size} of {expected} bytes)")
    return size


class ReportFile:
    """A downloaded report: a zip of ``<name>.csv`` or one CSV (``single`` names it)."""

    def __init__(self, path: Path, *, single: str | None = None, label: str = "report") -> None:
        self.path = path
        self.label = label
        self.single = single
        self.is_zip = zipfile.is_zipfile(path)

    @contextmanager
    def open(self, name: str) -> Iterator[IO[str]]:
        """A text stream of ``<name>.csv`` (BOM tolerated)."""
        if self.is_zip:
            with zipfile.ZipFile(self.path) as zf:
                member = _member(zf.namelist(), name)
                if member is None:
                    raise ReportFormatError(f"{self.label}: the zip has no {name}.csv")
                with zf.open(member) as raw:
                    yield io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
            return
        if self.single != name:
            raise ReportFormatError(
                f"{self.label}: a single CSV, not a zip, but {name}.csv was expected too"
            )
        with self.path.open(encoding="utf-8-sig", newline="") as stream:
            yield stream

    def header(self, name: str) -> list[str]:
        with self.open(name) as stream:
            return [h.strip() for h in next(csv.reader(stream), [])]

    def batches(
        self,
        name: str,
        required: Sequence[str],
        optional: Sequence[str] = (),
        *,
        ints: Sequence[str] = (),
        chunk_rows: int = 50_000,
    ) -> Iterator[pa.RecordBatch]:
        """Arrow batches of ``required`` (+ those of ``optional`` present): ``ints`` as
        int64 (an empty or non-integer value is a ``ReportFormatError``), the rest as
        strings ("" stays ""). Parsed by Arrow's streaming reader, off the GIL."""
        header = self.header(name)
        missing = [c for c in required if c not in header]
        if missing:
            raise ReportFormatError(
                f"{self.label}: {name}.csv lacks column(s) {', '.join(missing)} "
                f"(it has {len(header)} columns)"
            )
        wanted = [c for c in header if c in set(required) | set(optional)]
        types = {c: pa.int64() if c in ints else pa.string() for c in wanted}
        with self._binary(name) as raw:
            try:
                for batch in _arrow_batches(raw, header, wanted, types):
                    for column in ints:
                        if column in types and batch.column(column).null_count:
                            raise ReportFormatError(
                                f"{self.label}: {name}.csv column {column} has an empty value"
                            )
                    for start in range(0, batch.num_rows, chunk_rows):
                        yield batch.slice(start, chunk_rows)
            except pa.ArrowInvalid as exc:
                raise ReportFormatError(
                    f"{self.label}: {name}.csv: {_arrow_reason(exc, header)}"
                ) from None

    def chunks(
        self,
        name: str,
        required: Sequence[str],
        optional: Sequence[str] = (),
        *,
        chunk_rows: int = 50_000,
    ) -> Iterator[pd.DataFrame]:
        """String DataFrames of ``required`` (+ ``optional`` present), chunk by chunk."""
        for batch in self.batches(name, required, optional, chunk_rows=chunk_rows):
            yield batch.to_pandas()

    @contextmanager
    def _binary(self, name: str) -> Iterator[IO[bytes]]:
        """The raw bytes of ``<name>.csv`` (``open`` has checked that it exists)."""
        if self.is_zip:
            with zipfile.ZipFile(self.path) as zf, zf.open(_member(zf.namelist(), name)) as raw:
                yield raw
            return
        with self.path.open("rb") as raw:
            yield raw


def _arrow_batches(
    raw: IO[bytes], header: list[str], wanted: list[str], types: dict[str, pa.DataType]
) -> Iterator[pa.RecordBatch]:
    """Arrow's streaming CSV reader over ``raw`` (header line skipped, names given)."""
    reader = pa_csv.open_csv(
        raw,
        read_options=pa_csv.ReadOptions(column_names=header, skip_rows=1, block_size=BLOCK_BYTES),
        parse_options=pa_csv.ParseOptions(newlines_in_values=True),
        convert_options=pa_csv.ConvertOptions(
            include_columns=wanted,
            column_types=types,
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    )
    yield from reader


def _arrow_reason(exc: pa.ArrowInvalid, header: Sequence[str]) -> str:
    """Arrow's first line, its column number turned into the column's name."""
    text = str(exc).splitlines()[0][:300]
    found = re.search(r"CSV column #(\d+)", text)
    if found and int(found.group(1)) < len(header):
        return f"column {header[int(found.group(1))]}: {text}"
    return text


def _member(names: Sequence[str], name: str) -> str | None:
    target = f"{name}.csv"
    return next((n for n in names if n == target or n.endswith("/" + target)), None)
