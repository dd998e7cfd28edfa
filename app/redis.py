"""The Redis client (optional: `redis.url`). Built lazily by a plain Singleton, so the providers
that use it stay synchronous; the `redis_lifecycle` Resource closes it on shutdown."""

from __future__ import annotations

from collections.abc import AsyncIterator

from redis.asyncio import Redis


def open_redis(url: str | None) -> Redis | None:
    if url is None:
        return None
    # Short timeouts: a slow Redis must not hold logins hostage.
    return Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=1.0)


async def redis_lifecycle(redis: Redis | None) -> AsyncIterator[Redis | None]:
    try:
        yield redis
    finally:
        if redis is not None:
            await redis.aclose()
