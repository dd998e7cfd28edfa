"""Identity providers for the SSO tests.

- `NodeProvider`: a real OpenID Connect provider, panva's `oidc-provider` (npm, OpenID
  Certified) run by the machine's Node.js from `tests/oidc/provider.mjs` on a free loopback
  port; the package is installed into .cache/tools/npm when missing. Its development login and
  consent pages are real HTML forms: `Browser` fills them in.
- `CraftedProvider`: a test-only provider (an ASGI app reached through the app's SSO HTTP
  client) that issues the ID tokens a test asks for (wrong `aud`, `alg: none`, unknown `kid`,
  ...), signed with joserfc, and counts the key-set fetches. Its token endpoint still checks
  the client secret and the PKCE verifier.
- `Browser`: an httpx client that reaches the app in process (ASGI) and providers over the
  network, keeps cookies, and follows the redirect chain of a login step by step.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit, urlunsplit

import httpx
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.served_app import free_port, stop_process
from tests.tooling import npm_package

APP = "http://testserver"
REDIRECT_URI = f"{APP}/v1/auth/sso/callback"
CLIENT_ID = "storefront"
CLIENT_SECRET = "storefront-client-secret"
OIDC_PROVIDER = "oidc-provider@9.13.3"
SCRIPT = Path(__file__).parent / "oidc" / "provider.mjs"


class NodeProvider:
    """`oidc-provider` in a Node.js process of its own, with one confidential client."""

    def __init__(self, id_token_ttl: int = 600) -> None:
        package = npm_package("oidc-provider", OIDC_PROVIDER)
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        client = {
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "redirect_uris": [REDIRECT_URI],
        }
        env = {
            **os.environ,
            "OIDC_MODULE": (package / "lib" / "index.js").as_uri(),
            "OIDC_PORT": str(self.port),
            "OIDC_ISSUER": self.issuer,
            "OIDC_CLIENTS": json.dumps([client]),
            "OIDC_ID_TOKEN_TTL": str(id_token_ttl),
        }
        self._process = subprocess.Popen(
            ["node", str(SCRIPT)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        if not self._wait_ready(30.0):
            self.stop()
            raise RuntimeError(f"oidc-provider did not start: {self._stderr()}")

    def _wait_ready(self, within: float) -> bool:
        deadline = time.monotonic() + within
        url = f"{self.issuer}/.well-known/openid-configuration"
        while time.monotonic() < deadline and self._process.poll() is None:
            try:
                with urllib.request.urlopen(url, timeout=1):
                    return True
            except OSError:
                time.sleep(0.1)
        return False

    def _stderr(self) -> str:
        if self._process.poll() is None or self._process.stderr is None:
            return ""
        return self._process.stderr.read().decode(errors="replace")[-2000:]

    def stop(self) -> None:
        stop_process(self._process)


def with_query(url: str, **changes: str | None) -> str:
    """`url` with query parameters replaced (None: removed)."""
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    for name, value in changes.items():
        if value is None:
            query.pop(name, None)
        else:
            query[name] = value
    return urlunsplit(parts._replace(query=urlencode(query)))


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


_FORM = re.compile(r'<form[^>]*action="([^"]+)"[^>]*>(.*?)</form>', re.S)
_INPUT = re.compile(r"<input([^>]*)>")
_ATTR = re.compile(r'(\w+)="([^"]*)"')


class Browser:
    """Cookies for every site, the app in process, providers over the network; redirects are
    followed one by one so a test can stop or alter any step."""

    def __init__(self, app: Any) -> None:
        self.http = httpx.AsyncClient(
            mounts={APP: httpx.ASGITransport(app=app)}, timeout=10.0, follow_redirects=False
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def start(self, slug: str) -> httpx.Response:
        return await self.http.get(f"{APP}/v1/auth/sso/{slug}/start")

    async def authorize(self, authorization_url: str, login: str) -> str:
        """At the provider: follow its redirects, sign in as `login` (any password) and consent,
        until it redirects back to the app; the callback URL (not visited). Each sign-in is
        a new person at the provider (its session cookies are dropped first)."""
        provider = urlsplit(authorization_url).hostname
        for cookie in list(self.http.cookies.jar):
            if cookie.domain.lstrip(".") == provider:
                self.http.cookies.jar.clear(cookie.domain, cookie.path, cookie.name)
        response = await self.http.get(authorization_url)
        for _ in range(20):
            if response.is_redirect:
                target = urljoin(str(response.url), response.headers["location"])
                if target.startswith(REDIRECT_URI):
                    return target
                response = await self.http.get(target)
                continue
            assert response.status_code == 200, response.text[:500]
            forms = _FORM.findall(response.text)
            assert forms, f"no form on {response.url}: {response.text[:500]}"
            action, body = forms[0]
            data: dict[str, str] = {}
            for attributes in _INPUT.findall(body):
                attrs = dict(_ATTR.findall(attributes))
                if "name" in attrs:
                    data[attrs["name"]] = attrs.get("value", "")
            if "login" in data:
                data.update(login=login, password="any password")
            response = await self.http.post(urljoin(str(response.url), action), data=data)
        raise AssertionError("the provider never redirected back to the app")

    async def callback(self, slug: str, login: str, **altered: str | None) -> str:
        """Start a login and sign in at the provider; the callback URL, not visited yet.
        `altered`: parameters of the authorization request changed on the way (an attacker
        in the middle, or a browser extension)."""
        started = await self.start(slug)
        assert started.status_code == 302, started.text
        return await self.authorize(with_query(started.headers["location"], **altered), login)

    async def log_in(self, slug: str, login: str) -> httpx.Response:
        """The whole chain: start, the provider's pages, the callback."""
        return await self.http.get(await self.callback(slug, login))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class Issued:
    """What the crafted token endpoint answers for one code."""

    header: dict[str, Any]
    claims: dict[str, Any]
    challenge: str
    key: Any = None  # None: the provider's current key; "none": unsigned


