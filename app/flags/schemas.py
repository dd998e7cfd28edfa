from __future__ import annotations

from pydantic import BaseModel, Field


class FeaturesRead(BaseModel):
    """The caller's tenant's flags, evaluated now (unknown flags are off and not listed)."""

    features: dict[str, bool] = Field(examples=[{"catalog.search_prefix": True}])
