"""Redis clients from settings, standalone or cluster, with commands packed by hiredis.

redis-py's asyncio connection packs every command argument in Python (its sync connection
uses hiredis when installed). A batch commit carries thousands of arguments, and that packing
was the largest single cost of the worker's Redis path (a quarter of ``BatchProcessor.process``
in-process); :class:`HiredisPackedConnection` hands the whole command to ``hiredis`` instead.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import hiredis
import redis.asyncio as aioredis
from redis.exceptions import DataError

from config.settings import Settings

__all__ = ["HiredisPackedConnection", "redis_client", "reply_text"]


class HiredisPackedConnection(aioredis.Connection):
    """An asyncio connection whose commands are packed by ``hiredis.pack_command``."""

    def pack_command(self, *args: Any) -> list[bytes]:
        name = args[0]
        if isinstance(name, str):
            name = name.encode()
        if b" " in name:  # "CLIENT SETNAME" and friends are several protocol words
            args = (*name.split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError as exc:
            raise DataError(f"cannot send {args[0]!r}: {exc}") from exc


class _ClusterClient(aioredis.RedisCluster):
    """Redis Cluster client whose MGET may span slots: one MGET per slot (mget_nonatomic).

    A partition's keys share one slot; only reads over all partitions (population sketches,
    ``inspect``) cross slots, and they need no atomicity.
    """

    async def mget(self, keys: Any, *args: Any) -> Any:
        return await self.mget_nonatomic(keys, *args)


def redis_client(settings: Settings) -> aioredis.Redis:
    """An asyncio Redis client from settings (password as a secret)."""
    password = settings.redis_password.get_secret_value() if settings.redis_password else None
    options: dict[str, Any] = {
        "username": settings.redis_username,
        "password": password,
        "socket_timeout": 10,
        "socket_connect_timeout": 5,
    }
    if urlsplit(settings.redis_address).scheme == "redis":
        options["connection_class"] = HiredisPackedConnection  # TLS and sockets: the default
    if settings.redis_cluster:
        return _ClusterClient.from_url(settings.redis_address, **options)  # type: ignore[return-value]
    return aioredis.Redis.from_url(settings.redis_address, health_check_interval=30, **options)


def reply_text(reply: object) -> str:
    """A Redis reply item as text (clients return bytes unless decode_responses is set)."""
    if isinstance(reply, bytes):
        return reply.decode()
    if isinstance(reply, str):
        return reply
    raise TypeError(f"unexpected Redis reply item {type(reply).__name__}")
