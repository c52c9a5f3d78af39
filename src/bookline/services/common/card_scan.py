"""The card scan behind every ``GET /admin/card-scan``: look through stored rows for anything that
is a card number, and say where (table, column, row key) without ever returning the value.

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
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import String, Table, select

from bookline.adapters.db import Database
from bookline.redaction import could_hold_card_number, looks_like_card_number, scrub

# an answer names at most this many places; the count of rows with a card is always exact
MAX_HITS = 1000
_FETCH_ROWS = 2000


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
    db: Database, tables: Iterable[Table], scan: CardScan | None = None, *, since: float | None = None
) -> CardScan:
    """Examine every text column of every row of ``tables`` in the service's own database; with
    ``since``, only the rows written at or after it (a table with no time column is read whole).

    Rows are fetched a few thousand at a time, letting the service's other requests run between
    batches (a SQLite read runs on the event loop's thread).
    """
    scan = scan or CardScan()
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
            while batch := result.fetchmany(_FETCH_ROWS):
                for row in batch:
                    scan.row(
                        table.name,
                        row_key(row[: len(keys)]) if keys else f"row {scan.rows_scanned + 1}",
                        zip((c.name for c in texts), row[len(keys) :], strict=True),
                    )
                await asyncio.sleep(0)
    return scan
