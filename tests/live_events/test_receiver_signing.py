"""JWT verification of signed Live Events against a JWKS served over real HTTP.

The sandbox JWKS server (``sandbox/live_events_signing.py``) publishes the key ring's
public keys; the verifier fetches them with the project's HTTP session. Each attack a
forger can mount without the private key is refused with its own reason.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from courseinv.http_client import RetryingSession, RetryPolicy
from courseinv.live_events.jwks import JwksCache, KeysUnavailable, parse_jwks
from courseinv.live_events.jwt_verify import SignedEventVerifier, TokenRefused
from courseinv.sandbox.live_events_signing import (
    JwksServer,
    KeyRing,
    b64url,
    hmac_token,
    new_key,
    unsigned_token,
)

EVENT: dict[str, Any] = {
    "metadata": {"event_name": "course_created", "event_time": "2026-11-30T10:00:00.000Z"},
    "body": {"course_id": "21070000000000056", "name": "Linear Algebra"},
}


@pytest.fixture(scope="module")
def ring() -> KeyRing:
    return KeyRing()


@pytest.fixture
def jwks(ring: KeyRing) -> Iterator[JwksServer]:
    with JwksServer(ring) as server:
        yield server


class Clock:
    """A monotonic clock the test moves by hand, so rate limits do not depend on load."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def verifier_for(server: JwksServer, *, min_refetch: float = 0.0, ttl: float = 3600,
                 clock: Clock | None = None) -> SignedEventVerifier:
    session = RetryingSession(name="jwks", policy=RetryPolicy(max_attempts=1), timeout=(2, 2))
    return SignedEventVerifier(
        JwksCache(server.jwks_url, session.get_json, ttl=ttl, min_refetch_interval=min_refetch,
                  clock=clock or Clock())
    )


def verify(verifier: SignedEventVerifier, token: str) -> dict[str, Any]:
    return asyncio.run(verifier.verify(token))


def refused(verifier: SignedEventVerifier, token: str) -> str:
    with pytest.raises(TokenRefused) as caught:
        verify(verifier, token)
    assert token not in str(caught.value)
    return str(caught.value)


def test_signed_event_verifies_and_registered_claims_are_removed(ring: KeyRing, jwks: JwksServer) -> None:
    verifier = verifier_for(jwks)
    assert verify(verifier, ring.sign(EVENT)) == EVENT
    assert jwks.fetches == 1


def test_every_forgery_is_refused_with_its_reason(ring: KeyRing, jwks: JwksServer) -> None:
    verifier = verifier_for(jwks)
    kid = ring.current.kid
    good = ring.sign(EVENT)
    head, body, sig = good.split(".")
    tampered_claims = b64url(b'{"metadata": {"event_name": "course_created"}, "body": {}}')
    other_key = new_key(kid)  # same kid, a key Canvas never published
    forged_by_other = KeyRing()
    forged_by_other.current = other_key
    reasons = {
        "alg none": refused(verifier, unsigned_token(EVENT, {"alg": "none", "kid": kid})),
        "alg None": refused(verifier, unsigned_token(EVENT, {"alg": "None", "kid": kid})),
        "HS256 with the public key": refused(verifier, hmac_token(EVENT, ring.current.public_pem(), kid)),
        "tampered claims": refused(verifier, f"{head}.{tampered_claims}.{sig}"),
        "signature of another key": refused(verifier, forged_by_other.sign(EVENT)),
        "truncated signature": refused(verifier, f"{head}.{body}.{sig[:-8]}"),
        "empty signature": refused(verifier, f"{head}.{body}."),
        "expired": refused(verifier, ring.sign(EVENT, now=time.time() - 3600, lifetime_s=300)),
        "not yet valid": refused(verifier, ring.sign(EVENT, now=time.time() + 3600)),
        "foreign issuer": refused(verifier, ring.sign(EVENT, issuer="https://evil.example")),
        "no kid": refused(verifier, unsigned_token(EVENT, {"alg": "RS256"}) + "c2ln"),
        "two segments": refused(verifier, f"{head}.{body}"),
        "garbage header": refused(verifier, "!!!." + body + "." + sig),
    }
    assert "only RS256" in reasons["alg none"] and "only RS256" in reasons["alg None"]
    assert "only RS256" in reasons["HS256 with the public key"]
    for name in ("tampered claims", "signature of another key", "truncated signature"):
        assert "signature" in reasons[name], name
    assert "expired" in reasons["expired"]
    assert "not yet valid" in reasons["not yet valid"] or "future" in reasons["not yet valid"]
    assert "'iss'" in reasons["foreign issuer"]
    assert "kid" in reasons["no kid"]
    assert "compact JWT" in reasons["two segments"]
    assert "header" in reasons["garbage header"]


def test_token_without_exp_or_iss_is_accepted(ring: KeyRing, jwks: JwksServer) -> None:
    verifier = verifier_for(jwks)
    token = ring.sign(EVENT, lifetime_s=None)
    assert verify(verifier, token) == EVENT


