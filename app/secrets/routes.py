"""The tenant's webhook signing secret: POST generates (shown once), GET shows metadata."""

from fastapi import APIRouter, Response, status

from app.http.di import Provide, inject
from app.http.schemas import AUTHENTICATED, NO_STORE, problem_responses
from app.http.security import ApiKeysManager, ApiKeysReader
from app.secrets.schemas import WebhookSecretCreated, WebhookSecretRead
from app.secrets.service import WebhookSecrets

router = APIRouter(prefix="/v1", tags=["webhooks"])
_AUTH = AUTHENTICATED


@router.post(
    "/webhook-secret",
    status_code=status.HTTP_201_CREATED,
    response_model=WebhookSecretCreated,
    responses=problem_responses(*_AUTH),
)
@inject
async def generate_webhook_secret(
    principal: ApiKeysManager,
    response: Response,
    service: WebhookSecrets = Provide["webhook_secrets"],
) -> WebhookSecretCreated:
    """A new random signing secret, replacing the previous one at once. The value is in this
    response only (stored encrypted). 503 `secrets.not_configured` when the server has no
    `secrets.keys`."""
    info, value = await service.generate(principal.tenant_id)
    response.headers.update(NO_STORE)
    return WebhookSecretCreated(
        **WebhookSecretRead.of(info).model_dump(), secret=value.get_secret_value()
    )


@router.get(
    "/webhook-secret",
    response_model=WebhookSecretRead,
    responses=problem_responses(*_AUTH, 404),
)
@inject
async def get_webhook_secret(
    principal: ApiKeysReader,
    service: WebhookSecrets = Provide["webhook_secrets"],
) -> WebhookSecretRead:
    """Metadata and fingerprint, never the value. 404 `secrets.not_found` before the first
    POST; 503 `secrets.undecryptable` when no configured key can decrypt it."""
    return WebhookSecretRead.of(await service.info(principal.tenant_id))
