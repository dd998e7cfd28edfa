"""Access tokens (JWT, pyjwt) and opaque refresh-token secrets.

Every configured key verifies; the last one that holds a private part (or an HS256 secret)
signs, so a new key is rolled out by appending it and an old one retired once the access-token
lifetime has passed. Each key is bound to its own algorithm: a token is only ever checked with
the algorithm of the key its `kid` names (no `alg: none`, no HS256 signed with a public key).
Time comes from the container's clock, so tests can move it.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

from app.core.clock import Clock
from app.core.errors import Unauthenticated
from app.identity.permissions import Role
from app.settings import SigningKey, TokenSettings

log = structlog.get_logger(__name__)
REFRESH_PREFIX = "sfr_"
_REQUIRED = ["exp", "iat", "nbf", "sub", "tid", "role", "jti", "sid", "iss", "aud"]
_KEY_TYPES: dict[str, tuple[type, ...]] = {
    "EdDSA": (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey),
    "ES256": (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey),
    "RS256": (rsa.RSAPrivateKey, rsa.RSAPublicKey),
}


class InvalidToken(Unauthenticated):
    code = "auth.invalid_token"
    title = "Invalid token"


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: uuid.UUID
    tenant_id: uuid.UUID
    role: Role
    family_id: uuid.UUID
    expires_at: float


@dataclass(frozen=True, slots=True)
class _Key:
    kid: str
    algorithm: str
    verifier: Any
    signer: Any  # None: verifies only


def _load(config: SigningKey) -> _Key:
    material = config.key.get_secret_value()
    if config.algorithm == "HS256":
        if len(material.encode()) < 32:
            raise ValueError(f"auth.tokens.keys[{config.kid}]: HS256 secrets need >= 32 bytes")
        return _Key(config.kid, "HS256", material, material)
    try:
        private = load_pem_private_key(material.encode(), password=None)
        signer, verifier = private, private.public_key()
    except ValueError:
        signer, verifier = None, load_pem_public_key(material.encode())
    if not isinstance(verifier, _KEY_TYPES[config.algorithm]):
        raise ValueError(f"auth.tokens.keys[{config.kid}]: not a {config.algorithm} key")
    return _Key(config.kid, config.algorithm, verifier, signer)


def _ephemeral() -> _Key:
    private = ed25519.Ed25519PrivateKey.generate()
    kid = "ephemeral-" + secrets.token_hex(4)
    log.warning("auth.ephemeral_signing_key", kid=kid, hint="configure auth.tokens.keys")
    return _Key(kid, "EdDSA", private.public_key(), private)


# NumericDate (RFC 7519): seconds since the epoch. Bounded so that no value can overflow a
# float or a datetime (year 9999 is about 2.5e11 s).
_MAX_NUMERIC_DATE = 253_402_300_799


def _numeric_date(claims: dict[str, Any], name: str) -> float:
    """A time claim as a number: an int or a finite float (JSON allows no NaN, but Python's
    parser reads `NaN` and `1e999`), never a bool or a string such as "nan" or "1e999"."""
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidToken(f"the token's {name} is not a number")
    # The range first: comparing a huge int is exact, while math.isfinite() would overflow.
    if not 0 <= value <= _MAX_NUMERIC_DATE or not math.isfinite(value):
        raise InvalidToken(f"the token's {name} is out of range")
    return float(value)


def hash_refresh(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


class TokenService:
    def __init__(self, settings: TokenSettings, clock: Clock) -> None:
        self.settings = settings
        self._clock = clock
        keys = [_load(k) for k in settings.keys] or [_ephemeral()]
        self._keys = {k.kid: k for k in keys}
        signers = [k for k in keys if k.signer is not None]
        if not signers:
            raise ValueError("auth.tokens.keys: no key can sign (all are public keys)")
        self._signer = signers[-1]

    def issue_access(
        self, user_id: uuid.UUID, tenant_id: uuid.UUID, role: Role, family_id: uuid.UUID
    ) -> str:
        now = int(self._clock.now().timestamp())
        claims = {
            "iss": self.settings.issuer,
            "aud": self.settings.audience,
            "sub": str(user_id),
            "tid": str(tenant_id),
            "role": role.name,
            "sid": str(family_id),
            "jti": uuid.uuid4().hex,
            "iat": now,
            "nbf": now,
            "exp": now + self.settings.access_ttl_seconds,
        }
        key = self._signer
        return jwt.encode(claims, key.signer, algorithm=key.algorithm, headers={"kid": key.kid})

    def verify_access(self, token: str) -> AccessClaims:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            key = self._keys.get(kid) if isinstance(kid, str) else None
            if key is None:
                raise InvalidToken("the token's key (kid) is unknown")
            claims = jwt.decode(
                token,
                key.verifier,
                algorithms=[key.algorithm],
                audience=self.settings.audience,
                issuer=self.settings.issuer,
                # Time claims are checked below against the container's clock.
                options={
                    "require": _REQUIRED,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
            exp, nbf, iat = (_numeric_date(claims, name) for name in ("exp", "nbf", "iat"))
            now = self._clock.now().timestamp()
            leeway = self.settings.leeway_seconds
            if exp <= now - leeway:
                raise InvalidToken("the token has expired")
            if nbf > now + leeway or iat > now + leeway:
                raise InvalidToken("the token is not valid yet")
            return AccessClaims(
                user_id=uuid.UUID(claims["sub"]),
                tenant_id=uuid.UUID(claims["tid"]),
                role=Role[claims["role"]],
                family_id=uuid.UUID(claims["sid"]),
                expires_at=exp,
            )
        except jwt.PyJWTError as error:
            raise InvalidToken(f"invalid token: {error}") from None
        except (KeyError, ValueError, TypeError, AttributeError):
            raise InvalidToken("invalid token claims") from None

    @staticmethod
    def new_refresh() -> tuple[str, bytes]:
        """An opaque refresh secret and the hash that is stored."""
        secret = REFRESH_PREFIX + secrets.token_urlsafe(32)
        return secret, hash_refresh(secret)


def generate_signing_key(kid: str, algorithm: str = "EdDSA") -> dict[str, str]:
    """A new `auth.tokens.keys` entry (private key PEM), for `storefront auth keygen`."""
    private: Any
    if algorithm == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
    elif algorithm == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    elif algorithm == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    else:
        raise ValueError(f"cannot generate a key for {algorithm}")
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return {"kid": kid, "algorithm": algorithm, "key": pem}