def test_rotated_key_costs_one_refetch_and_unknown_kids_are_rate_limited() -> None:
    ring = KeyRing(prefix="rotating")
    clock = Clock()
    with JwksServer(ring) as server:
        verifier = verifier_for(server, min_refetch=10, clock=clock)

        async def scenario() -> None:
            await verifier.keys.refresh()
            assert (await verifier.verify(ring.sign(EVENT))) == EVENT
            clock.advance(11)
            ring.rotate()  # the new current key was not published at the first fetch
            tokens = [ring.sign(EVENT) for _ in range(5)]
            results = await asyncio.gather(*(verifier.verify(t) for t in tokens))
            assert results == [EVENT] * 5
            assert server.fetches == 2  # five concurrent requests, one refetch
            # Invented key ids: at most one fetch per interval, however many tokens. The
            # first one seen after the interval is checked (fetch) and refused; the others
            # arrive while a refetch is not allowed: "come back later", not "forged".
            clock.advance(11)
            outcomes = []
            for i in range(20):
                forged = unsigned_token(EVENT, {"alg": "RS256", "kid": f"invented-{i}"}) + "c2ln"
                try:
                    await verifier.verify(forged)
                except (TokenRefused, KeysUnavailable) as exc:
                    outcomes.append(type(exc).__name__)
            assert outcomes == ["TokenRefused"] + ["KeysUnavailable"] * 19
            assert server.fetches == 3
            # Once a fetch has happened since they were first seen, they are refused.
            clock.advance(11)
            for i in range(1, 20):
                forged = unsigned_token(EVENT, {"alg": "RS256", "kid": f"invented-{i}"}) + "c2ln"
                with pytest.raises(TokenRefused, match="unknown key id"):
                    await verifier.verify(forged)
            assert server.fetches == 4
            # The previous key stays published, so its in-flight tokens still verify.
            assert ring.previous is not None

        asyncio.run(scenario())


def test_jwks_outage_keeps_cached_keys_and_refuses_unknown_kid_with_unavailable(ring: KeyRing) -> None:
    with JwksServer(ring) as server:
        verifier = verifier_for(server, min_refetch=0.0, ttl=0.0)  # stale at once

        async def scenario() -> None:
            await verifier.keys.refresh()
            server.down = True
            # Stale but cached: the failed refresh keeps the key, the token verifies.
            assert (await verifier.verify(ring.sign(EVENT))) == EVENT
            stranger = KeyRing(prefix="stranger")
            with pytest.raises(KeysUnavailable):
                await verifier.verify(stranger.sign(EVENT))

        asyncio.run(scenario())


def test_never_fetched_jwks_is_unavailable_not_refused() -> None:
    ring = KeyRing(prefix="nofetch")
    server = JwksServer(ring).start()
    url = server.jwks_url
    server.stop()  # nothing listens there any more
    session = RetryingSession(name="jwks", policy=RetryPolicy(max_attempts=1), timeout=(1, 1))
    verifier = SignedEventVerifier(JwksCache(url, session.get_json))
    with pytest.raises(KeysUnavailable):
        verify(verifier, ring.sign(EVENT))


@pytest.mark.filterwarnings("ignore:Key size")
def test_jwks_parsing_keeps_only_rsa_signing_keys_of_2048_bits_or_more() -> None:
    good = new_key("good").public_jwk()
    small = new_key("small", bits=1024).public_jwk()
    leaked_private = {**new_key("leaky").private.as_dict(private=True), "kid": "leaky"}
    document = {
        "keys": [
            good,
            small,
            {**new_key("enc").public_jwk(), "use": "enc"},
            {**new_key("ps").public_jwk(), "alg": "PS256"},
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
            {"kty": "RSA", "n": good["n"], "e": "AQAB"},  # no kid
            leaked_private,
        ]
    }
    keyset = parse_jwks(document)
    assert sorted(keyset.keys) == ["good", "leaky"]
    assert keyset.keys["leaky"].private_key is None  # only the public half is kept
    assert keyset.skipped == 6
    for bad in ({}, {"keys": "x"}, [], "text"):
        with pytest.raises(ValueError):
            parse_jwks(bad)


def test_rotation_right_after_a_fetch_is_retried_not_refused() -> None:
    ring = KeyRing(prefix="quick")
    clock = Clock()
    with JwksServer(ring) as server:
        verifier = verifier_for(server, min_refetch=10, clock=clock)

        async def scenario() -> None:
            await verifier.keys.refresh()
            ring.rotate()  # Canvas signs with a key published after our fetch
            token = ring.sign(EVENT)
            clock.advance(5)
            with pytest.raises(KeysUnavailable):  # 503: the sender comes back
                await verifier.verify(token)
            clock.advance(5)
            assert (await verifier.verify(token)) == EVENT
            assert server.fetches == 2

        asyncio.run(scenario())
