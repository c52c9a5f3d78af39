"""The tables availability-service owns."""

from sqlalchemy import (
    Column,
    Date,
    Float,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
)

metadata = MetaData()

properties = Table(
    "properties",
    metadata,
    Column("property_id", String(40), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("city", String(100), nullable=False, index=True),
    Column("country", String(2), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("stars", Integer, nullable=False),
    Column("address", String(300), nullable=False, server_default=""),
    Column("time_zone", String(64), nullable=False, server_default="UTC"),  # IANA, e.g. Europe/Lisbon
)

rooms = Table(
    "rooms",
    metadata,
    Column("room_id", String(60), primary_key=True),
    Column("property_id", String(40), nullable=False, index=True),
    Column("name", String(100), nullable=False),
    Column("room_type", String(40), nullable=False),
    Column("capacity", Integer, nullable=False),
)

holds = Table(
    "holds",
    metadata,
    Column("reservation_id", String(40), primary_key=True),
    Column("property_id", String(40), nullable=False),
    Column("room_id", String(60), nullable=False),
    Column("check_in", Date, nullable=False),
    Column("check_out", Date, nullable=False),
    # held -> committed | released | expired
    Column("status", String(16), nullable=False),
    Column("expires_at", Float, nullable=False),  # unix seconds
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# The one guard against double booking: one row per claimed room-night, whatever claims it.
room_night_claims = Table(
    "room_night_claims",
    metadata,
    Column("room_id", String(60), nullable=False),
    Column("night", Date, nullable=False),
    Column("reservation_id", String(40), nullable=False, index=True),
    Column("kind", String(8), nullable=False),  # hold | booked
    Column("expires_at", Float, nullable=True),  # set for holds, NULL once booked
    PrimaryKeyConstraint("room_id", "night", name="pk_room_night_claims"),
)
