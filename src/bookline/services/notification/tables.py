"""The tables notification-service owns."""

from sqlalchemy import Column, Float, MetaData, PrimaryKeyConstraint, String, Table

metadata = MetaData()

# The log of sent e-mails, and the guard against a second one: one row per (booking, kind).
# No recipient address or name is stored (Bookline keeps no PII).
sent_notifications = Table(
    "sent_notifications",
    metadata,
    Column("booking_id", String(40), nullable=False),
    Column("kind", String(16), nullable=False),  # confirmed | cancelled
    Column("message_id", String(64), nullable=False),  # the queue message that caused it
    Column("reservation_id", String(40), nullable=True),
    Column("sent_at", Float, nullable=False),  # unix seconds
    PrimaryKeyConstraint("booking_id", "kind", name="pk_sent_notifications"),
)
