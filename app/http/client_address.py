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
        """The client's address (normalized), given the TCP peer and the X-Forwarded-For header
        (if any)."""
        if peer is None:
            return None
        client = normalize(peer)
        if not forwarded_for or not self.trusts(client):
            return client
        for hop in reversed(forwarded_for.split(",")):
            hop = normalize(hop.strip())
            if not _valid(hop):
                break  # garbage in the chain: stop believing it at this point
            client = hop
            if not self.trusts(hop):
                break
        return client


@lru_cache(maxsize=4096)
def normalize(address: str) -> str:
    """One spelling per address: an IPv4-mapped IPv6 address is its IPv4 address, an IPv6
    zone (`%eth0`) is dropped, IPv6 is compressed. Not an address: returned as it is."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


@lru_cache(maxsize=4096)
def throttle_bucket(address: str) -> str:
    """What per-address limits count: an IPv4 address, or the /64 an IPv6 address is in (one
    subscriber usually holds a whole /64, so counting single IPv6 addresses counts nothing)."""
    address = normalize(address)
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return address


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
