"""SSO's domain errors, each with a stable code. A login that fails is refused with the check
that failed named in `code`; the provider being unreachable or answering nonsense is 503/502,
never a 500."""

from __future__ import annotations

from app.core.errors import (
    BadGateway,
    Forbidden,
    InvalidRequest,
    NotFound,
    ServiceUnavailable,
    Unauthenticated,
    Unprocessable,
)


class SsoNotConfigured(NotFound):
    """No tenant with this slug, or the tenant has no SSO configuration (the same answer)."""

    code = "sso.not_configured"
    title = "Single sign-on not configured"


class SsoServerNotConfigured(ServiceUnavailable):
    code = "sso.server_not_configured"
    title = "Single sign-on unavailable on this server"
    retry_after = 60


class SsoConfigInvalid(Unprocessable):
    code = "sso.config_invalid"
    title = "Invalid SSO configuration"


class SsoStateInvalid(InvalidRequest):
    """Unknown, used, expired or altered `state`, or a browser other than the one that started
    the login (the binding cookie)."""

    code = "sso.state_invalid"
    title = "Invalid SSO state"


class SsoProviderRefused(Unauthenticated):
    """The provider answered the authorization request with an error (the user cancelled)."""

    code = "sso.provider_refused"
    title = "Sign-in refused by the identity provider"


class SsoResponseIssuerMismatch(Unauthenticated):
    """RFC 9207: the authorization response's `iss` is not the tenant's issuer, or is missing
    although the provider says it sends one (a mix-up attack)."""

    code = "sso.response_issuer_mismatch"
    title = "Authorization response from another issuer"


class SsoCodeRejected(Unauthenticated):
    """The provider refused to exchange the code (used before, expired, or the PKCE
    code_verifier does not match)."""

    code = "sso.code_rejected"
    title = "Authorization code rejected"


class IdTokenInvalid(Unauthenticated):
    code = "sso.id_token_invalid"
    title = "Invalid ID token"


class IdTokenAlgorithm(IdTokenInvalid):
    code = "sso.id_token_algorithm"
    title = "ID token algorithm not allowed"


class IdTokenKeyUnknown(IdTokenInvalid):
    code = "sso.id_token_key_unknown"
    title = "ID token signed with an unknown key"


class IdTokenSignature(IdTokenInvalid):
    code = "sso.id_token_signature"
    title = "ID token signature invalid"


class IdTokenIssuer(IdTokenInvalid):
    code = "sso.id_token_issuer"
    title = "ID token from another issuer"


class IdTokenAudience(IdTokenInvalid):
    code = "sso.id_token_audience"
    title = "ID token for another client"


class IdTokenExpired(IdTokenInvalid):
    code = "sso.id_token_expired"
    title = "ID token expired"


class IdTokenNonce(IdTokenInvalid):
    code = "sso.id_token_nonce"
    title = "ID token nonce mismatch"


class SsoEmailUnverified(Forbidden):
    code = "sso.email_unverified"
    title = "Email not verified by the identity provider"


class SsoEmailInvalid(Forbidden):
    """The provider's email is not a plain ASCII address (one `@`, a domain name): nothing that
    would need Unicode case folding is ever compared with this tenant's accounts."""

    code = "sso.email_invalid"
    title = "Email not usable"


class SsoEmailDomain(Forbidden):
    code = "sso.email_domain_not_allowed"
    title = "Email domain not allowed"


class SsoAccountLinked(Forbidden):
    """The account with this email is linked to another external subject: another provider (or
    another subject of the same one) asserting the same email does not get it."""

    code = "sso.account_linked_elsewhere"
    title = "Account linked to another identity"


class SsoNoAccount(Forbidden):
    code = "sso.no_account"
    title = "No account for this identity"


class SsoProviderUnavailable(ServiceUnavailable):
    code = "sso.provider_unavailable"
    title = "Identity provider unavailable"
    retry_after = 5


class SsoProviderBusy(ServiceUnavailable):
    """As many requests to this tenant's provider are in flight as `sso.max_concurrent_per_tenant`
    allows (its provider is slow): refused at once rather than queued."""

    code = "sso.provider_busy"
    title = "Identity provider busy"
    retry_after = 5


class SsoProviderAddressNotAllowed(BadGateway):
    """A URL of the provider leads to an address that is not globally reachable (loopback,
    private, link-local): this server does not make requests into its own network for a
    tenant."""

    code = "sso.provider_address_not_allowed"
    title = "Identity provider address not allowed"


class SsoProviderError(BadGateway):
    """The provider answered, but not as OpenID Connect says (a malformed discovery document
    or key set, an issuer that is not the configured one, a refused client)."""

    code = "sso.provider_error"
    title = "Identity provider error"
