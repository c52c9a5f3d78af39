"""Reading a ``tail_sampling`` block of the OpenTelemetry Collector into a :class:`SamplingConfig`.

The vocabulary and defaults are the Collector contrib's (``processor/tailsamplingprocessor``,
``config.go`` and ``README.md``): ``decision_wait`` (Go duration, default 30s), ``num_traces``
(default 50000), ``expected_new_traces_per_sec`` (accepted, unused), ``decision_cache``
(``sampled_cache_size``, ``non_sampled_cache_size``), ``sample_on_first_match`` and ``policies``.
Anything else, a policy type this sampler does not implement, or a malformed value is a
``ValueError`` naming the policy, so a typo never silently changes what is kept.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from bookline.services.telemetry.sampling.policies import (
    AlwaysSample,
    And,
    BooleanAttribute,
    Drop,
    Latency,
    NumericAttribute,
    Policy,
    Probabilistic,
    StatusCode,
    StringAttribute,
)

DEFAULT_DECISION_WAIT_S = 30.0
DEFAULT_NUM_TRACES = 50_000
PACKAGED_POLICY_FILE = "sampling-policies.yaml"

_TOP_LEVEL_KEYS = frozenset(
    {
        "decision_wait",
        "num_traces",
        "expected_new_traces_per_sec",
        "decision_cache",
        "sample_on_first_match",
        "policies",
    }
)
# Collector options that change behaviour this sampler does not reproduce: refuse rather than ignore
_COLLECTOR_ONLY_KEYS = frozenset(
    {
        "block_on_overflow",
        "drop_pending_traces_on_shutdown",
        "decision_wait_after_root_received",
        "maximum_trace_size_bytes",
    }
)
_COLLECTOR_ONLY_TYPES = frozenset(
    {
        "rate_limiting",
        "bytes_limiting",
        "span_count",
        "trace_state",
        "trace_flags",
        "ottl_condition",
        "composite",
        "not",
    }
)
_STATUS_CODES = frozenset({"OK", "ERROR", "UNSET"})


@dataclass(frozen=True)
class SamplingConfig:
    """A parsed ``tail_sampling`` block: when to decide, how much to buffer, and the policies."""

    decision_wait_s: float
    num_traces: int
    policies: tuple[Policy, ...]
    sampled_cache_size: int = 0
    non_sampled_cache_size: int = 0
    sample_on_first_match: bool = False

    @classmethod
    def from_mapping(cls, tail_sampling: Mapping) -> SamplingConfig:
        """Parse the processor's config block (the mapping under ``processors.tail_sampling``)."""
        if not isinstance(tail_sampling, Mapping):
            raise ValueError("the tail_sampling configuration must be a mapping")
        _reject_unknown(tail_sampling, "tail_sampling")
        cache = tail_sampling.get("decision_cache") or {}
        if not isinstance(cache, Mapping):
            raise ValueError("tail_sampling.decision_cache must be a mapping")
        _only(cache, {"sampled_cache_size", "non_sampled_cache_size"}, "tail_sampling.decision_cache")
        _count(tail_sampling, "expected_new_traces_per_sec", "tail_sampling", default=0)
        return cls(
            decision_wait_s=parse_duration(tail_sampling.get("decision_wait", f"{DEFAULT_DECISION_WAIT_S:g}s")),
            num_traces=_count(tail_sampling, "num_traces", "tail_sampling", default=DEFAULT_NUM_TRACES, minimum=1),
            policies=_parse_policies(tail_sampling.get("policies")),
            sampled_cache_size=_count(cache, "sampled_cache_size", "tail_sampling.decision_cache", default=0),
            non_sampled_cache_size=_count(cache, "non_sampled_cache_size", "tail_sampling.decision_cache", default=0),
            sample_on_first_match=_flag(tail_sampling, "sample_on_first_match", "tail_sampling"),
        )

    @classmethod
    def load(cls, path: Path | None = None) -> SamplingConfig:
        """Read a policy file: the packaged default when ``path`` is None.

        The file holds the keys of a ``tail_sampling`` block at its top level; a whole Collector
        configuration is accepted too, and its ``processors.tail_sampling`` block is used.
        """
        if path is None:
            source = f"packaged {PACKAGED_POLICY_FILE}"
            text = resources.files("bookline.services.telemetry").joinpath(PACKAGED_POLICY_FILE).read_text("utf-8")
        else:
            source = str(path)
            try:
                text = Path(path).read_text("utf-8")
            except OSError as exc:
                raise ValueError(f"cannot read the sampling policy file {source}: {exc.strerror}") from exc
        try:
            data = yaml.safe_load(text)
            processors = data.get("processors") if isinstance(data, Mapping) and "policies" not in data else None
            if isinstance(processors, Mapping):
                data = processors.get("tail_sampling")
            return cls.from_mapping(data)
        except yaml.YAMLError as exc:
            raise ValueError(f"{source}: not valid YAML: {exc}") from exc
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from exc


