"""Single sign-on (issue 13): a tenant's owner configures its OpenID Connect provider and staff
sign in through it, driven end to end by a browser-like httpx client against a real provider
(npm `oidc-provider`, tests/oidc_provider.py). The negative cases that a correct provider never
produces (a token for another audience, `alg: none`, an unknown key) come from a test-only
provider that signs whatever a test asks for; everything else goes through the real one.
Every refusal is problem+json with a stable code."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from dependency_injector import providers

from tests.api.identity_helpers import PASSWORD, bearer, log_in, sign_up
from tests.conftest import Harness, problem
from tests.oidc_provider import (
    CLIENT_ID,
    CLIENT_SECRET,
    REDIRECT_URI,
    Browser,
    CraftedProvider,
    NodeProvider,
    hs256_key,
    query_of,
    with_query,
)

SSO = {"redirect_uri": REDIRECT_URI, "allow_http_issuers": True, "allow_private_addresses": True}
ALICE = "alice@acme.example"


@pytest.fixture(scope="module")
def provider() -> Iterator[NodeProvider]:
    started = NodeProvider()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def second_provider() -> Iterator[NodeProvider]:
    started = NodeProvider()
    yield started
    started.stop()


@pytest.fixture
async def sso(make_harness: Any) -> Harness:
    harness: Harness = await make_harness(sso=SSO)
    return harness


@pytest.fixture
async def browser(sso: Harness) -> AsyncIterator[Browser]:
    opened = Browser(sso.app)
    yield opened
    await opened.aclose()


async def configure(harness: Harness, issuer: str, **changes: Any) -> dict[str, str]:
    """Tenant `acme` (owner owner@acme.example) with SSO through `issuer`; the owner's headers."""
    owner: dict[str, str] | None = getattr(harness, "sso_owner", None)
    if owner is None:
        await sign_up(harness.client, "acme")
        owner = bearer(await log_in(harness.client, "owner@acme.example"))
        setattr(harness, "sso_owner", owner)  # noqa: B010  (one sign-up per harness)
    body = {
        "issuer": issuer,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "allowed_domains": ["acme.example"],
        "default_role": "member",
        "jit_provisioning": True,
        **changes,
    }
    put = await harness.client.put("/v1/sso-config", json=body, headers=owner)
    assert put.status_code == 200, put.text
    return owner


