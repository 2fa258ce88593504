"""The base of every config section: strict pydantic models whose numbers are finite and bounded."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, WrapValidator, model_validator

from losslab.core.limits import MAX_EXAMPLES, MAX_MAGNITUDE

Examples = Annotated[int, Field(ge=1, le=MAX_EXAMPLES)]


class Strict(BaseModel):
    """Every number of a config is finite (no inf or nan) and has a stated range; types are strict
    (true is no step count, "0" is no seed); unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True)

    @model_validator(mode="after")
    def _numbers_bounded(self):
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, float) and abs(value) > MAX_MAGNITUDE:
                raise ValueError(f"{name} = {value:g} is beyond +-{MAX_MAGNITUDE:g}")
        return self


def named_section(registry: Mapping[str, type[BaseModel]], default: str):
    """A config section whose `name` picks its kind in `registry` when it is validated (so a kind
    registered after this type was made is found too); a section without `name` is `default`'s.
    It is written out as its kind, every field of it."""

    def pick(value: Any, handler):  # noqa: ARG001 - every kind validates itself
        if isinstance(value, tuple(registry.values())):
            return value
        if not isinstance(value, dict):
            raise ValueError(f"should be a section of keys (got {value!r})")
        name = value.get("name", default)
        if name not in registry:
            raise ValueError(f"unknown name {name!r} (known: {', '.join(map(repr, registry))})")
        return registry[name].model_validate(value)

    return Annotated[SerializeAsAny[Strict], WrapValidator(pick)]
