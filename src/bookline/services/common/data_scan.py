"""The scans of stored rows behind every ``GET /admin/card-scan`` and ``POST /admin/data-scan``: look
through stored rows for what must not be there, and say where (table, column, row key) without ever
returning the value.

The card scan looks for card numbers. The data scan looks for personal data of any kind: a card
number, an e-mail address, a phone number (exactly what the redaction step scrubs as one:
``bookline.redaction.personal_data_kinds``), or a guest's name, which no pattern can tell and which is
found by value instead: the caller gives the names to look for (``GuestNames``). The only places a
guest's name, e-mail and phone may be stored are the guest columns of booking-service's and
confirmation-service's own ``bookings`` tables (``GUEST_COLUMNS``): their data scans skip exactly those.

A card number here is exactly what the redaction step scrubs as one (``bookline.redaction``, one
definition for both): 13 to 19 digits wherever they stand, alone, inside a word or joined to one by
"-" or "_" (u-4111111111111111), maybe grouped by single spaces or dashes, that pass the Luhn check,
so that an order number or a timestamp is not taken for one. A column holding JSON is read as JSON
and its strings (keys and values) are examined, as the redaction step examines the strings of spans:
numbers in JSON are durations, counts and timestamps, not cards.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from sqlalchemy import MetaData, String, Table, select

from bookline.adapters.db import Database
from bookline.redaction import (
    PERSONAL_DATA_KINDS,
    REDACTED,
    could_hold_card_number,
    looks_like_card_number,
    personal_data_kinds,
    scrub,
)

# an answer names at most this many places; the count of rows with a card is always exact
MAX_HITS = 1000
_FETCH_ROWS = 2000

# The columns that may hold a guest's name, e-mail address and phone number: booking-service's and
# confirmation-service's own ``bookings`` tables (each service passes it to its data scan), and no other.
GUEST_COLUMNS: frozenset[tuple[str, str]] = frozenset(
    {("bookings", "guest_name"), ("bookings", "guest_email"), ("bookings", "guest_phone")}
)
# what a data scan hit can be, in the order a row's hits are listed
KINDS = (*PERSONAL_DATA_KINDS, "name")
# a name shorter than this (after its spaces are collapsed) is not looked for: "Al" is in too many texts
MIN_NAME_CHARS = 3
_WORD = re.compile(r"\w+")
# white space, and the space of a URL's query string ("+" or "%20"), where a client may put a name
_SPACES = re.compile(r"(?:\s|\+|%20)+")


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, inner in value.items():
            yield str(key)
            yield from _strings(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _strings(inner)


def holds_card_number(text: str | None) -> bool:
    """Whether a stored text (plain, or JSON) holds a card number anywhere in its strings."""
    if not text:
        return False
    # most texts (ids, names, SQL) have no 13 digits in a row: no JSON parse, no regex. JSON may spell
    # a digit as an escape (\u0034), which only the parse turns back into one
    if "\\u" not in text and not could_hold_card_number(text):
        return False
    stripped = text.lstrip()
    if stripped[:1] in ("{", "[", '"'):
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if parsed is not None:
            return any(looks_like_card_number(s) for s in _strings(parsed))
    return looks_like_card_number(text)


@dataclass(frozen=True)
class CardHit:
    """Where a card number was found: never the number itself (the row key is scrubbed as well)."""

    table: str
    column: str
    row_key: str


@dataclass
class CardScan:
    hits: list[CardHit] = field(default_factory=list)
    rows_scanned: int = 0
    rows_with_card: int = 0

    def add(self, table: str, column: str, row_key: str) -> None:
        if len(self.hits) < MAX_HITS:
            self.hits.append(CardHit(table, column, scrub(row_key)))

    def row(self, table: str, key: str, columns: Iterable[tuple[str, str | None]]) -> None:
        """Examine one row's texts (column name, value)."""
        self.rows_scanned += 1
        found = False
        for column, value in columns:
            if holds_card_number(value):
                self.add(table, column, key)
                found = True
        self.rows_with_card += found

    def body(self) -> dict[str, Any]:
        return {
            "hits": [asdict(h) for h in self.hits],
            "rows_scanned": self.rows_scanned,
            "rows_with_card": self.rows_with_card,
            "truncated": self.rows_with_card > len(self.hits),
        }


