"""Verify one signed Live Events delivery: a compact RS256 JWT whose claims hold the event.

Verification is joserfc's (JWS signature, then the JWT claims registry); this module
only picks the key and maps every failure to ``TokenRefused`` with a reason safe to log
(never the token). Refused (answer 401): a body that is not a compact JWS, any ``alg``
but RS256 (``none``, HS256 with the public key as HMAC secret, ES256, PS256...), a
missing or unknown ``kid``, a bad signature, an expired token or one not yet valid
(``exp``/``nbf``/``iat`` honoured when present, with a leeway for clock skew), a foreign
issuer when ``iss`` is present, claims that are not a JSON object. The registered JWT
claims are then removed; what is left is the event (Canvas raw ``{metadata, body}`` or
a Caliper envelope).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from courseinv.live_events.jwks import JwksCache, UnknownKey
from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ClaimError,
    ExpiredTokenError,
    JoseError,
)

CANVAS_ISSUER = "https://live-events.canvas.instructure.com"
ALGORITHM = "RS256"
REGISTERED_CLAIMS = frozenset({"iss", "sub", "aud", "exp", "nbf", "iat", "jti"})
DEFAULT_LEEWAY_S = 60


class TokenRefused(Exception):
    """The delivery is not a valid token from the configured signer; ``str`` is the reason."""


class SignedEventVerifier:
    """Checks tokens against the keys of one ``JwksCache``."""

    def __init__(
        self, keys: JwksCache, *, issuer: str = CANVAS_ISSUER, leeway_s: int = DEFAULT_LEEWAY_S
    ) -> None:
        self.keys = keys
        # iss is checked only when present ("essential" False); exp/nbf/iat likewise.
        self._claims = jwt.JWTClaimsRegistry(
            leeway=leeway_s, iss={"essential": False, "value": issuer}
        )

    async def verify(self, token: str) -> dict[str, Any]:
        """The event held by ``token``; raises TokenRefused or jwks.KeysUnavailable."""
        kid = unverified_kid(token)
        try:
            key = await self.keys.key(kid)
        except UnknownKey as exc:
            raise TokenRefused(f"unknown key id ({exc})") from None
        claims = self._decode(token, key)
        return {k: v for k, v in claims.items() if k not in REGISTERED_CLAIMS}

    def _decode(self, token: str, key: Any) -> dict[str, Any]:
        try:
            claims = jwt.decode(token, key, algorithms=[ALGORITHM]).claims
            self._claims.validate(claims)
        except BadSignatureError:
            raise TokenRefused("signature does not verify") from None
        except ExpiredTokenError:
            raise TokenRefused("token expired (exp)") from None
        except ClaimError as exc:  # nbf/iat in the future, foreign iss, ill-typed claims
            raise TokenRefused(f"claim {exc.claim!r} refused: {exc.description[:100]}") from None
        except (JoseError, ValueError, TypeError) as exc:
            raise TokenRefused(f"invalid token ({type(exc).__name__})") from None
        if not isinstance(claims, dict):
            raise TokenRefused("token claims are not a JSON object")
        return claims


def unverified_kid(token: str) -> str:
    """The ``kid`` of a token whose (unverified) header asks for RS256; refuses others."""
    segments = token.split(".")
    if len(segments) != 3 or not segments[0]:
        raise TokenRefused("not a compact JWT (expected header.payload.signature)")
    try:
        raw = segments[0]
        header = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (binascii.Error, ValueError):
        raise TokenRefused("unreadable JWT header") from None
    if not isinstance(header, dict):
        raise TokenRefused("unreadable JWT header")
    alg = header.get("alg")
    if alg != ALGORITHM:
        raise TokenRefused(f"algorithm {str(alg)[:20]!r} refused: only {ALGORITHM} is accepted")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise TokenRefused("no key id (kid) in the JWT header")
    return kid
