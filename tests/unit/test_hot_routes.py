"""The hot-route dispatcher (app/http/hot.py) against a plain FastAPI app: which requests its
handler takes, and that everything else reaches FastAPI untouched."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import fastapi
import httpx
import pytest
import starlette.exceptions
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import PlainTextResponse, Response

from app.http.client_address import TrustedProxies
from app.http.errors import install_error_handlers
from app.http.hot import UUID, HotRoute, install_hot_routes
from app.http.middleware import BodyBudget, Door, EdgeMiddleware
from app.metrics import Metrics

router = APIRouter(prefix="/things")


@router.get("/{thing_id}")
async def get_thing(thing_id: str) -> Response:
    return PlainTextResponse(f"fastapi {thing_id}")


async def hot_thing(request: Request, thing_id: str) -> Response:
    route = request.scope["route"]
    return PlainTextResponse(f"hot {thing_id} {route.path} {request.scope['path_params']}")


# Both kinds a handler may raise: FastAPI's is a subclass of Starlette's.
HTTP_EXCEPTIONS = {
    "starlette": starlette.exceptions.HTTPException,
    "fastapi": fastapi.HTTPException,
}


@router.get("/{thing_id}/refused/{kind}")
async def refuse_thing(thing_id: str, kind: str) -> Response:
    raise HTTP_EXCEPTIONS[kind](418, "no tea here", headers={"X-Why": "refused"})


async def hot_refuse_thing(request: Request, thing_id: str, kind: str) -> Response:
    raise HTTP_EXCEPTIONS[kind](418, "no tea here", headers={"X-Why": "refused"})


def client(*, edge: bool = False) -> httpx.AsyncClient:
    """The test app; `edge=True` layers it as create_app does: the app's error handlers, the
    hot routes inside the edge middleware."""
    app = FastAPI()
    if edge:
        install_error_handlers(app)
    app.include_router(router)
    install_hot_routes(
        app,
        [
            HotRoute(router, "GET", "/{thing_id}", hot_thing, thing_id=UUID),
            HotRoute(
                router,
                "GET",
                "/{thing_id}/refused/{kind}",
                hot_refuse_thing,
                thing_id=UUID,
                kind="[a-z]+",
            ),
        ],
    )
    if edge:
        app.add_middleware(
            EdgeMiddleware,
            metrics=Metrics(),
            access_log=False,
            door=Door(limit=10, timeout=1.0),
            max_body_bytes=1024,
            body_timeout=1.0,
            proxies=TrustedProxies([]),
            body_budget=BodyBudget(10_240),
        )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


ID = "0f8fad5b-d9cb-469f-a165-70867728950e"


async def test_a_canonical_path_takes_the_hot_handler_with_the_fastapi_route_in_scope() -> None:
    async with client() as http:
        response = await http.get(f"/things/{ID}")
        upper = await http.get(f"/things/{ID.upper()}")
    assert response.text == f"hot {ID} /things/{{thing_id}} {{'thing_id': '{ID}'}}"
    assert upper.text.startswith(f"hot {ID.upper()} ")


@pytest.mark.parametrize(
    "path",
    [
        f"/things/{ID.replace('-', '')}",  # not canonical
        f"/things/{ID}x",
        f"/things/x{ID}",
        f"/things/{ID}/more",
        "/things/",
    ],
)
async def test_anything_else_reaches_fastapi(path: str) -> None:
    async with client() as http:
        response = await http.get(path)
    assert not response.text.startswith("hot"), response.text


async def test_other_methods_reach_fastapi() -> None:
    async with client() as http:
        head = await http.head(f"/things/{ID}")
        post = await http.post(f"/things/{ID}")
    assert (head.status_code, post.status_code) == (405, 405)


def test_each_path_parameter_needs_its_pattern() -> None:
    with pytest.raises(ValueError, match="a pattern for each"):
        HotRoute(router, "GET", "/{thing_id}", hot_thing)
    with pytest.raises(LookupError):  # no FastAPI route declared for it
        HotRoute(router, "GET", "/{thing_id}/parts", hot_thing, thing_id=UUID)


@pytest.mark.parametrize("kind", sorted(HTTP_EXCEPTIONS))
async def test_an_http_exception_from_a_hot_handler_renders_as_fastapi_renders_it(
    kind: str,
) -> None:
    """Same status, problem+json body (but its `instance` and `request_id`) and headers as the
    FastAPI route raising it, not a 500."""
    async with client(edge=True) as http:
        hot = await http.get(f"/things/{ID}/refused/{kind}")
        slow = await http.get(f"/things/{ID.replace('-', '')}/refused/{kind}")
    assert slow.status_code == 418, slow.text  # the FastAPI route, through the app's handler
    assert hot.status_code == slow.status_code, hot.text
    volatile = {"x-request-id", "content-length"}  # the length: `instance` names the path
    assert {k: v for k, v in hot.headers.items() if k not in volatile} == {
        k: v for k, v in slow.headers.items() if k not in volatile
    }
    assert hot.headers["content-type"] == "application/problem+json"
    assert hot.headers["x-why"] == "refused"
    ignored = {"instance", "request_id"}
    hot_body, slow_body = json.loads(hot.text), json.loads(slow.text)
    assert {k: v for k, v in hot_body.items() if k not in ignored} == {
        k: v for k, v in slow_body.items() if k not in ignored
    }
    assert (hot_body["code"], hot_body["instance"]) == ("http.418", hot.url.path)
    assert hot_body["request_id"] == hot.headers["x-request-id"]


posts = APIRouter(prefix="/posts")


@posts.post("/{thing_id}")
async def post_thing(thing_id: str, request: Request) -> Response:
    return PlainTextResponse(f"fastapi {thing_id} {(await request.body()).decode()}")


async def hot_post(request: Request, thing_id: str) -> Response | None:
    body = await request.body()
    if body != b"hot please":
        return None  # declined after reading the body: FastAPI must still get all of it
    return PlainTextResponse(f"hot {thing_id}")


def posting_client() -> httpx.AsyncClient:
    app = FastAPI()
    app.include_router(posts)
    install_hot_routes(app, [HotRoute(posts, "POST", "/{thing_id}", hot_post, thing_id=UUID)])
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_a_declining_handler_hands_fastapi_the_body_it_read() -> None:
    # Without the replay FastAPI would wait for a body that never comes: fail, don't hang.
    async with asyncio.timeout(10), posting_client() as http:
        taken = await http.post(f"/posts/{ID}", content=b"hot please")
        declined = await http.post(f"/posts/{ID}", content=b"x" * 70_000)

        async def chunks() -> Any:
            yield b"two "
            yield b"chunks"

        streamed = await http.post(f"/posts/{ID}", content=chunks())
    assert taken.text == f"hot {ID}"
    assert declined.text == f"fastapi {ID} {'x' * 70_000}"
    assert streamed.text == f"fastapi {ID} two chunks"
