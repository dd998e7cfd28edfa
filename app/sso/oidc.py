"""The relying party's side of OpenID Connect, on authlib (with joserfc for JOSE): discovery and
key sets (cached), the authorization URL (code flow, PKCE S256), the code exchange and the ID
token checks of OIDC Core 3.1.3.7. Framework-free; failures are domain errors (app/sso/errors.py).

authlib's own defaults are not used where they are weak: its `parse_id_token` drops the `iss`
check as soon as `claims_options` are given and allows 120 s of leeway. Here every option is
written out (`iss` exact, `aud` contains the client id, `nonce` exact, `sub`/`exp`/`iat`
essential) and the leeway is `sso.leeway_seconds`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import structlog
from authlib.oauth2.auth import ClientAuth
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri, prepare_token_request
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from authlib.oidc.core import CodeIDToken
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
    SsoProviderError,
    SsoProviderUnavailable,
)

log = structlog.get_logger(__name__)

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
    clock). An ID token whose `kid` is not in the cached set refetches that set once; still
    unknown, it is refused. ID tokens come from the token endpoint (never from the browser), so
    only the provider itself can make this process refetch."""

    def __init__(self, http: httpx.AsyncClient, clock: Clock, settings: SsoSettings) -> None:
        self._http = http
        self._clock = clock
        self._settings = settings
        self._metadata: dict[str, tuple[float, ProviderMetadata]] = {}
        self._keys: dict[str, tuple[float, KeySet]] = {}

    def _now(self) -> float:
        return self._clock.now().timestamp()

    def _fresh(self, fetched_at: float) -> bool:
        return self._now() - fetched_at < self._settings.metadata_ttl_seconds

    async def metadata(self, issuer: str) -> ProviderMetadata:
        cached = self._metadata.get(issuer)
        if cached is not None and self._fresh(cached[0]):
            return cached[1]
        document = await self._get_json(issuer.rstrip("/") + "/.well-known/openid-configuration")
        metadata = _parse_metadata(issuer, document)
        self._metadata[issuer] = (self._now(), metadata)
        return metadata

    async def _key_set(self, jwks_uri: str, *, refetch: bool = False) -> KeySet:
        cached = self._keys.get(jwks_uri)
        if cached is not None and not refetch and self._fresh(cached[0]):
            return cached[1]
        document = await self._get_json(jwks_uri)
        try:
            keys = KeySet.import_key_set(document)  # type: ignore[arg-type]
        except (JoseError, ValueError, TypeError, KeyError) as error:
            raise SsoProviderError(f"the provider's key set is not usable: {error}") from None
        self._keys[jwks_uri] = (self._now(), keys)
        return keys

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            response = await self._http.get(url, headers={"Accept": "application/json"})
        except httpx.HTTPError as error:
            log.warning("sso.provider_unreachable", url=url, error=repr(error))
            raise SsoProviderUnavailable("the identity provider cannot be reached") from None
        if response.status_code >= 500:
            raise SsoProviderUnavailable(f"the identity provider answered {response.status_code}")
        if response.status_code != 200:
            raise SsoProviderError(f"{url} answered {response.status_code}")
        return _json_object(response, url)

    async def exchange(
        self,
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
        try:
            response = await self._http.post(url, content=content, headers=headers)
        except httpx.HTTPError as error:
            log.warning("sso.provider_unreachable", url=metadata.token_endpoint, error=repr(error))
            raise SsoProviderUnavailable("the identity provider cannot be reached") from None
        if response.status_code >= 500:
            raise SsoProviderUnavailable(f"the token endpoint answered {response.status_code}")
        answer = _json_object(response, metadata.token_endpoint)
        if response.status_code != 200:
            refusal = str(answer.get("error", "unknown"))[:100]
            if refusal == "invalid_grant":  # used, expired, or the code_verifier does not match
                raise SsoCodeRejected(f"the identity provider refused the code ({refusal})")
            raise SsoProviderError(f"the token endpoint refused the exchange ({refusal})")
        id_token = answer.get("id_token")
        if not isinstance(id_token, str):
            raise SsoProviderError("the token response has no id_token")
        return id_token

    async def verify(
        self,
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
        except (JoseError, ValueError) as error:
            raise IdTokenInvalid(f"the ID token is malformed: {error}") from None
        algorithm = header.get("alg")
        if algorithm not in self._settings.allowed_algorithms:
            raise IdTokenAlgorithm(f"ID tokens signed with {algorithm!r} are not accepted")
        kid = header.get("kid")
        keys = await self._key_set(metadata.jwks_uri)
        key = _pick(keys, kid, algorithm)
        if key is None:
            log.info("sso.jwks_refetch", jwks_uri=metadata.jwks_uri, kid=kid)
            keys = await self._key_set(metadata.jwks_uri, refetch=True)
            key = _pick(keys, kid, algorithm)
        if key is None:
            raise IdTokenKeyUnknown(f"no key {kid!r} in the provider's key set")
        try:
            token = jwt.decode(id_token, key, algorithms=[algorithm])
        except BadSignatureError:
            raise IdTokenSignature("the ID token's signature does not verify") from None
        except (JoseError, ValueError) as error:
            raise IdTokenInvalid(f"the ID token cannot be decoded: {error}") from None
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


def _parse_metadata(issuer: str, document: dict[str, Any]) -> ProviderMetadata:
    # OIDC Discovery 4.3: the document's issuer is exactly the one asked for.
    if document.get("issuer") != issuer:
        raise SsoProviderError(
            f"the discovery document names the issuer {document.get('issuer')!r}, not {issuer!r}"
        )
    fields = ("authorization_endpoint", "token_endpoint", "jwks_uri")
    values = [document.get(name) for name in fields]
    if not all(isinstance(value, str) and value for value in values):
        raise SsoProviderError("the discovery document lacks an endpoint or jwks_uri")
    methods = document.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
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


def _json_object(response: httpx.Response, url: str) -> dict[str, Any]:
    try:
        value = response.json()
    except ValueError:
        raise SsoProviderError(f"{url} did not answer JSON") from None
    if not isinstance(value, dict):
        raise SsoProviderError(f"{url} did not answer a JSON object")
    return value


def _pick(keys: KeySet, kid: Any, algorithm: str) -> Any:
    """The key `kid` names; without a kid, the set's only key of the algorithm's type."""
    if kid is not None:
        return next((key for key in keys if key.kid == kid), None)
    kty = _KEY_TYPES.get(algorithm[:2])
    matching = [key for key in keys if key.key_type == kty]
    return matching[0] if len(matching) == 1 else None
