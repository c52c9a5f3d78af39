"""What the fault file (``DATA_DIR/faults.yaml``) may say, and the checks on it.

The file is nested by area, and every value is optional: a value that is not set (None) leaves the
settings, or the normal behaviour, in charge. Outside the file a fault is named by its dotted key
(``gateway.decline_rate``), which is also the ``fault.name`` of the ``fault_injected`` span event.

    gateway: {decline_rate: 0.2, timeout_rate: 0.05, error_rate: 0.02, latency_ms: 50}
    availability: {delay_ms: 200}
    hold: {ttl_seconds: 5}
    notification: {failure_rate: 0.1}
    queue: {redelivery_rate: 0.1}
    crash: {after_hold: 0.0, after_authorize: 0.02, after_confirm: 0.02}
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

# strict: a rate is a number in the file, never the string "0.2" or the boolean true
Rate = Annotated[float | None, Field(default=None, ge=0.0, le=1.0, strict=True, allow_inf_nan=False)]
Duration = Annotated[float | None, Field(default=None, ge=0.0, strict=True, allow_inf_nan=False)]
# the longest hold availability-service accepts
MAX_HOLD_TTL_S = 24 * 3600


class _Area(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GatewayFaults(_Area):
    """The payment-gateway stand-in; each value replaces the matching ``gateway_*`` setting."""

    decline_rate: Rate = Field(description="share of approving authorizations declined (card_declined)")
    timeout_rate: Rate = Field(description="share authorized but answered after the caller's timeout")
    error_rate: Rate = Field(description="share failing with a 500; nothing is authorized")
    latency_ms: Duration = Field(description="added to every gateway operation")

    @model_validator(mode="after")
    def _one_draw(self) -> GatewayFaults:
        # one random draw decides among the three (so a seeded run repeats): they share one unit
        total = sum(r for r in (self.decline_rate, self.timeout_rate, self.error_rate) if r is not None)
        if total > 1.0 + 1e-9:
            raise ValueError(
                f"decline_rate, timeout_rate and error_rate add up to {total:g}; "
                "one draw decides among them, so together they may be at most 1"
            )
        return self


class AvailabilityFaults(_Area):
    delay_ms: Duration = Field(description="added to every availability search")


class HoldFaults(_Area):
    ttl_seconds: float | None = Field(
        default=None,
        gt=0.0,
        le=MAX_HOLD_TTL_S,
        strict=True,
        allow_inf_nan=False,
        description="lifetime of new holds, instead of the hold_ttl_seconds setting",
    )


class NotificationFaults(_Area):
    failure_rate: Rate = Field(description="share of delivery attempts that fail before the e-mail is sent")


class QueueFaults(_Area):
    redelivery_rate: Rate = Field(description="share of acked messages delivered once more, later")


class CrashFaults(_Area):
    """booking-service exits hard at a saga point with this probability (saga recovery then runs)."""

    after_hold: Rate = Field(description="crash after the hold is placed")
    after_authorize: Rate = Field(description="crash after the card is authorized")
    after_confirm: Rate = Field(description="crash after the booking is confirmed, before capture")


AREAS: dict[str, type[_Area]] = {
    "gateway": GatewayFaults,
    "availability": AvailabilityFaults,
    "hold": HoldFaults,
    "notification": NotificationFaults,
    "queue": QueueFaults,
    "crash": CrashFaults,
}


class Faults(_Area):
    """Every fault that can be turned on; an empty ``Faults()`` is normal behaviour."""

    gateway: GatewayFaults = GatewayFaults()
    availability: AvailabilityFaults = AvailabilityFaults()
    hold: HoldFaults = HoldFaults()
    notification: NotificationFaults = NotificationFaults()
    queue: QueueFaults = QueueFaults()
    crash: CrashFaults = CrashFaults()

    @model_validator(mode="before")
    @classmethod
    def _empty_areas(cls, data: Any) -> Any:
        # `gateway:` with nothing under it is an empty area in YAML, not an error
        if isinstance(data, dict):
            return {k: ({} if v is None else v) for k, v in data.items()}
        return data

    def get(self, key: str) -> float | None:
        area, name = split_key(key)
        return getattr(getattr(self, area), name)  # type: ignore[no-any-return]

    def active(self) -> dict[str, float]:
        """The dotted key and value of every fault that is set, in the order of :func:`fault_keys`."""
        return {key: value for key in fault_keys() if (value := self.get(key)) is not None}

    def to_document(self) -> dict[str, dict[str, float]]:
        """The nested mapping written to the file: only what is set, no empty areas."""
        document: dict[str, dict[str, float]] = {}
        for key, value in self.active().items():
            area, name = key.split(".")
            document.setdefault(area, {})[name] = value
        return document


class FaultError(ValueError):
    """A fault key or value that is refused; ``key`` names it (None when the whole file is wrong)."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


def fault_keys() -> list[str]:
    """Every dotted key, area by area."""
    return [f"{area}.{name}" for area, model in AREAS.items() for name in model.model_fields]


def describe(key: str) -> str:
    area, name = split_key(key)
    return AREAS[area].model_fields[name].description or ""


def split_key(key: str) -> tuple[str, str]:
    area, _, name = key.partition(".")
    model = AREAS.get(area)
    if model is None or name not in model.model_fields:
        raise FaultError(f"unknown fault {key!r}; known faults: {', '.join(fault_keys())}", key=key)
    return area, name


def parse_document(document: Any) -> Faults:
    """The faults of a parsed YAML document (None for an empty file); raises :class:`FaultError`."""
    if document is None:
        return Faults()
    if not isinstance(document, dict):
        raise FaultError(
            f"the fault file must be a mapping of areas ({', '.join(AREAS)}), not {type(document).__name__}"
        )
    try:
        return Faults.model_validate(document)
    except ValidationError as exc:
        raise _fault_error(exc) from None


def _fault_error(exc: ValidationError) -> FaultError:
    """The first problem of a validation error, named by its dotted key."""
    first = exc.errors()[0]
    loc = [str(part) for part in first["loc"]]
    key = ".".join(loc) if loc else None
    if first["type"] == "extra_forbidden":
        if len(loc) == 1:
            return FaultError(f"unknown fault area {loc[0]!r}; known areas: {', '.join(AREAS)}", key=key)
        known = ", ".join(f"{loc[0]}.{n}" for n in AREAS[loc[0]].model_fields)
        return FaultError(f"unknown fault {key!r}; known in {loc[0]}: {known}", key=key)
    message = first["msg"].removeprefix("Value error, ").replace("Input should be", "must be")
    if first["type"] in ("float_type", "model_type", "dict_type"):
        message = "must be a number" if first["type"] == "float_type" else "must be a mapping of faults"
    elif first["type"] in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        message = f"{message} (got {first['input']!r})"
    return FaultError(f"{key}: {message}" if key else message, key=key)


def parse_value(key: str, text: str) -> float | None:
    """The value of ``KEY=VALUE`` on the command line: a number, or None for ``KEY=`` / ``KEY=none``."""
    split_key(key)
    text = text.strip()
    if text == "" or text.lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        raise FaultError(f"{key}: {text!r} is not a number", key=key) from None
    if not math.isfinite(value):
        raise FaultError(f"{key}: must be a finite number", key=key)
    return value


def with_values(faults: Faults, values: dict[str, float | None]) -> Faults:
    """``faults`` with some keys set or unset (None), checked as a whole."""
    document: dict[str, dict[str, float | None]] = {area: dict(v) for area, v in faults.to_document().items()}
    for key, value in values.items():
        area, name = split_key(key)
        document.setdefault(area, {})[name] = value
    return parse_document(document)
