"""The relying party's side of OpenID Connect, on authlib (with joserfc for JOSE): discovery and
key sets (cached), the authorization URL (code flow, PKCE S256), the code exchange and the ID
token checks of OIDC Core 3.1.3.7. Framework-free; failures are domain errors (app/sso/errors.py).

authlib's own defaults are not used where they are weak: its `parse_id_token` drops the `iss`
check as soon as `claims_options` are given and allows 120 s of leeway. Here every option is
written out (`iss` exact, `aud` contains the client id, `nonce` exact, `sub`/`exp`/`iat`
essential) and the leeway is `sso.leeway_seconds`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import structlog
from authlib.oauth2.auth import ClientAuth
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri, prepare_token_request
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from authlib.oidc.core import CodeIDToken
from httpx_secure import SSRFProtectionError
from joserfc import jws, jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import KeySet
from pydantic import SecretStr

from app.core.clock import Clock
from app.settings import SsoSettings
from app.sso.errors import (
    IdTokenAlgorithm,
    IdTokenAudience,
    IdTokenExpired,
    IdTokenInvalid,
    IdTokenIssuer,
    IdTokenKeyUnknown,
    IdTokenNonce,
    IdTokenSignature,
    SsoCodeRejected,
    SsoProviderAddressNotAllowed,
    SsoProviderBusy,
    SsoProviderError,
    SsoProviderUnavailable,
)
from app.sso.transport import address_allowed

log = structlog.get_logger(__name__)
_T = TypeVar("_T")

# The key type each algorithm family needs (a token without `kid` matches the only such key).
_KEY_TYPES = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}
# Claim -> the error naming the check that failed.
_CLAIM_ERRORS: dict[str, type[IdTokenInvalid]] = {
    "iss": IdTokenIssuer,
    "aud": IdTokenAudience,
    "azp": IdTokenAudience,
    "nonce": IdTokenNonce,
    "exp": IdTokenExpired,
}


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    """What the relying party uses of a discovery document (OIDC Discovery 1.0, 3)."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    # RFC 9207: the provider puts `iss` into every authorization response.
    iss_parameter_supported: bool
    token_auth_method: str


def authorization_url(
    metadata: ProviderMetadata,
    client_id: str,
    redirect_uri: str,
    state: str,
    nonce: str,
    code_verifier: str,
) -> str:
    """The authorization request: code flow, PKCE S256, `state` and `nonce`."""
    url: str = prepare_grant_uri(
        metadata.authorization_endpoint,
        client_id,
        "code",
        redirect_uri=redirect_uri,
        scope="openid email",
        state=state,
        nonce=nonce,
        code_challenge=create_s256_code_challenge(code_verifier),
        code_challenge_method="S256",
    )
    return url


