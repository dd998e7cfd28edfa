"""Which URLs may be an identity provider's: the issuer a tenant's owner gives, and every
endpoint its discovery document names (app/sso/oidc.py). A discovery document served from a
public address must not send this server's requests (the client secret among them) into its
own network or over plain http."""

from __future__ import annotations

import pytest

from app.settings import SsoSettings
from app.sso.errors import SsoProviderError
from app.sso.oidc import _parse_metadata, url_problem

STRICT = SsoSettings()
ISSUER = "https://login.acme.example"


def document(**endpoints: str) -> dict[str, str]:
    return {
        "issuer": ISSUER,
        "authorization_endpoint": f"{ISSUER}/auth",
        "token_endpoint": f"{ISSUER}/token",
        "jwks_uri": f"{ISSUER}/jwks",
        **endpoints,
    }


def test_a_public_https_document_is_taken() -> None:
    metadata = _parse_metadata(ISSUER, document(), STRICT)
    assert metadata.token_endpoint == f"{ISSUER}/token"


@pytest.mark.parametrize("name", ["authorization_endpoint", "token_endpoint", "jwks_uri"])
@pytest.mark.parametrize(
    "url",
    [
        "http://login.acme.example/x",  # plain http: the client secret in clear
        "https://169.254.169.254/latest/meta-data",
        "https://127.0.0.1:8443/token",
        "https://[::ffff:10.0.0.1]/jwks",
        "https://user:secret@login.acme.example/x",
        "https://login.acme.example:notaport/x",
        "javascript:alert(1)",
        "/relative",
    ],
)
def test_an_endpoint_that_is_not_public_https_is_refused(name: str, url: str) -> None:
    with pytest.raises(SsoProviderError) as refused:
        _parse_metadata(ISSUER, document(**{name: url}), STRICT)
    assert url not in str(refused.value)  # the document's content is not repeated


def test_local_test_providers_need_both_switches() -> None:
    local = "http://127.0.0.1:9000"
    assert url_problem(local, STRICT) is not None
    assert url_problem(local, SsoSettings(allow_http_issuers=True)) is not None
    both = SsoSettings(allow_http_issuers=True, allow_private_addresses=True)
    assert url_problem(local, both) is None