def refused(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert problem(response)["code"] == code, response.text


async def me(harness: Harness, tokens: dict[str, Any]) -> dict[str, Any]:
    response = await harness.client.get("/v1/me", headers=bearer(tokens))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# -- configuration ------------------------------------------------------------------------------


async def test_the_owner_configures_sso_and_reads_it_back_without_the_secret(
    sso: Harness, provider: NodeProvider
) -> None:
    owner = await configure(sso, provider.issuer)
    read = await sso.client.get("/v1/sso-config", headers=owner)
    assert read.status_code == 200
    body = read.json()
    assert CLIENT_SECRET not in read.text
    assert body["client_secret_set"] is True
    assert body["issuer"] == provider.issuer
    assert body["redirect_uri"] == REDIRECT_URI
    assert body["login_url"] == "/v1/auth/sso/acme/start"
    stored = sso.cluster.psql(
        "primary",
        "SELECT encode(ciphertext, 'escape') FROM tenant_secrets WHERE name = 'sso_client_secret'",
    )
    assert stored  # encrypted at rest
    assert CLIENT_SECRET not in stored
    # Omitting the secret keeps it; an owner default role and an http issuer are refused.
    again = await sso.client.put(
        "/v1/sso-config",
        json={"issuer": provider.issuer, "client_id": CLIENT_ID, "allowed_domains": ["a.example"]},
        headers=owner,
    )
    assert again.status_code == 200, again.text
    owner_role = await sso.client.put(
        "/v1/sso-config", json={**again.json(), "default_role": "owner"}, headers=owner
    )
    assert owner_role.status_code == 422


async def test_http_issuers_are_refused_unless_allowed(make_harness: Any) -> None:
    harness: Harness = await make_harness(sso={"redirect_uri": REDIRECT_URI})
    await sign_up(harness.client, "acme")
    owner = bearer(await log_in(harness.client, "owner@acme.example"))
    body = {
        "issuer": "http://127.0.0.1:1",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "allowed_domains": ["acme.example"],
    }
    refused(await harness.client.put("/v1/sso-config", json=body, headers=owner), 422,
            "sso.config_invalid")  # fmt: skip


# -- the full login through the real provider ---------------------------------------------------


async def test_a_full_sso_login_yields_tokens_that_work_on_me(
    sso: Harness, provider: NodeProvider, browser: Browser
) -> None:
    await configure(sso, provider.issuer)
    started = await browser.start("acme")
    assert started.status_code == 302
    asked = query_of(started.headers["location"])
    assert started.headers["location"].startswith(f"{provider.issuer}/auth?")
    assert asked["code_challenge_method"] == "S256"
    assert asked["redirect_uri"] == REDIRECT_URI
    assert asked["response_type"] == "code"
    assert {"state", "nonce", "code_challenge"} <= asked.keys()
    cookie = started.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert "Path=/v1/auth/sso" in cookie

    callback = await browser.authorize(started.headers["location"], "alice@acme.example")
    assert query_of(callback)["iss"] == provider.issuer  # RFC 9207: the provider sends it
    answer = await browser.http.get(callback)
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    tokens = answer.json()
    assert tokens.keys() == {"access_token", "token_type", "expires_in", "refresh_token"}
    who = await me(sso, tokens)
    assert who["email"] == "alice@acme.example"
    assert who["role"] == "member"  # the configured default role, just in time
    # The same pair as a password login's: the refresh token rotates.
    refreshed = await sso.client.post(
        "/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert refreshed.status_code == 200, refreshed.text
    # A second login finds the linked user again (no second account).
    again = await browser.log_in("acme", "alice@acme.example")
    assert again.status_code == 200, again.text
    assert (await me(sso, again.json()))["id"] == who["id"]


async def test_an_existing_user_is_linked_by_verified_email(
    sso: Harness, provider: NodeProvider, browser: Browser
) -> None:
    await configure(sso, provider.issuer, jit_provisioning=False)
    answer = await browser.log_in("acme", "owner@acme.example")
    assert answer.status_code == 200, answer.text
    who = await me(sso, answer.json())
    assert (who["email"], who["role"]) == ("owner@acme.example", "owner")
    # Without provisioning, an unknown email has no account.
    refused(await browser.log_in("acme", "nobody@acme.example"), 403, "sso.no_account")


async def test_password_login_can_be_disabled_once_sso_is_on(
    sso: Harness, provider: NodeProvider, browser: Browser
) -> None:
    await configure(sso, provider.issuer, password_login_disabled=True)
    response = await sso.client.post(
        "/v1/auth/token", data={"username": "owner@acme.example", "password": PASSWORD}
    )
    refused(response, 403, "auth.password_login_disabled")
    wrong = await sso.client.post(
        "/v1/auth/token", data={"username": "owner@acme.example", "password": "wrong-password-1"}
    )
    refused(wrong, 401, "auth.invalid_credentials")  # only the right password learns why
    assert (await browser.log_in("acme", "owner@acme.example")).status_code == 200


# -- refusals: state, code, PKCE, nonce, issuer (real provider) ---------------------------------


async def test_a_tampered_state_is_refused(
    sso: Harness, provider: NodeProvider, browser: Browser
) -> None:
    await configure(sso, provider.issuer)
    callback = await browser.callback("acme", ALICE)
    state = query_of(callback)["state"]
    tampered = state[:-4] + ("AAAA" if not state.endswith("AAAA") else "BBBB")
    refused(await browser.http.get(with_query(callback, state=tampered)), 400, "sso.state_invalid")
    # Another browser (without the binding cookie) cannot use the real state either...
    stranger = httpx.AsyncClient(transport=httpx.ASGITransport(app=sso.app))
    refused(await stranger.get(callback), 400, "sso.state_invalid")
    await stranger.aclose()
    # ... and did not burn it: the browser that started the login finishes it.
    assert (await browser.http.get(callback)).status_code == 200


async def test_a_replayed_callback_and_a_replayed_code_are_refused(
    sso: Harness, provider: NodeProvider, browser: Browser
) -> None:
    await configure(sso, provider.issuer)
    callback = await browser.callback("acme", ALICE)
    assert (await browser.http.get(callback)).status_code == 200
    # The same callback again: its state was used.
    refused(await browser.http.get(callback), 400, "sso.state_invalid")
    # The used code with a fresh login's state: the provider refuses to exchange it again.
    fresh = query_of((await browser.start("acme")).headers["location"])["state"]
    refused(await browser.http.get(with_query(callback, state=fresh)), 401, "sso.code_rejected")


async def test_a_wrong_code_verifier_is_refused_by_the_provider(
    sso: Harness, provider: NodeProvider, browser: Browser
) -> None:
    """Code injection: the authorization request carried someone else's PKCE challenge (an
    attacker's), so this server's verifier does not match it."""
    await configure(sso, provider.issuer)
    callback = await browser.callback("acme", ALICE, code_challenge="A" * 43)
    refused(await browser.http.get(callback), 401, "sso.code_rejected")


async def test_a_missing_code_verifier_is_refused_by_the_provider(
    sso: Harness, provider: NodeProvider, browser: Browser
) -> None:
    await configure(sso, provider.issuer)
    callback = await browser.callback("acme", ALICE)
    sso.cluster.psql("primary", "UPDATE sso_logins SET code_verifier = ''")  # none is sent
    refused(await browser.http.get(callback), 401, "sso.code_rejected")


async def test_a_wrong_nonce_is_refused(
    sso: Harness, provider: NodeProvider, browser: Browser
) -> None:
    """The nonce in the authorization request was replaced on the way: the provider's ID token
    carries the other one."""
    await configure(sso, provider.issuer)
    callback = await browser.callback("acme", ALICE, nonce="someone-elses-nonce")
    refused(await browser.http.get(callback), 401, "sso.id_token_nonce")


async def test_an_authorization_response_from_another_issuer_is_refused(
    sso: Harness, provider: NodeProvider, browser: Browser
) -> None:
    """RFC 9207 mix-up defence: `iss` must be the tenant's issuer, and since the provider says
    it sends `iss`, a response without it is refused too."""
    await configure(sso, provider.issuer)
    for iss in ("https://evil.example", None):
        callback = await browser.callback("acme", ALICE)
        refused(await browser.http.get(with_query(callback, iss=iss)), 401,
                "sso.response_issuer_mismatch")  # fmt: skip


async def test_an_id_token_past_the_leeway_is_refused(
    make_harness: Any, provider: NodeProvider
) -> None:
    """The real provider's ID token lives 600 s; 600 + 31 s later (leeway 30 s) it is expired
    (authlib's default of 120 s would still take it)."""
    harness: Harness = await make_harness(sso={**SSO, "login_ttl_seconds": 3600})
    browser = Browser(harness.app)
    try:
        await configure(harness, provider.issuer)
        callback = await browser.callback("acme", ALICE)
        harness.clock.advance(seconds=631)
        refused(await browser.http.get(callback), 401, "sso.id_token_expired")
    finally:
        await browser.aclose()


async def test_an_email_domain_not_allowed_is_refused(
    sso: Harness, provider: NodeProvider, browser: Browser
) -> None:
    await configure(sso, provider.issuer)
    refused(await browser.log_in("acme", "mallory@evil.example"), 403,
            "sso.email_domain_not_allowed")  # fmt: skip
    refused(await browser.log_in("acme", "unverified-carol@acme.example"), 403,
            "sso.email_unverified")  # fmt: skip


async def test_a_second_provider_cannot_take_over_a_linked_user(
    sso: Harness, provider: NodeProvider, second_provider: NodeProvider, browser: Browser
) -> None:
    await configure(sso, provider.issuer)
    first = await browser.log_in("acme", "alice@acme.example")
    assert first.status_code == 200, first.text
    alice = (await me(sso, first.json()))["id"]
    # Another subject of the same provider asserting alice's email: refused.
    refused(await browser.log_in("acme", "other|alice@acme.example"), 403,
            "sso.account_linked_elsewhere")  # fmt: skip
    # The tenant moves to another provider (another issuer) that asserts the same email.
    await configure(sso, second_provider.issuer)
    refused(await browser.log_in("acme", "alice@acme.example"), 403,
            "sso.account_linked_elsewhere")  # fmt: skip
    count = sso.cluster.psql(
        "primary", f"SELECT count(*) FROM sso_identities WHERE user_id = '{alice}'"
    )
    assert count == "1"


async def test_a_login_started_before_the_provider_changed_is_refused(
    sso: Harness, provider: NodeProvider, second_provider: NodeProvider, browser: Browser
) -> None:
    await configure(sso, provider.issuer)
    callback = await browser.callback("acme", ALICE)
    await configure(sso, second_provider.issuer)
    refused(await browser.http.get(callback), 400, "sso.state_invalid")


async def test_unknown_tenants_and_unconfigured_servers(
    make_harness: Any, sso: Harness, browser: Browser
) -> None:
    refused(await browser.start("nobody"), 404, "sso.not_configured")
    await sign_up(sso.client, "plain")
    refused(await browser.start("plain"), 404, "sso.not_configured")
    bare: Harness = await make_harness()
    refused(await bare.client.get("/v1/auth/sso/plain/start"), 503, "sso.server_not_configured")


# -- the provider down: 503, never 500 --------------------------------------------------------


async def test_a_provider_that_is_down_or_hangs_is_a_clean_503(make_harness: Any) -> None:
    harness: Harness = await make_harness(sso={**SSO, "http_timeout_seconds": 0.5})
    browser = Browser(harness.app)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # accepts connections, never answers
    try:
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{closed.getsockname()[1]}"
        closed.close()
        for issuer in (down, f"http://127.0.0.1:{silent.getsockname()[1]}"):
            await configure(harness, issuer)
            began = time.monotonic()
            refused(await browser.start("acme"), 503, "sso.provider_unavailable")
            assert time.monotonic() - began < 5
    finally:
        silent.close()
        await browser.aclose()


# -- ID tokens a correct provider never issues (the crafted provider) -------------------------


@pytest.fixture
async def crafted(sso: Harness) -> AsyncIterator[CraftedProvider]:
    """The crafted provider, reached through the app's SSO HTTP client (overridden)."""
    idp = CraftedProvider()
    client = httpx.AsyncClient(mounts={idp.issuer: httpx.ASGITransport(app=idp.app)})
    container = sso.container
    container.sso_http.override(providers.Object(client))
    container.sso_oidc.reset()
    container.sso_service.reset()
    await configure(sso, idp.issuer)
    yield idp
    container.sso_http.reset_override()
    container.sso_oidc.reset()
    container.sso_service.reset()
    await client.aclose()


async def crafted_login(browser: Browser, idp: CraftedProvider, **issue: Any) -> httpx.Response:
    started = await browser.start("acme")
    assert started.status_code == 302, started.text
    return await browser.http.get(idp.issue(started.headers["location"], **issue))


async def test_the_crafted_provider_signs_a_token_that_is_accepted(
    sso: Harness, crafted: CraftedProvider, browser: Browser
) -> None:
    """The control case: the negative cases below differ from this in one thing each."""
    answer = await crafted_login(browser, crafted)
    assert answer.status_code == 200, answer.text
    assert (await me(sso, answer.json()))["email"] == "dana@acme.example"


async def test_an_id_token_from_another_issuer_is_refused(
    crafted: CraftedProvider, browser: Browser
) -> None:
    """authlib's parse_id_token would skip this check once claims options are passed."""
    refused(await crafted_login(browser, crafted, iss="https://other.example"), 401,
            "sso.id_token_issuer")  # fmt: skip


async def test_an_id_token_for_another_audience_is_refused(
    crafted: CraftedProvider, browser: Browser
) -> None:
    refused(await crafted_login(browser, crafted, aud="another-client"), 401,
            "sso.id_token_audience")  # fmt: skip
    # Several audiences: `azp` must name this client.
    several = ["another-client", CLIENT_ID]
    refused(await crafted_login(browser, crafted, aud=several), 401, "sso.id_token_audience")
    accepted = await crafted_login(browser, crafted, aud=several, azp=CLIENT_ID)
    assert accepted.status_code == 200, accepted.text


async def test_the_leeway_is_thirty_seconds_not_authlibs_hundred_and_twenty(
    sso: Harness, crafted: CraftedProvider, browser: Browser
) -> None:
    """The ID token lives 300 s. This server's clock 20 s past its exp: within the leeway;
    35 s past: expired (authlib's default leeway, 120 s, would have taken it)."""
    for past_exp, status in ((35, 401), (20, 200)):
        sso.clock.offset = timedelta()
        started = await browser.start("acme")
        callback = crafted.issue(started.headers["location"])
        sso.clock.advance(seconds=300 + past_exp)
        answer = await browser.http.get(callback)
        assert answer.status_code == status, answer.text
    sso.clock.offset = timedelta()
    future = problem(await crafted_login(browser, crafted, iat=int(time.time()) + 60))
    assert (future["code"], future["detail"]) == (
        "sso.id_token_invalid",
        "the ID token's iat is not valid here",  # issued in the future, past the leeway
    )


async def test_an_unsigned_id_token_is_refused(crafted: CraftedProvider, browser: Browser) -> None:
    response = await crafted_login(browser, crafted, header={"alg": "none"}, key="none")
    refused(response, 401, "sso.id_token_algorithm")


async def test_an_id_token_signed_with_the_client_secret_is_refused(
    crafted: CraftedProvider, browser: Browser
) -> None:
    """HS256 keyed with the client secret: this server holds that secret too, so such a token
    proves nothing; HS* is never accepted."""
    response = await crafted_login(
        browser, crafted, header={"alg": "HS256"}, key=hs256_key(CLIENT_SECRET)
    )
    refused(response, 401, "sso.id_token_algorithm")


async def test_an_unknown_kid_refetches_the_key_set_once_then_is_refused(
    crafted: CraftedProvider, browser: Browser
) -> None:
    assert (await crafted_login(browser, crafted)).status_code == 200
    assert crafted.jwks_fetches == 1  # fetched once, then cached
    assert (await crafted_login(browser, crafted)).status_code == 200
    assert crafted.jwks_fetches == 1
    # A key the provider does not publish: exactly one refetch, then refused.
    stray = type(crafted.keys[0]).generate_key(2048, {"kid": "stray"}, private=True)
    response = await crafted_login(browser, crafted, header={"alg": "RS256", "kid": "stray"},
                                   key=stray)  # fmt: skip
    refused(response, 401, "sso.id_token_key_unknown")
    assert crafted.jwks_fetches == 2
    # A rotation: the new key is published, tokens signed with it pass after one refetch.
    rotated = type(crafted.keys[0]).generate_key(2048, {"kid": "crafted-2"}, private=True)
    crafted.keys.append(rotated)
    crafted.published.append(rotated)
    assert (await crafted_login(browser, crafted)).status_code == 200
    assert crafted.jwks_fetches == 3


async def test_a_forged_signature_is_refused(crafted: CraftedProvider, browser: Browser) -> None:
    """A token whose kid names the provider's key but that another key signed."""
    other = type(crafted.keys[0]).generate_key(2048, {"kid": "crafted-1"}, private=True)
    response = await crafted_login(browser, crafted, key=other)
    refused(response, 401, "sso.id_token_signature")


async def test_concurrent_first_logins_of_one_identity_make_one_user(
    sso: Harness, crafted: CraftedProvider, browser: Browser
) -> None:
    starts = [await browser.start("acme") for _ in range(3)]
    callbacks = [crafted.issue(s.headers["location"]) for s in starts]
    answers = await asyncio.gather(*(browser.http.get(url) for url in callbacks))
    assert {a.status_code for a in answers} <= {200, 403}, [a.text for a in answers]
    assert any(a.status_code == 200 for a in answers)
    count = sso.cluster.psql(
        "primary", "SELECT count(*) FROM users WHERE email = 'dana@acme.example'"
    )
    assert count == "1"


async def test_a_provider_answering_nonsense_is_a_clean_502(
    sso: Harness, crafted: CraftedProvider, browser: Browser
) -> None:
    """Its discovery document names another issuer than the one configured (OIDC Discovery
    4.3): nothing it says is trusted."""
    await configure(sso, crafted.issuer + "/tenant-a")  # the document says crafted.issuer
    refused(await browser.start("acme"), 502, "sso.provider_error")


# -- a hostile issuer: its owner controls where this server connects (SSRF) --------------------

HOSTILE = {"redirect_uri": REDIRECT_URI, "allow_http_issuers": True}  # private addresses refused


async def put_config(harness: Harness, issuer: str, slug: str = "acme") -> httpx.Response:
    await sign_up(harness.client, slug)
    owner = bearer(await log_in(harness.client, f"owner@{slug}.example"))
    body = {
        "issuer": issuer,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "allowed_domains": [f"{slug}.example"],
    }
    return await harness.client.put("/v1/sso-config", json=body, headers=owner)


@pytest.mark.parametrize(
    "issuer",
    [
        "http://127.0.0.1:8080",
        "http://169.254.169.254/latest",  # the cloud metadata service
        "http://10.0.0.5",
        "http://[::1]:8080",
        "http://[fd00::1]",
        "http://0.0.0.0:5432",
        "https://login.example@127.0.0.1",  # user info: the host is 127.0.0.1
        "https://user:pw@login.example",
        "https://[::1",  # malformed: once a 500
        "https://login.example:abc",  # a port that is not a number: once accepted, then 500s
        "https://login.example:99999",
    ],
)
async def test_issuers_on_internal_addresses_malformed_or_with_user_info_are_refused(
    make_harness: Any, issuer: str
) -> None:
    harness: Harness = await make_harness(sso=HOSTILE)
    refused(await put_config(harness, issuer), 422, "sso.config_invalid")


@contextlib.asynccontextmanager
async def raw_provider(
    answer: Callable[[str, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[tuple[str, list[bytes]]]:
    """An HTTP server on a real socket that answers every request with `answer(base, writer)`;
    yields its base URL and the requests it received."""
    received: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            received.append(await reader.readuntil(b"\r\n\r\n"))
            await answer(base, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield base, received
    finally:
        server.close()


def discovery(base: str) -> bytes:
    document = {
        "issuer": base,
        "authorization_endpoint": f"{base}/auth",
        "token_endpoint": f"{base}/token",
        "jwks_uri": f"{base}/jwks",
    }
    return http_answer(json.dumps(document).encode())


def http_answer(body: bytes, *headers: str, status: str = "200 OK") -> bytes:
    head = [f"HTTP/1.1 {status}", "Content-Type: application/json",
            f"Content-Length: {len(body)}", *headers]  # fmt: skip
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def test_a_name_that_leads_to_an_internal_address_is_refused_when_connected(
    make_harness: Any,
) -> None:
    """`localhost` is a name, so the configuration takes it; the connection is checked where
    it goes (127.0.0.1) and refused before a byte of HTTP is sent."""

    async def answer(base: str, writer: asyncio.StreamWriter) -> None:
        writer.write(discovery(base))

    harness: Harness = await make_harness(sso=HOSTILE)
    browser = Browser(harness.app)
    try:
        async with raw_provider(answer) as (base, received):
            named = base.replace("127.0.0.1", "localhost")
            assert (await put_config(harness, named)).status_code == 200
            response = await browser.start("acme")
            refused(response, 502, "sso.provider_address_not_allowed")
            assert "localhost" not in response.text
            assert "127.0.0.1" not in response.text
            assert received == []  # no request reached the internal service
    finally:
        await browser.aclose()


async def test_a_provider_trickling_its_answer_is_cut_off_at_the_deadline(
    make_harness: Any,
) -> None:
    """One byte every 0.1 s never trips a per-read timeout of 0.5 s; the deadline is the
    whole request's."""

    async def answer(base: str, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100000\r\n\r\n")  # fmt: skip
        for _ in range(200):
            writer.write(b" ")
            await writer.drain()
            await asyncio.sleep(0.1)

    harness: Harness = await make_harness(sso={**SSO, "http_timeout_seconds": 0.5})
    browser = Browser(harness.app)
    try:
        async with raw_provider(answer) as (base, _):
            await configure(harness, base)
            began = time.monotonic()
            refused(await browser.start("acme"), 503, "sso.provider_unavailable")
            assert time.monotonic() - began < 4  # a per-read timeout would take 20 s
    finally:
        await browser.aclose()


@pytest.mark.parametrize(
    "answer_bytes",
    [
        http_answer(b'{"issuer": "' + b"x" * 300_000 + b'"}'),  # past sso.max_response_bytes
        http_answer(gzip.compress(b"{}"), "Content-Encoding: gzip"),  # no decompression bomb
        http_answer(b"[" * 100_000),  # not JSON (nested past the parser's recursion limit)
        http_answer(b"not json", status="404 Not Found"),
    ],
    ids=["too-large", "gzip", "deep", "404-text"],
)
async def test_an_oversized_encoded_or_non_json_answer_is_a_clean_502(
    make_harness: Any, answer_bytes: bytes
) -> None:
    async def answer(base: str, writer: asyncio.StreamWriter) -> None:
        writer.write(answer_bytes)

    harness: Harness = await make_harness(sso=SSO)
    browser = Browser(harness.app)
    try:
        async with raw_provider(answer) as (base, _):
            await configure(harness, base)
            response = await browser.start("acme")
            refused(response, 502, "sso.provider_error")
            assert base not in response.text  # the provider's URL is not repeated
    finally:
        await browser.aclose()


async def test_a_tenant_with_a_hanging_provider_cannot_take_the_pool_from_another(
    make_harness: Any,
) -> None:
    """acme's provider accepts and never answers; acme's logins beyond
    `sso.max_concurrent_per_tenant` are refused at once, and beta's go through meanwhile."""
    hung = asyncio.Event()

    async def hang(base: str, writer: asyncio.StreamWriter) -> None:
        await hung.wait()

    async def answer(base: str, writer: asyncio.StreamWriter) -> None:
        writer.write(discovery(base))

    harness: Harness = await make_harness(
        sso={**SSO, "http_timeout_seconds": 2.0, "max_concurrent_per_tenant": 2}
    )
    browser = Browser(harness.app)
    try:
        async with raw_provider(hang) as (slow, _), raw_provider(answer) as (good, _):
            assert (await put_config(harness, slow, "acme")).status_code == 200
            assert (await put_config(harness, good, "beta")).status_code == 200
            waiting = [asyncio.create_task(browser.start("acme")) for _ in range(5)]
            await asyncio.sleep(0.3)
            busy = [task for task in waiting if task.done()]
            assert len(busy) == 3
            for task in busy:
                refused(task.result(), 503, "sso.provider_busy")
            beta = await browser.start("beta")
            assert beta.status_code == 302, beta.text
            assert not any(task.done() for task in waiting if task not in busy)
            hung.set()
            for task in waiting:
                assert (await task).status_code in (502, 503)
    finally:
        await browser.aclose()


# -- what an ID token's subject and email may be ------------------------------------------------


async def test_an_email_that_only_unicode_case_folding_matches_does_not_link_an_account(
    sso: Harness, crafted: CraftedProvider, browser: Browser
) -> None:
    """`\u212a` (KELVIN SIGN) lower-cases to `k`: compared after str.lower() it would be the
    existing kate@acme.example, and a provider asserting it would take over her account."""
    owner: dict[str, str] = getattr(sso, "sso_owner")  # noqa: B009
    kate = await sso.client.post(
        "/v1/users", json={"email": "kate@acme.example", "password": PASSWORD}, headers=owner
    )
    assert kate.status_code == 201, kate.text
    for email in ("\u212aate@acme.example", "kate@acme.example@evil.example",
                  "kate@evil.example@acme.example", "x" * 250 + "@acme.example"):  # fmt: skip
        refused(await crafted_login(browser, crafted, email=email), 403, "sso.email_invalid")
    linked = sso.cluster.psql("primary", "SELECT count(*) FROM sso_identities")
    assert linked == "0"
    # The plain address still signs her in (upper case ASCII is the same address).
    answer = await crafted_login(browser, crafted, email="KATE@acme.example")
    assert answer.status_code == 200, answer.text
    assert (await me(sso, answer.json()))["id"] == kate.json()["id"]


@pytest.mark.parametrize("subject", ["", "s" * 256, "crafted\x00subject", "cr\u00e4fted", 42])
async def test_a_subject_that_is_not_printable_ascii_of_at_most_255_is_refused(
    crafted: CraftedProvider, browser: Browser, subject: Any
) -> None:
    refused(await crafted_login(browser, crafted, sub=subject), 401, "sso.id_token_invalid")


async def test_the_issuer_of_a_response_is_checked_before_its_error_is_believed(
    sso: Harness, provider: NodeProvider, browser: Browser
) -> None:
    """An error response from another issuer is a mix-up (RFC 9207), and the provider's
    error_description is never repeated to the browser."""
    await configure(sso, provider.issuer)
    state = query_of((await browser.start("acme")).headers["location"])["state"]
    mixed = with_query(REDIRECT_URI, state=state, error="access_denied",
                       iss="https://other.example")  # fmt: skip
    refused(await browser.http.get(mixed), 401, "sso.response_issuer_mismatch")
    state = query_of((await browser.start("acme")).headers["location"])["state"]
    told = with_query(REDIRECT_URI, state=state, error="access_denied", iss=provider.issuer,
                      error_description="<script>call 555-0100</script>")  # fmt: skip
    answer = await browser.http.get(told)
    refused(answer, 401, "sso.provider_refused")
    assert "555-0100" not in answer.text
    assert problem(answer)["detail"] == "the identity provider refused (access_denied)"