class OidcClient:
    """One per process (container singleton): the HTTP client to providers and the caches of
    their discovery documents and key sets (per URL, `sso.metadata_ttl_seconds`, container
    clock, at most `sso.cache_entries` each). An ID token whose `kid` is not in the cached set
    refetches that set once; still unknown, it is refused. ID tokens come from the token
    endpoint (never from the browser), so only the provider itself can make this process
    refetch.

    Every request is made for a tenant and is bounded: at most `sso.max_concurrent_per_tenant`
    in flight per tenant (more: SsoProviderBusy at once), `sso.http_timeout_seconds` in total,
    `sso.max_response_bytes` of answer, no content encoding (no decompression bomb). Errors
    name the step that failed, never the provider's URL or what it answered (that is logged):
    the issuer is a tenant's input, the answer could come from anywhere."""

    def __init__(self, http: httpx.AsyncClient, clock: Clock, settings: SsoSettings) -> None:
        self._http = http
        self._clock = clock
        self._settings = settings
        self._metadata: OrderedDict[str, tuple[float, ProviderMetadata]] = OrderedDict()
        self._keys: OrderedDict[str, tuple[float, KeySet]] = OrderedDict()
        self._in_flight: dict[uuid.UUID, int] = {}

    def _now(self) -> float:
        return self._clock.now().timestamp()

    def _cached(self, cache: OrderedDict[str, tuple[float, _T]], key: str) -> _T | None:
        entry = cache.get(key)
        if entry is None or self._now() - entry[0] >= self._settings.metadata_ttl_seconds:
            return None
        cache.move_to_end(key)
        return entry[1]

    def _keep(self, cache: OrderedDict[str, tuple[float, _T]], key: str, value: _T) -> None:
        cache[key] = (self._now(), value)
        cache.move_to_end(key)
        while len(cache) > self._settings.cache_entries:
            cache.popitem(last=False)

    async def metadata(self, tenant: uuid.UUID, issuer: str) -> ProviderMetadata:
        cached = self._cached(self._metadata, issuer)
        if cached is not None:
            return cached
        url = issuer.rstrip("/") + "/.well-known/openid-configuration"
        status, document = await self._json(tenant, "GET", url, "discovery")
        if status != 200:
            log.warning("sso.discovery_refused", tenant=str(tenant), status=status)
            raise SsoProviderError(f"the provider's discovery document is not available ({status})")
        metadata = _parse_metadata(issuer, document, self._settings)
        self._keep(self._metadata, issuer, metadata)
        return metadata

    async def _key_set(self, tenant: uuid.UUID, jwks_uri: str, *, refetch: bool = False) -> KeySet:
        cached = None if refetch else self._cached(self._keys, jwks_uri)
        if cached is not None:
            return cached
        status, document = await self._json(tenant, "GET", jwks_uri, "key set")
        if status != 200:
            log.warning("sso.jwks_refused", tenant=str(tenant), status=status)
            raise SsoProviderError(f"the provider's key set is not available ({status})")
        try:
            keys = KeySet.import_key_set(document)  # type: ignore[arg-type]
        except (JoseError, ValueError, TypeError, KeyError, AttributeError) as error:
            log.warning("sso.jwks_unusable", tenant=str(tenant), error=repr(error)[:300])
            raise SsoProviderError("the provider's key set is not usable") from None
        self._keep(self._keys, jwks_uri, keys)
        return keys

    @contextlib.contextmanager
    def _slot(self, tenant: uuid.UUID) -> Iterator[None]:
        taken = self._in_flight.get(tenant, 0)
        if taken >= self._settings.max_concurrent_per_tenant:
            raise SsoProviderBusy("too many requests to this tenant's identity provider at once")
        self._in_flight[tenant] = taken + 1
        try:
            yield
        finally:
            left = self._in_flight[tenant] - 1
            if left:
                self._in_flight[tenant] = left
            else:
                del self._in_flight[tenant]

    async def _json(
        self,
        tenant: uuid.UUID,
        method: str,
        url: str,
        step: str,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """(status, JSON object) of one bounded request (see the class docstring); a 5xx or
        no answer in time is SsoProviderUnavailable."""
        sent = {"Accept": "application/json", **(headers or {}), "Accept-Encoding": "identity"}
        fields = {"tenant": str(tenant), "step": step}
        with self._slot(tenant):
            try:
                async with asyncio.timeout(self._settings.http_timeout_seconds):
                    status, body = await self._read(method, url, sent, content, fields)
            except TimeoutError:
                log.warning("sso.provider_timeout", **fields)
                late = "the identity provider did not answer in time"
                raise SsoProviderUnavailable(late) from None
            except SSRFProtectionError as error:
                log.warning("sso.provider_address_refused", host=error.hostname, **fields)
                raise SsoProviderAddressNotAllowed(
                    f"the identity provider's {step} is on an address this server does not reach"
                ) from None
            except (httpx.InvalidURL, httpx.UnsupportedProtocol, ValueError) as error:
                log.warning("sso.provider_url_unusable", error=repr(error)[:300], **fields)
                unusable = f"the identity provider's {step} URL is not usable"
                raise SsoProviderError(unusable) from None
            except httpx.HTTPError as error:
                log.warning("sso.provider_unreachable", error=repr(error)[:300], **fields)
                raise SsoProviderUnavailable("the identity provider cannot be reached") from None
        if status >= 500:
            log.warning("sso.provider_failed", status=status, **fields)
            raise SsoProviderUnavailable(f"the identity provider's {step} answered {status}")
        try:
            value = json.loads(body)
        except (ValueError, RecursionError):
            value = None
        if not isinstance(value, dict):
            log.warning("sso.provider_not_json", status=status, **fields)
            raise SsoProviderError(f"the identity provider's {step} did not answer a JSON object")
        return status, value

    async def _read(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        content: bytes | None,
        fields: dict[str, str],
    ) -> tuple[int, bytes]:
        limit = self._settings.max_response_bytes
        async with self._http.stream(method, url, headers=headers, content=content) as response:
            encoding = response.headers.get("content-encoding", "identity").strip().lower()
            if encoding != "identity":
                log.warning("sso.provider_encoded", encoding=encoding[:50], **fields)
                raise SsoProviderError("the identity provider's answer is content-encoded")
            body = bytearray()
            async for chunk in response.aiter_raw():
                body += chunk
                if len(body) > limit:
                    log.warning("sso.provider_answer_too_large", limit=limit, **fields)
                    raise SsoProviderError(f"the identity provider's answer exceeds {limit} bytes")
            return response.status_code, bytes(body)

    async def exchange(
        self,
        tenant: uuid.UUID,
        metadata: ProviderMetadata,
        client_id: str,
        client_secret: SecretStr,
        code: str,
        code_verifier: str,
        redirect_uri: str,
    ) -> str:
        """The ID token for an authorization code (client secret + PKCE code_verifier)."""
        body = prepare_token_request(
            "authorization_code",
            code=code,
            redirect_uri=redirect_uri,
            code_verifier=code_verifier,
        )
        # authlib adds the client authentication (client_secret_basic or _post) to the request.
        client = ClientAuth(client_id, client_secret.get_secret_value(), metadata.token_auth_method)
        url, headers, content = client.prepare(
            "POST",
            metadata.token_endpoint,
            {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
            body,
        )
        status, answer = await self._json(
            tenant, "POST", url, "token endpoint", dict(headers), _bytes(content)
        )
        if status != 200:
            refusal = error_code(answer.get("error"))
            if refusal == "invalid_grant":  # used, expired, or the code_verifier does not match
                raise SsoCodeRejected(f"the identity provider refused the code ({refusal})")
            raise SsoProviderError(f"the token endpoint refused the exchange ({refusal})")
        id_token = answer.get("id_token")
        if not isinstance(id_token, str):
            raise SsoProviderError("the token response has no id_token")
        return id_token

    async def verify(
        self,
        tenant: uuid.UUID,
        metadata: ProviderMetadata,
        id_token: str,
        client_id: str,
        nonce: str,
        not_before: float,
    ) -> dict[str, Any]:
        """The ID token's claims once it passed OIDC Core 3.1.3.7: an allowed algorithm, a
        signature by a key of the provider's set, `iss` exact, `aud` containing the client id
        (and `azp` the client id when there are several audiences), `exp`/`iat`/`nbf` within
        the leeway, `nonce` exact. `not_before`: the login's start (a token issued more than
        the leeway before it was not issued for this login)."""
        try:
            header = jws.extract_compact(id_token.encode()).protected
        except (JoseError, ValueError, TypeError):
            raise IdTokenInvalid("the ID token is malformed") from None
        algorithm = header.get("alg")
        if algorithm not in self._settings.allowed_algorithms:
            named = str(algorithm)[:16]
            raise IdTokenAlgorithm(f"ID tokens signed with {named!r} are not accepted")
        kid = header.get("kid")
        keys = await self._key_set(tenant, metadata.jwks_uri)
        key = _pick(keys, kid, algorithm)
        if key is None:
            log.info("sso.jwks_refetch", jwks_uri=metadata.jwks_uri, kid=kid)
            keys = await self._key_set(tenant, metadata.jwks_uri, refetch=True)
            key = _pick(keys, kid, algorithm)
        if key is None:
            raise IdTokenKeyUnknown(f"no key {str(kid)[:64]!r} in the provider's key set")
        try:
            token = jwt.decode(id_token, key, algorithms=[algorithm])
        except BadSignatureError:
            raise IdTokenSignature("the ID token's signature does not verify") from None
        except (JoseError, ValueError, TypeError):
            raise IdTokenInvalid("the ID token cannot be decoded") from None
        claims = CodeIDToken(
            token.claims,
            token.header,
            {
                "iss": {"essential": True, "value": metadata.issuer},
                "aud": {"essential": True, "value": client_id},
                "sub": {"essential": True},
                "exp": {"essential": True},
                "iat": {"essential": True},
                "nonce": {"essential": True, "value": nonce},
            },
            {"nonce": nonce, "client_id": client_id},
        )
        now = int(self._now())
        leeway = self._settings.leeway_seconds
        try:
            claims.validate(now=now, leeway=leeway)
        except ExpiredTokenError:
            raise IdTokenExpired("the ID token has expired") from None
        except MissingClaimError as error:  # `azp` is missing with several audiences
            kind = _CLAIM_ERRORS.get(error.claim, IdTokenInvalid)
            raise kind(f"the ID token lacks {error.claim}") from None
        except InvalidClaimError as error:
            kind = _CLAIM_ERRORS.get(error.claim, IdTokenInvalid)
            raise kind(f"the ID token's {error.claim} is not valid here") from None
        if token.claims["iat"] < not_before - leeway:
            raise IdTokenInvalid("the ID token was issued before this login started")
        return dict(claims)


def _parse_metadata(
    issuer: str, document: dict[str, Any], settings: SsoSettings
) -> ProviderMetadata:
    # OIDC Discovery 4.3: the document's issuer is exactly the one asked for.
    if document.get("issuer") != issuer:
        raise SsoProviderError("the discovery document names another issuer")
    fields = ("authorization_endpoint", "token_endpoint", "jwks_uri")
    values = [document.get(name) for name in fields]
    for name, value in zip(fields, values, strict=True):
        if not isinstance(value, str) or url_problem(value, settings) is not None:
            raise SsoProviderError(f"the discovery document's {name} is missing or not usable")
    methods = document.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
    if not isinstance(methods, list):
        methods = ["client_secret_basic"]
    method = "client_secret_basic" if "client_secret_basic" in methods else "client_secret_post"
    return ProviderMetadata(
        issuer=issuer,
        authorization_endpoint=str(values[0]),
        token_endpoint=str(values[1]),
        jwks_uri=str(values[2]),
        iss_parameter_supported=document.get("authorization_response_iss_parameter_supported")
        is True,
        token_auth_method=method,
    )


def url_problem(url: str, settings: SsoSettings) -> str | None:
    """Why `url` may not be a provider's (issuer or endpoint), or None: https (http only with
    `sso.allow_http_issuers`), a host, no user info, a valid port, no fragment, no control
    characters, and a host given as an IP literal globally reachable (a host name is checked
    when it is connected to)."""
    schemes = ("https", "http") if settings.allow_http_issuers else ("https",)
    if len(url) > 2000 or not url.isascii() or not url.isprintable() or " " in url:
        return "must be a URL of printable ASCII without spaces"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a port that is not a number in range)
        httpx.URL(url)
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in schemes or not parts.hostname:
        return f"must be a {' or '.join(schemes)} URL with a host"
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        return "must not carry user information"
    if parts.fragment:
        return "must not have a fragment"
    if not address_allowed(parts.hostname, settings):
        return "is on an address this server does not reach (loopback, private, link-local)"
    return None


def _bytes(content: Any) -> bytes:
    return content if isinstance(content, bytes) else str(content or "").encode()


def error_code(value: Any) -> str:
    """An OAuth error code as the provider sent it when it is one (RFC 6749 5.2), else a
    placeholder: nothing else of its answer is repeated."""
    if isinstance(value, str) and re.fullmatch(r"[a-z_]{1,64}", value):
        return value
    return "unknown"


def _pick(keys: KeySet, kid: Any, algorithm: str) -> Any:
    """The key `kid` names; without a kid, the set's only key of the algorithm's type."""
    if kid is not None:
        return next((key for key in keys if key.kid == kid), None)
    kty = _KEY_TYPES.get(algorithm[:2])
    matching = [key for key in keys if key.key_type == kty]
    return matching[0] if len(matching) == 1 else None
