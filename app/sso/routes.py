"""SSO HTTP routes: the owner's provider configuration, and the browser's login (start ->
the provider -> callback, which answers the same tokens as `POST /v1/auth/token`)."""

from typing import Annotated

from fastapi import APIRouter, Cookie, Depends, Path, Query, Request, Response, status
from fastapi.responses import RedirectResponse

from app.http.di import Provide, inject
from app.http.ratelimit import limited_by_address
from app.http.schemas import AUTHENTICATED, NO_STORE, Text, problem_responses
from app.http.security import SsoManager
from app.identity.schemas import TokenResponse
from app.settings import Settings
from app.sso.schemas import SsoConfigRead, SsoConfigWrite
from app.sso.service import SsoCallback, SsoConfigService, SsoService

router = APIRouter(prefix="/v1", tags=["identity"])
# The browser's side of a login: one cookie, sent back only to these routes.
COOKIE = "sf_sso"
COOKIE_PATH = "/v1/auth/sso"
_BY_ADDRESS = [Depends(limited_by_address)]
_Param = Annotated[Text | None, Query(max_length=2048)]


@router.put(
    "/sso-config", response_model=SsoConfigRead, responses=problem_responses(*AUTHENTICATED, 422)
)
@inject
async def put_sso_config(
    body: SsoConfigWrite,
    principal: SsoManager,
    service: SsoConfigService = Provide["sso_config_service"],
) -> SsoConfigRead:
    """The tenant's OpenID Connect provider (owners only). The client secret is stored
    encrypted and never shown; `password_login_disabled` makes password logins of the tenant's
    users 403 `auth.password_login_disabled`."""
    info = await service.put(principal.tenant_id, body.to_input(), body.client_secret)
    return SsoConfigRead.of(info)


@router.get(
    "/sso-config", response_model=SsoConfigRead, responses=problem_responses(*AUTHENTICATED, 404)
)
@inject
async def get_sso_config(
    principal: SsoManager,
    service: SsoConfigService = Provide["sso_config_service"],
) -> SsoConfigRead:
    """The configuration without its secret (404 `sso.not_configured` before the first PUT)."""
    return SsoConfigRead.of(await service.get(principal.tenant_id))


@router.get(
    "/auth/sso/{tenant_slug}/start",
    status_code=status.HTTP_302_FOUND,
    response_class=RedirectResponse,
    responses={
        302: {"description": "To the tenant's identity provider."},
        **problem_responses(400, 404, 422, 429, 502, 503),
    },
    dependencies=_BY_ADDRESS,
)
@inject
async def start_sso(
    tenant_slug: Annotated[str, Path(pattern=r"^[a-z0-9-]{3,40}$", max_length=40)],
    sf_sso: Annotated[str | None, Cookie(max_length=64)] = None,
    service: SsoService = Provide["sso_service"],
    settings: Settings = Provide["settings"],
) -> RedirectResponse:
    """Starts a staff login through the tenant's identity provider: a redirect to it
    (authorization code with PKCE), and a cookie that binds the login to this browser."""
    started = await service.start(tenant_slug, sf_sso)
    redirect = RedirectResponse(started.url, status_code=status.HTTP_302_FOUND, headers=NO_STORE)
    redirect.set_cookie(
        COOKIE,
        started.binding,
        max_age=settings.sso.login_ttl_seconds,
        path=COOKIE_PATH,
        secure=(settings.sso.redirect_uri or "").startswith("https://"),
        httponly=True,
        samesite="lax",  # sent on the provider's top-level redirect back to the callback
    )
    return redirect


@router.get(
    "/auth/sso/callback",
    response_model=TokenResponse,
    responses=problem_responses(400, 401, 403, 404, 422, 429, 502, 503),
    dependencies=_BY_ADDRESS,
)
@inject
async def sso_callback(
    request: Request,
    response: Response,
    state: _Param = None,
    code: _Param = None,
    iss: _Param = None,
    error: _Param = None,
    error_description: _Param = None,
    sf_sso: Annotated[str | None, Cookie(max_length=64)] = None,
    service: SsoService = Provide["sso_service"],
) -> TokenResponse:
    """Where the provider sends the browser back: the code is exchanged, the ID token checked
    and the user found, linked or created; the answer is the same token pair as a password
    login's. Every refusal is problem+json naming the check (`sso.state_invalid`,
    `sso.code_rejected`, `sso.id_token_nonce`, ...)."""
    answer = SsoCallback(state, code, iss, error, error_description)
    pair = await service.callback(answer, sf_sso)
    response.headers.update(NO_STORE)
    return TokenResponse(
        access_token=pair.access_token, expires_in=pair.expires_in, refresh_token=pair.refresh_token
    )