_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: Any) -> float:
    """Seconds in a Go duration string (``time.ParseDuration``): ``10s``, ``500ms``, ``1m30s``."""
    if not isinstance(value, str):
        # a bare number would be nanoseconds to the Collector, which is never what was meant
        raise ValueError(f"tail_sampling.decision_wait must be a duration string such as '10s', not {value!r}")
    text = value.strip()
    body = text.lstrip("+")
    if body == "0":
        return 0.0
    position, seconds = 0, 0.0
    while position < len(body):
        part = _DURATION_PART.match(body, position)
        if part is None:
            break
        seconds += float(part.group(1)) * _UNIT_SECONDS[part.group(2)]
        position = part.end()
    if not body or position != len(body):
        raise ValueError(f"tail_sampling.decision_wait {value!r} is not a duration (e.g. '10s', '500ms', '1m30s')")
    return seconds


def _parse_policies(raw: Any) -> tuple[Policy, ...]:
    if not isinstance(raw, list) or not raw:
        raise ValueError("tail_sampling.policies must be a non-empty list of policies")
    policies: list[Policy] = []
    names: set[str] = set()
    for index, item in enumerate(raw):
        name = item.get("name") if isinstance(item, Mapping) else None
        if not isinstance(name, str) or not name:
            raise ValueError(f"tail_sampling.policies[{index}] needs a non-empty 'name'")
        if name in names:
            raise ValueError(f"duplicate sampling policy name {name!r}")
        names.add(name)
        policies.append(_parse_policy(item, name, f"sampling policy {name!r}", composite_allowed=True))
    return tuple(policies)


def _parse_policy(raw: Mapping, name: str, where: str, *, composite_allowed: bool) -> Policy:
    kind = raw.get("type")
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"{where}: needs a 'type'")
    if kind in _COLLECTOR_ONLY_TYPES:
        raise ValueError(f"{where}: type {kind!r} is a Collector policy Bookline's sampler does not implement")
    parser = _PARSERS.get(kind)
    if parser is None:
        raise ValueError(f"{where}: unknown policy type {kind!r} (known: {', '.join(sorted(_PARSERS))})")
    if kind in ("and", "drop") and not composite_allowed:
        # the Collector's and/drop sub-policies are "shared" policies: no and, drop or composite inside
        raise ValueError(f"{where}: an {kind!r} policy cannot be a sub-policy")
    # a block for another type would be silently ignored by the Collector: it is almost always a typo
    _only(raw, {"name", "type"} | ({kind} if kind != "always_sample" else set()), where)
    block = raw.get(kind, {})
    if block is None:
        block = {}
    if not isinstance(block, Mapping):
        raise ValueError(f"{where}: '{kind}' must be a mapping")
    return parser(name, block, where)


def _always_sample(name: str, block: Mapping, where: str) -> Policy:
    return AlwaysSample(name)


def _status_code(name: str, block: Mapping, where: str) -> Policy:
    _only(block, {"status_codes"}, where)
    codes = _strings(block, "status_codes", where)
    if not codes:
        raise ValueError(f"{where}: status_codes needs at least one of OK, ERROR, UNSET")
    unknown = [c for c in codes if c not in _STATUS_CODES]
    if unknown:
        raise ValueError(f"{where}: unknown status code {unknown[0]!r}, supported: OK, ERROR, UNSET")
    return StatusCode(name, frozenset(codes))


def _latency(name: str, block: Mapping, where: str) -> Policy:
    _only(block, {"threshold_ms", "upper_threshold_ms"}, where)
    lower = _integer(block, "threshold_ms", where, default=0)
    upper = _integer(block, "upper_threshold_ms", where, default=0)
    if lower < 0 or upper < 0:
        raise ValueError(f"{where}: latency thresholds cannot be negative")
    if upper and upper <= lower:
        raise ValueError(f"{where}: upper_threshold_ms ({upper}) must be greater than threshold_ms ({lower})")
    return Latency(name, lower, upper)


def _string_attribute(name: str, block: Mapping, where: str) -> Policy:
    _only(block, {"key", "values", "enabled_regex_matching", "cache_max_size", "invert_match"}, where)
    values = _strings(block, "values", where)
    regex = _flag(block, "enabled_regex_matching", where)
    if regex:
        for value in values:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"{where}: {value!r} is not a valid regular expression: {exc}") from exc
    return StringAttribute(
        name,
        key=_key(block, where),
        values=tuple(values),
        enabled_regex_matching=regex,
        cache_max_size=_integer(block, "cache_max_size", where, default=0),
        invert_match=_flag(block, "invert_match", where),
    )