@dataclass
class CraftedProvider:
    issuer: str = "https://idp.crafted.test"
    keys: list[RSAKey] = field(default_factory=list)
    published: list[RSAKey] = field(default_factory=list)
    jwks_fetches: int = 0
    codes: dict[str, Issued] = field(default_factory=dict)

    def __post_init__(self) -> None:
        key = RSAKey.generate_key(2048, {"kid": "crafted-1"}, private=True)
        self.keys.append(key)
        self.published.append(key)

    @property
    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self._discovery),
                Route("/tenant-a/.well-known/openid-configuration", self._discovery),
                Route("/jwks", self._jwks),
                Route("/token", self._token, methods=["POST"]),
            ]
        )

    async def _discovery(self, request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "jwks_uri": f"{self.issuer}/jwks",
                "response_types_supported": ["code"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic"],
            }
        )

    async def _jwks(self, request: Request) -> JSONResponse:
        self.jwks_fetches += 1
        return JSONResponse({"keys": [key.as_dict(private=False) for key in self.published]})

    async def _token(self, request: Request) -> JSONResponse:
        expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if request.headers.get("authorization") != expected:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        form = await request.form()
        issued = self.codes.pop(str(form.get("code")), None)
        verifier = str(form.get("code_verifier", ""))
        challenge = _b64(hashlib.sha256(verifier.encode()).digest())
        if issued is None or challenge != issued.challenge:
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        return JSONResponse(
            {"access_token": "at", "token_type": "Bearer", "id_token": self._sign(issued)}
        )

    def _sign(self, issued: Issued) -> str:
        if issued.key == "none":
            header = _b64(json.dumps(issued.header).encode())
            return f"{header}.{_b64(json.dumps(issued.claims).encode())}."
        key = issued.key if issued.key is not None else self.keys[-1]
        algorithm = issued.header["alg"]
        token: str = jwt.encode(issued.header, issued.claims, key, algorithms=[algorithm])
        return token

    def issue(
        self,
        authorization_url: str,
        *,
        header: dict[str, Any] | None = None,
        key: Any = None,
        **claims: Any,
    ) -> str:
        """A code for the login `authorization_url` started; its ID token has the login's
        nonce, the client as audience, iat now and exp in 5 minutes, overridden by `claims`
        (a value None removes the claim). The callback URL to visit."""
        asked = query_of(authorization_url)
        now = int(time.time())
        body: dict[str, Any] = {
            "iss": self.issuer,
            "sub": "crafted-subject",
            "aud": CLIENT_ID,
            "iat": now,
            "exp": now + 300,
            "nonce": asked["nonce"],
            "email": "dana@acme.example",
            "email_verified": True,
        }
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}
        code = secrets.token_urlsafe(16)
        self.codes[code] = Issued(
            header or {"alg": "RS256", "kid": self.keys[-1].kid},
            body,
            asked["code_challenge"],
            key,
        )
        return with_query(REDIRECT_URI, code=code, state=asked["state"])


def hs256_key(secret: str) -> OctKey:
    return OctKey.import_key(secret)
