"""The hot-route dispatcher (app/http/hot.py) against a plain FastAPI app: which requests its
handler takes, and that everything else reaches FastAPI untouched."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import PlainTextResponse, Response

from app.http.hot import UUID, HotRoute, install_hot_routes

router = APIRouter(prefix="/things")


@router.get("/{thing_id}")
async def get_thing(thing_id: str) -> Response:
    return PlainTextResponse(f"fastapi {thing_id}")


async def hot_thing(request: Request, thing_id: str) -> Response:
    route = request.scope["route"]
    return PlainTextResponse(f"hot {thing_id} {route.path} {request.scope['path_params']}")


def client(
    on: APIRouter = router, method: str = "GET", handler: Any = hot_thing
) -> httpx.AsyncClient:
    app = FastAPI()
    app.include_router(on)
    install_hot_routes(app, [HotRoute(on, method, "/{thing_id}", handler, thing_id=UUID)])
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


posts = APIRouter(prefix="/posts")


@posts.post("/{thing_id}")
async def post_thing(thing_id: str, request: Request) -> Response:
    return PlainTextResponse(f"fastapi {thing_id} {(await request.body()).decode()}")


async def hot_post(request: Request, thing_id: str) -> Response | None:
    body = await request.body()
    if body != b"hot please":
        return None  # declined after reading the body: FastAPI must still get all of it
    return PlainTextResponse(f"hot {thing_id}")


async def test_a_declining_handler_hands_fastapi_the_body_it_read() -> None:
    # Without the replay FastAPI would wait for a body that never comes: fail, don't hang.
    async with asyncio.timeout(10), client(posts, "POST", hot_post) as http:
        taken = await http.post(f"/posts/{ID}", content=b"hot please")
        declined = await http.post(f"/posts/{ID}", content=b"x" * 70_000)

        async def chunks() -> Any:
            yield b"two "
            yield b"chunks"

        streamed = await http.post(f"/posts/{ID}", content=chunks())
    assert taken.text == f"hot {ID}"
    assert declined.text == f"fastapi {ID} {'x' * 70_000}"
    assert streamed.text == f"fastapi {ID} two chunks"
