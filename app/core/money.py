"""Money: integer minor units plus an ISO 4217 currency code; never floats."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Money:
    amount: int
    currency: str
