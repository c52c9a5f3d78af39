"""The tables pricing-engine owns."""

from sqlalchemy import Column, Date, Float, Integer, MetaData, String, Table, Text

metadata = MetaData()

rate_plans = Table(
    "rate_plans",
    metadata,
    Column("room_id", String(60), primary_key=True),
    Column("property_id", String(40), nullable=False, index=True),
    Column("currency", String(3), nullable=False),
    Column("base_rate_minor", Integer, nullable=False),
    Column("weekend_uplift_bp", Integer, nullable=False),
    Column("extra_guest_minor", Integer, nullable=False),
    Column("base_occupancy", Integer, nullable=False),
    Column("tax_bp", Integer, nullable=False),
    # the cancellation terms the room is sold on (domain.terms), in the property's time zone
    Column("time_zone", String(64), nullable=False, server_default="UTC"),
    Column("free_cancellation_hours", Integer, nullable=False, server_default="48"),
    Column("penalty_nights", Integer, nullable=False, server_default="1"),
)

quotes = Table(
    "quotes",
    metadata,
    Column("quote_id", String(40), primary_key=True),
    Column("property_id", String(40), nullable=False),
    Column("room_id", String(60), nullable=False),
    Column("check_in", Date, nullable=False),
    Column("check_out", Date, nullable=False),
    Column("guests", Integer, nullable=False),
    Column("total_minor", Integer, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("taxes_minor", Integer, nullable=False),
    Column("lines", Text, nullable=False),  # JSON: the priced nights
    Column("rules_applied", Text, nullable=False),  # JSON: sorted rule names
    Column("terms", Text, nullable=True),  # JSON: the cancellation terms (CancellationTerms.as_dict)
    Column("expires_at", Float, nullable=False, index=True),  # unix seconds
    Column("created_at", Float, nullable=False),
)
