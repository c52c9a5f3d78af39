"""Test-only: take the room-night key off ``room_night_claims`` so a control test can show that
without it concurrent bookings do claim the same night twice. Never used in production."""

from __future__ import annotations

from sqlalchemy import text

from bookline.adapters.db import Database


async def drop_room_night_key(db: Database) -> None:
    async with db.write() as conn:
        if not db.is_sqlite:
            await conn.execute(text("ALTER TABLE room_night_claims DROP CONSTRAINT IF EXISTS pk_room_night_claims"))
            return
        # SQLite cannot drop a primary key: rebuild the table without it
        await conn.execute(text("DROP TABLE IF EXISTS room_night_claims_unguarded"))
        await conn.execute(
            text(
                "CREATE TABLE room_night_claims_unguarded (room_id VARCHAR(60) NOT NULL, "
                "night DATE NOT NULL, reservation_id VARCHAR(40) NOT NULL, kind VARCHAR(8) NOT NULL, "
                "expires_at FLOAT)"
            )
        )
        await conn.execute(text("INSERT INTO room_night_claims_unguarded SELECT * FROM room_night_claims"))
        await conn.execute(text("DROP TABLE room_night_claims"))
        await conn.execute(text("ALTER TABLE room_night_claims_unguarded RENAME TO room_night_claims"))
