"""Who the client is: the one helper behind throttling, lockouts and the access log.

The TCP peer is the client unless it is one of `server.trusted_proxies`; then the client is the
right-most `X-Forwarded-For` address that is not a trusted proxy (every proxy appends the address
it received from, so only the entries our own proxies added can be believed, and the right-most
untrusted one is the last hop a trusted proxy saw). uvicorn's own proxy handling is off
(`storefront serve` runs it with `proxy_headers=False`), so a client cannot pick its address by
sending the header itself.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    def __init__(self, networks: Iterable[str]) -> None:
        self._networks: tuple[Network, ...] = tuple(
            ipaddress.ip_network(n, strict=False) for n in networks
        )

    def __bool__(self) -> bool:
        return bool(self._networks)

    def trusts(self, address: str) -> bool:
        return _trusted(self._networks, address)

    def client(self, peer: str | None, forwarded_for: str | None) -> str | None:
        """The client's address, given the TCP peer and the X-Forwarded-For header (if any)."""
        if peer is None or not forwarded_for or not self.trusts(peer):
            return peer
        client = peer
        for hop in reversed(forwarded_for.split(",")):
            hop = hop.strip()
            if not _valid(hop):
                break  # garbage in the chain: stop believing it at this point
            client = hop
            if not self.trusts(hop):
                break
        return client


@lru_cache(maxsize=4096)
def _trusted(networks: tuple[Network, ...], address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def _valid(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True
