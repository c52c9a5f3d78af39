"""The query-string filters of the store's read API, checked and turned into typed values.

Every bad value is an :class:`InvalidFilterError` (answered 400 ``invalid_filter``) naming the
parameter; nothing a caller sends ever becomes SQL text: values are bound parameters, and attribute
keys become JSON paths that are bound too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

STATUSES = {"unset": 0, "ok": 1, "error": 2}
MAX_LIMIT = 1000
_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_HEX16 = re.compile(r"^[0-9a-f]{16}$")
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")
_MAX_TEXT = 512
_SPACED_OFFSET = re.compile(r" (\d\d:?\d\d)$")


class InvalidFilterError(ValueError):
    """A query parameter the store cannot use."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter


def _text(params: Mapping[str, str], name: str) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if len(value) > _MAX_TEXT:
        raise InvalidFilterError(name, f"longer than {_MAX_TEXT} characters")
    return value


def parse_time_ns(params: Mapping[str, str], name: str) -> int | None:
    """ISO 8601 (a time without zone is UTC) or unix milliseconds, as unix nanoseconds."""
    value = _text(params, name)
    if value is None:
        return None
    if _NUMBER.match(value):
        return int(float(value) * 1_000_000)
    try:
        # an unescaped "+01:00" in a URL arrives as " 01:00"
        moment = datetime.fromisoformat(_SPACED_OFFSET.sub(r"+\1", value))
    except ValueError:
        raise InvalidFilterError(name, "expected ISO 8601 (2027-03-05T10:00:00Z) or unix milliseconds") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1_000_000) * 1000


def parse_int(params: Mapping[str, str], name: str, default: int, *, low: int, high: int) -> int:
    value = _text(params, name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise InvalidFilterError(name, "expected a whole number") from None
    if not low <= number <= high:
        raise InvalidFilterError(name, f"expected {low} to {high}")
    return number


def _duration_ns(params: Mapping[str, str], name: str) -> int | None:
    value = _text(params, name)
    if value is None:
        return None
    try:
        millis = float(value)
    except ValueError:
        raise InvalidFilterError(name, "expected milliseconds (a number)") from None
    if not 0 <= millis < 1e12:
        raise InvalidFilterError(name, "expected a non-negative number of milliseconds")
    return int(millis * 1_000_000)


def hex_id(params: Mapping[str, str], name: str, length: int) -> str | None:
    value = _text(params, name)
    if value is None:
        return None
    value = value.lower()
    if not (_HEX32 if length == 32 else _HEX16).match(value):
        raise InvalidFilterError(name, f"expected {length} hexadecimal characters")
    return value


def attribute_candidates(value: str) -> list[str]:
    """The JSON texts an attribute given as ``value`` in a URL may be stored as: the string itself,
    and the number or boolean it spells."""
    candidates = [_json_string(value)]
    if value in ("true", "false"):
        candidates.append(value)
    elif _NUMBER.match(value):
        number = float(value)
        candidates.append(value)
        if number.is_integer():
            candidates += [str(int(number)), f"{number:.1f}"]
        else:
            candidates.append(repr(number))
    return list(dict.fromkeys(candidates))


def _json_string(value: str) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def attribute_path(key: str) -> str:
    """The JSON path of a flat, dotted attribute key (``$."booking.outcome"``)."""
    if not key or '"' in key or "\\" in key:
        raise InvalidFilterError(f"attr.{key}", "an attribute key must be non-empty without quotes or backslashes")
    return f'$."{key}"'


@dataclass(frozen=True)
class TraceQuery:
    service: str | None = None
    name: str | None = None
    status: int | None = None
    outcome: str | None = None
    min_duration_ns: int | None = None
    max_duration_ns: int | None = None
    since_ns: int | None = None
    until_ns: int | None = None
    # (JSON path, accepted JSON texts) per attr.KEY=VALUE
    attributes: tuple[tuple[str, tuple[str, ...]], ...] = field(default_factory=tuple)
    limit: int = 20

    @property
    def span_level(self) -> bool:
        return bool(self.service or self.name or self.status is not None or self.attributes)

    @classmethod
    def from_params(cls, params: Mapping[str, str], multi: list[tuple[str, str]] | None = None) -> TraceQuery:
        status_text = _text(params, "status")
        status = None
        if status_text is not None:
            status = STATUSES.get(status_text.lower())
            if status is None:
                raise InvalidFilterError("status", "expected ok, error or unset")
        attrs: list[tuple[str, tuple[str, ...]]] = []
        for key, value in multi if multi is not None else list(params.items()):
            if key.startswith("attr."):
                if len(value) > _MAX_TEXT:
                    raise InvalidFilterError(key, f"longer than {_MAX_TEXT} characters")
                attrs.append((attribute_path(key[5:]), tuple(attribute_candidates(value))))
        query = cls(
            service=_text(params, "service"),
            name=_text(params, "name"),
            status=status,
            outcome=_text(params, "outcome"),
            min_duration_ns=_duration_ns(params, "min_duration_ms"),
            max_duration_ns=_duration_ns(params, "max_duration_ms"),
            since_ns=parse_time_ns(params, "since"),
            until_ns=parse_time_ns(params, "until"),
            attributes=tuple(attrs),
            limit=parse_int(params, "limit", 20, low=1, high=MAX_LIMIT),
        )
        if query.since_ns is not None and query.until_ns is not None and query.since_ns > query.until_ns:
            raise InvalidFilterError("since", "is after until")
        return query

    def sql(self) -> tuple[str, list[Any]]:
        """The WHERE clause over ``traces t`` and its parameters."""
        where, args = ["1"], []
        if self.since_ns is not None:
            where.append("t.start_ns >= ?")
            args.append(self.since_ns)
        if self.until_ns is not None:
            where.append("t.start_ns <= ?")
            args.append(self.until_ns)
        if self.min_duration_ns is not None:
            where.append("t.end_ns - t.start_ns >= ?")
            args.append(self.min_duration_ns)
        if self.max_duration_ns is not None:
            where.append("t.end_ns - t.start_ns <= ?")
            args.append(self.max_duration_ns)
        if self.outcome is not None:
            where.append("t.booking_outcome = ?")
            args.append(self.outcome)
        if self.status == STATUSES["error"]:
            where.append("t.error = 1")  # a trace summary knows it holds an ERROR span: narrow first
        if self.span_level:
            # newest traces first, each asked whether one of its spans matches: a common match stops
            # after `limit` traces; with a name, each question is one probe of the (trace, name) index
            span_where, span_args = self._span_sql()
            where.append(f"EXISTS (SELECT 1 FROM spans s WHERE s.trace_id = t.trace_id AND {span_where})")
            args += span_args
        return " AND ".join(where), args

    def _span_sql(self) -> tuple[str, list[Any]]:
        where, args = [], []
        if self.name is not None:
            where.append("s.name = ?")
            args.append(self.name)
        if self.service is not None:
            where.append("s.service = ?")
            args.append(self.service)
        if self.status is not None:
            where.append("s.status_code = ?")
            args.append(self.status)
        for path, candidates in self.attributes:
            where.append(f"(s.attributes -> ?) IN ({','.join('?' * len(candidates))})")
            args += [path, *candidates]
        return " AND ".join(where), args