def _boolean_attribute(name: str, block: Mapping, where: str) -> Policy:
    _only(block, {"key", "value", "invert_match"}, where)
    value = block.get("value", False)
    if not isinstance(value, bool):
        raise ValueError(f"{where}: boolean_attribute.value must be true or false, not {value!r}")
    return BooleanAttribute(name, _key(block, where), value, _flag(block, "invert_match", where))


def _numeric_attribute(name: str, block: Mapping, where: str) -> Policy:
    _only(block, {"key", "min_value", "max_value", "invert_match"}, where)
    # the Collector treats 0 as "not set" for both bounds
    low = _integer(block, "min_value", where, default=0) or None
    high = _integer(block, "max_value", where, default=0) or None
    if low is None and high is None:
        raise ValueError(f"{where}: numeric_attribute needs a non-zero min_value or max_value")
    if low is not None and high is not None and low > high:
        raise ValueError(f"{where}: min_value ({low}) is greater than max_value ({high})")
    return NumericAttribute(name, _key(block, where), low, high, _flag(block, "invert_match", where))


def _probabilistic(name: str, block: Mapping, where: str) -> Policy:
    if "hashing_seed" in block or "hash_seed" in block:
        raise ValueError(f"{where}: the tail-sampling probabilistic policy names its seed 'hash_salt' (a string)")
    _only(block, {"hash_salt", "sampling_percentage"}, where)
    percentage = block.get("sampling_percentage", 0)
    if isinstance(percentage, bool) or not isinstance(percentage, int | float) or not math.isfinite(percentage):
        raise ValueError(f"{where}: sampling_percentage must be a number, not {percentage!r}")
    if not 0 <= percentage <= 100:
        raise ValueError(f"{where}: sampling_percentage must be between 0 and 100, not {percentage}")
    salt = block.get("hash_salt", "")
    if not isinstance(salt, str):
        raise ValueError(f"{where}: hash_salt must be a string, not {salt!r}")
    return Probabilistic(name, float(percentage), salt)


def _sub_policies(name: str, block: Mapping, where: str, key: str) -> tuple[Policy, ...]:
    _only(block, {key}, where)
    raw = block.get(key)
    if not isinstance(raw, list) or not raw:
        # an empty list would make and/drop match every trace
        raise ValueError(f"{where}: {key} must be a non-empty list of policies")
    subs = []
    for index, item in enumerate(raw):
        if not isinstance(item, Mapping):
            raise ValueError(f"{where}: {key}[{index}] must be a policy mapping")
        sub_name = item.get("name") or f"{name}[{index}]"
        if not isinstance(sub_name, str):
            raise ValueError(f"{where}: {key}[{index}].name must be a string")
        subs.append(_parse_policy(item, sub_name, f"{where} > {sub_name!r}", composite_allowed=False))
    return tuple(subs)


def _and(name: str, block: Mapping, where: str) -> Policy:
    return And(name, _sub_policies(name, block, where, "and_sub_policy"))


def _drop(name: str, block: Mapping, where: str) -> Policy:
    return Drop(name, _sub_policies(name, block, where, "drop_sub_policy"))


_PARSERS: dict[str, Callable[[str, Mapping, str], Policy]] = {
    "always_sample": _always_sample,
    "status_code": _status_code,
    "latency": _latency,
    "string_attribute": _string_attribute,
    "boolean_attribute": _boolean_attribute,
    "numeric_attribute": _numeric_attribute,
    "probabilistic": _probabilistic,
    "and": _and,
    "drop": _drop,
}


def _reject_unknown(block: Mapping, where: str) -> None:
    for key in block:
        if key in _COLLECTOR_ONLY_KEYS:
            raise ValueError(f"{where}.{key} is a Collector option Bookline's sampler does not implement")
    _only(block, _TOP_LEVEL_KEYS, where)


def _only(block: Mapping, allowed: set[str] | frozenset[str], where: str) -> None:
    unknown = sorted(str(k) for k in block if k not in allowed)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")


def _key(block: Mapping, where: str) -> str:
    key = block.get("key")
    if not isinstance(key, str) or not key:
        raise ValueError(f"{where}: needs a non-empty attribute 'key'")
    return key


def _strings(block: Mapping, field: str, where: str) -> list[str]:
    values = block.get(field, [])
    if values is None:
        return []
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ValueError(f"{where}: {field} must be a list of strings (quote numbers), not {values!r}")
    return values


def _integer(block: Mapping, field: str, where: str, *, default: int) -> int:
    value = block.get(field, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{where}: {field} must be an integer, not {value!r}")
    return value


def _count(block: Mapping, field: str, where: str, *, default: int, minimum: int = 0) -> int:
    value = _integer(block, field, where, default=default)
    if value < minimum:
        raise ValueError(f"{where}: {field} must be at least {minimum}, not {value}")
    return value


def _flag(block: Mapping, field: str, where: str) -> bool:
    value = block.get(field, False)
    if not isinstance(value, bool):
        raise ValueError(f"{where}: {field} must be true or false, not {value!r}")
    return value
