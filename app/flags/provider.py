"""OpenFeature behind the `Flags` protocol: the only module that imports the SDK.

`SnapshotProvider` is an OpenFeature provider that answers from the `FlagStore`'s in-memory
snapshot (loaded from PostgreSQL, see service.py), with the tenant id as the targeting key.
`OpenFeatureFlags` registers it under a domain of its own (one per container: the SDK's registry
is global) and implements `Flags` with that domain's client. Everything is a dict lookup and
one murmur3 hash; no I/O per evaluation.

Note the SDK calls providers by keyword and turns any exception (a wrong parameter name
included) into the default value with reason ERROR: keep the signatures exactly as below.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Mapping, Sequence
from typing import TypeVar

from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import FlagResolutionDetails, FlagValueType, Reason
from openfeature.provider import AbstractProvider, Metadata

from app.flags.service import FlagStore

_REASONS = {
    "disabled": Reason.DISABLED,
    "override": Reason.TARGETING_MATCH,
    "rollout": Reason.SPLIT,
}
_domains = itertools.count(1)
V = TypeVar("V")


class SnapshotProvider(AbstractProvider):
    def __init__(self, store: FlagStore) -> None:
        super().__init__()
        self._store = store

    def get_metadata(self) -> Metadata:
        return Metadata(name="storefront-postgres")

    def resolve_boolean_details(
        self,
        flag_key: str,
        default_value: bool,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[bool]:
        rule = self._store.snapshot.rules.get(flag_key)
        if rule is None:
            return FlagResolutionDetails(
                value=default_value, reason=Reason.DEFAULT, error_code=ErrorCode.FLAG_NOT_FOUND
            )
        tenant = evaluation_context.targeting_key if evaluation_context else None
        if not tenant:
            return FlagResolutionDetails(
                value=default_value,
                reason=Reason.ERROR,
                error_code=ErrorCode.TARGETING_KEY_MISSING,
            )
        value, why = rule.evaluate(tenant)
        return FlagResolutionDetails(
            value=value, reason=_REASONS[why], variant="on" if value else "off"
        )

    # Flags here are booleans: other types answer the caller's default.

    def resolve_string_details(
        self,
        flag_key: str,
        default_value: str,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[str]:
        return _mismatch(default_value)

    def resolve_integer_details(
        self,
        flag_key: str,
        default_value: int,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[int]:
        return _mismatch(default_value)

    def resolve_float_details(
        self,
        flag_key: str,
        default_value: float,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[float]:
        return _mismatch(default_value)

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: Sequence[FlagValueType] | Mapping[str, FlagValueType],
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Sequence[FlagValueType] | Mapping[str, FlagValueType]]:
        return _mismatch(default_value)


def _mismatch(default_value: V) -> FlagResolutionDetails[V]:
    return FlagResolutionDetails(
        value=default_value, reason=Reason.ERROR, error_code=ErrorCode.TYPE_MISMATCH
    )


class OpenFeatureFlags:
    """`Flags` through an OpenFeature client bound to this container's provider."""

    def __init__(self, store: FlagStore) -> None:
        self._store = store
        self.domain = f"storefront-{os.getpid()}-{next(_domains)}"
        api.set_provider_and_wait(SnapshotProvider(store), domain=self.domain)
        self._client = api.get_client(domain=self.domain)

    async def enabled(self, flag_key: str, tenant_id: uuid.UUID) -> bool:
        context = EvaluationContext(targeting_key=str(tenant_id))
        return self._client.get_boolean_value(flag_key, False, context)

    async def evaluate_all(self, tenant_id: uuid.UUID) -> dict[str, bool]:
        context = EvaluationContext(targeting_key=str(tenant_id))
        return {
            key: self._client.get_boolean_value(key, False, context)
            for key in self._store.snapshot.rules
        }