class GuestNames:
    """The guests' names a data scan looks for: each one as whole words, whatever their case.

    A name is found where its words stand in a text as they stand in the name, whole, in any case, and
    separated as in the name but for the amount of white space: "Ana Lopez" in "guest Ana Lopez booked",
    "ANA  LOPEZ" or split over two lines; "Jean-Luc Picard" in "jean-luc picard"; never in "Anastasia Lopez",
    "Ana Lopezes", "Lopez, Ana" nor "ana.lopez" (an e-mail address is found as one). Names shorter than
    ``MIN_NAME_CHARS`` are not looked for. The names are held only in this object (their words folded
    to lower case, and what separates them).
    """

    def __init__(self, names: Iterable[str] = ()) -> None:
        by_first: dict[str, set[tuple[tuple[str, ...], tuple[str, ...]]]] = {}
        for name in names:
            if len(" ".join(name.split())) < MIN_NAME_CHARS:
                continue
            words = list(_WORD.finditer(name))
            if words:
                folded = tuple(w.group().casefold() for w in words)
                by_first.setdefault(folded[0], set()).add((folded, _gaps(name, words)))
        # the longest first: "Ana Maria Lopez" before "Ana Maria", so a redaction takes the whole name
        self._by_first = {
            first: sorted(found, key=lambda name: len(name[0]), reverse=True) for first, found in by_first.items()
        }

    def __bool__(self) -> bool:
        return bool(self._by_first)

    def __len__(self) -> int:
        return sum(len(found) for found in self._by_first.values())

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Where the names stand in ``text`` (start, end), in order, not overlapping."""
        if not self._by_first or not text:
            return []
        words = list(_WORD.finditer(text))
        folded = [m.group().casefold() for m in words]
        found: list[tuple[int, int]] = []
        i = 0
        while i < len(folded):
            for name, gaps in self._by_first.get(folded[i], ()):
                end = i + len(name)
                if tuple(folded[i:end]) == name and _gaps(text, words[i:end]) == gaps:
                    found.append((words[i].start(), words[end - 1].end()))
                    i = end
                    break
            else:
                i += 1
        return found

    def found_in(self, text: str) -> bool:
        return bool(self.spans(text))

    def redact(self, text: str) -> str:
        """``text`` with every name in it replaced by [REDACTED]."""
        parts, position = [], 0
        for start, end in self.spans(text):
            parts.append(text[position:start])
            parts.append(REDACTED)
            position = end
        return "".join(parts) + text[position:] if parts else text


def _gaps(text: str, words: list[re.Match[str]]) -> tuple[str, ...]:
    """What separates each word from the next, any white space as one space, folded like the words."""
    return tuple(
        _SPACES.sub(" ", text[before.end() : after.start()]).casefold()
        for before, after in zip(words, words[1:], strict=False)
    )


def _may_hold_personal_data(text: str, names: GuestNames) -> bool:
    """The cheap questions first: a text with none of what each kind needs is not parsed nor searched.
    A backslash may be a JSON escape hiding any of them, which only the parse turns back."""
    return (
        "\\" in text
        or "@" in text
        or "+" in text
        or "%" in text
        or could_hold_card_number(text)
        or (bool(names) and names.found_in(text))
    )


def _texts(text: str) -> Iterator[str]:
    """The texts a stored value holds: the strings (keys and values) of a JSON value, else itself."""
    if text.lstrip()[:1] in ("{", "[", '"'):
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if parsed is not None:
            yield from _strings(parsed)
            return
    yield text


def personal_data_in(text: str | None, names: GuestNames | None = None) -> set[str]:
    """What a stored text (plain, or JSON) holds of personal data: a subset of ``KINDS``."""
    names = names if names is not None else GuestNames()
    if not text or not _may_hold_personal_data(text, names):
        return set()
    kinds: set[str] = set()
    for inner in _texts(text):
        kinds |= personal_data_kinds(inner)
        if names and "name" not in kinds and names.found_in(inner):
            kinds.add("name")
    return kinds


@dataclass(frozen=True)
class DataHit:
    """Where personal data was found, and of which kind: never the value (nor in the row key)."""

    kind: str  # card | email | phone | name
    table: str
    column: str
    row_key: str


@dataclass
class DataScan:
    """A data scan: every text of every row examined for every kind, but in the ``allowed`` columns
    (table, column), where the service may keep them."""

    names: GuestNames = field(default_factory=GuestNames)
    allowed: frozenset[tuple[str, str]] = frozenset()
    hits: list[DataHit] = field(default_factory=list)
    rows_scanned: int = 0
    rows_with_hits: int = 0
    hit_count: int = 0

    def add(self, kind: str, table: str, column: str, row_key: str) -> None:
        self.hit_count += 1
        if len(self.hits) < MAX_HITS:
            self.hits.append(DataHit(kind, table, column, self.names.redact(scrub(row_key))))

    def row(self, table: str, key: str, columns: Iterable[tuple[str, str | None]]) -> None:
        """Examine one row's texts (column name, value)."""
        self.rows_scanned += 1
        found = False
        for column, value in columns:
            if (table, column) in self.allowed:
                continue
            kinds = personal_data_in(value, self.names)
            for kind in KINDS:
                if kind in kinds:
                    self.add(kind, table, column, key)
                    found = True
        self.rows_with_hits += found

    def body(self) -> dict[str, Any]:
        return {
            "hits": [asdict(h) for h in self.hits],
            "rows_scanned": self.rows_scanned,
            "rows_with_hits": self.rows_with_hits,
            "truncated": self.hit_count > len(self.hits),
        }


