"""The signing keys of Canvas Live Events: a JWKS fetched over HTTPS and cached.

Canvas publishes its Live Events keys as a JWKS (previous, current and next key,
rotated monthly). ``JwksCache`` holds the RSA public keys by ``kid``:

- fetched at start (``refresh``), refreshed lazily once older than ``ttl`` (a failed
  refresh keeps the old keys: a JWKS outage must not refuse tokens we can verify);
- on an unknown ``kid``: refetched once, single-flight, and at most once per
  ``min_refetch_interval`` seconds, so tokens with invented key ids cannot make the
  receiver hammer the JWKS endpoint. A kid still unknown after a fetch made since it
  was first seen is refused (``UnknownKey``); one that arrives while a refetch is not
  yet allowed gets ``KeysUnavailable`` (503: the sender retries), so a genuine key
  rotation right after a fetch loses nothing;
- only RSA signing keys are kept (``kty`` RSA, ``use`` sig or absent, ``alg`` RS256 or
  absent, at least 2048 bits); anything else in the set is skipped and counted.
"""

from __future__ import annotations

import asyncio
import logging
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from joserfc.jwk import RSAKey

log = logging.getLogger(__name__)

MIN_RSA_BITS = 2048
MAX_TRACKED_KIDS = 10_000

Fetch = Callable[[str], Any]  # url -> parsed JSON document (blocking; run in a thread)


class KeysUnavailable(Exception):
    """The JWKS could not be fetched and the key needed is not cached (answer 503)."""


class UnknownKey(Exception):
    """No key with this ``kid`` is published, even after a refetch (answer 401)."""


@dataclass(frozen=True)
class KeySet:
    """RSA public keys by ``kid`` and how many published entries were skipped."""

    keys: Mapping[str, RSAKey]
    skipped: int = 0


def parse_jwks(document: Any) -> KeySet:
    """The usable RSA signing keys of a JWKS document; raises ValueError if it is not one."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWKS document (no 'keys' list)")
    keys: dict[str, RSAKey] = {}
    skipped = 0
    for entry in document["keys"]:
        key = _rsa_signing_key(entry)
        if key is None:
            skipped += 1
        else:
            keys[entry["kid"]] = key
    return KeySet(keys, skipped)


def _rsa_signing_key(entry: Any) -> RSAKey | None:
    if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
        return None
    if entry.get("kty") != "RSA" or entry.get("use", "sig") != "sig":
        return None
    if entry.get("alg", "RS256") != "RS256":
        return None
    public = {k: entry[k] for k in ("kty", "n", "e") if k in entry}  # never a leaked "d"
    try:
        with warnings.catch_warnings():  # joserfc warns of small keys; they are skipped below
            warnings.simplefilter("ignore")
            key = RSAKey.import_key(public)
    except Exception:  # malformed numbers, missing n/e: skip this entry only
        return None
    return key if key.raw_value.key_size >= MIN_RSA_BITS else None


class JwksCache:
    """Keys of one JWKS URL, safe for concurrent use from one asyncio event loop."""

    def __init__(
        self,
        url: str,
        fetch: Fetch,
        *,
        ttl: float = 3600.0,
        min_refetch_interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self._fetch = fetch
        self._ttl = ttl
        self._min_interval = min_refetch_interval
        self._clock = clock
        self._keys: Mapping[str, RSAKey] = {}
        self._fetched_at: float | None = None  # last successful fetch
        self._attempted_at: float | None = None  # last attempt, successful or not
        self._first_seen: dict[str, float] = {}  # unknown kids -> when first seen
        self._lock = asyncio.Lock()
        self.fetches = 0  # attempts, for /healthz and tests

    @property
    def kids(self) -> list[str]:
        return sorted(self._keys)

    async def refresh(self) -> None:
        """Fetch the JWKS now; raises KeysUnavailable (old keys kept) on failure."""
        async with self._lock:
            await self._refresh_locked()

    async def key(self, kid: str) -> RSAKey:
        """The public key for ``kid``: cached, refreshed when stale, refetched if unknown."""
        key = self._keys.get(kid)
        if key is not None and not self._stale():
            return key
        async with self._lock:  # one fetch at a time; waiters see its result
            if self._stale() and self._may_refetch():
                try:
                    await self._refresh_locked()
                except KeysUnavailable:
                    if kid not in self._keys:
                        raise
            elif kid not in self._keys:
                if self._may_refetch():
                    await self._refresh_locked()
                elif self._unchecked(kid):  # rate-limited: ask the sender to come back
                    raise KeysUnavailable("key id not in the cached JWKS; refetch due shortly")
        key = self._keys.get(kid)
        if key is not None:
            return key
        if self._last_attempt_failed():  # we cannot tell a new key from a forged one
            raise KeysUnavailable("JWKS unavailable and the key id is not cached")
        raise UnknownKey("no published key has this key id")

    def _unchecked(self, kid: str) -> bool:
        """True while no successful fetch has happened since ``kid`` was first seen."""
        if len(self._first_seen) > MAX_TRACKED_KIDS:  # a flood of invented ids
            self._first_seen.clear()
        seen = self._first_seen.setdefault(kid, self._clock())
        return self._fetched_at is None or seen >= self._fetched_at

    def _stale(self) -> bool:
        return self._fetched_at is None or self._clock() - self._fetched_at >= self._ttl

    def _last_attempt_failed(self) -> bool:
        return self._attempted_at is not None and (
            self._fetched_at is None or self._attempted_at > self._fetched_at
        )

    def _may_refetch(self) -> bool:
        last = self._attempted_at
        return last is None or self._clock() - last >= self._min_interval

    async def _refresh_locked(self) -> None:
        self._attempted_at = self._clock()
        self.fetches += 1
        try:
            document = await asyncio.to_thread(self._fetch, self.url)
            keyset = parse_jwks(document)
        except Exception as exc:
            log.warning("JWKS fetch failed (%s); keeping %d cached key(s)",
                        _reason(exc), len(self._keys))
            raise KeysUnavailable(f"JWKS unavailable: {_reason(exc)}") from None
        self._keys = dict(keyset.keys)
        self._fetched_at = self._attempted_at
        log.info("JWKS: %d signing key(s) (%s), %d entr(ies) skipped",
                 len(self._keys), ", ".join(sorted(self._keys)), keyset.skipped)


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__