# either scan: both examine rows the same way (``row``), each for what it looks for
AnyScan = CardScan | DataScan
ScanT = TypeVar("ScanT", CardScan, DataScan)


def check_allowed(metadata: MetaData, allowed: Iterable[tuple[str, str]]) -> frozenset[tuple[str, str]]:
    """``allowed`` as a set, each (table, column) a column of ``metadata``'s tables (else ValueError: an
    allow-list naming a column that is not there would skip nothing, or a renamed one)."""
    allowed = frozenset(allowed)
    for table, column in sorted(allowed):
        if table not in metadata.tables or column not in metadata.tables[table].c:
            raise ValueError(f"the allow-list names {table}.{column}, which is not a column of these tables")
    return allowed


def row_key(values: Iterable[Any]) -> str:
    return "/".join(str(v) for v in values)


# the column that says when a row was last written, in the order they are looked for
TIME_COLUMNS = ("updated_at", "created_at", "sent_at", "checked_at")


def written_at(table: Table) -> Any:
    """The column of ``table`` that says when a row was written (a unix time), or None."""
    for name in TIME_COLUMNS:
        if name in table.c:
            return table.c[name]
    return None


async def scan_tables(
    db: Database, tables: Iterable[Table], scan: ScanT | None = None, *, since: float | None = None
) -> ScanT | CardScan:
    """Examine every text column of every row of ``tables`` in the service's own database with ``scan``
    (a card scan unless given); with ``since``, only the rows written at or after it (a table with no
    time column is read whole).

    Rows are fetched a few thousand at a time, letting the service's other requests run between
    batches (a SQLite read runs on the event loop's thread).
    """
    scan = scan if scan is not None else CardScan()
    for table in tables:
        texts = [c for c in table.columns if isinstance(c.type, String)]
        keys = list(table.primary_key.columns)
        if not texts:
            continue
        query = select(*keys, *texts)
        when = written_at(table)
        if since is not None and when is not None:
            query = query.where(when >= since)
        async with db.read() as conn:
            result = await conn.execute(query)
            # a data scan looking for thousands of names takes some microseconds a text: a smaller batch
            # keeps each stretch the service's other requests wait through short
            fetch = _FETCH_ROWS if isinstance(scan, CardScan) or not scan.names else _FETCH_ROWS // 8
            while batch := result.fetchmany(fetch):
                for row in batch:
                    scan.row(
                        table.name,
                        row_key(row[: len(keys)]) if keys else f"row {scan.rows_scanned + 1}",
                        zip((c.name for c in texts), row[len(keys) :], strict=True),
                    )
                await asyncio.sleep(0)
    return scan
