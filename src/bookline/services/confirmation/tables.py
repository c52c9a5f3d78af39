"""The tables confirmation-service owns."""

from sqlalchemy import Column, Date, Float, Integer, MetaData, String, Table, Text

from bookline.services.common.outbox import outbox_table

metadata = MetaData()

bookings = Table(
    "bookings",
    metadata,
    Column("reservation_id", String(40), primary_key=True),
    Column("booking_id", String(40), nullable=False, unique=True),
    Column("confirmation_code", String(20), nullable=False, unique=True),
    Column("status", String(16), nullable=False),  # confirmed | cancelled
    Column("user_id", String(64), nullable=False),
    Column("property_id", String(40), nullable=False),
    Column("room_id", String(60), nullable=False),
    Column("check_in", Date, nullable=False),
    Column("check_out", Date, nullable=False),
    Column("total_minor", Integer, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("payment_transaction_id", String(64), nullable=False),
    Column("room_type", String(40), nullable=True),
    # the guest: personal data, kept here and at booking-service only; notification-service reads it
    # over this service's API to address the e-mail, and nothing else ever carries it
    Column("guest_name", String(100), nullable=True),
    Column("guest_email", String(254), nullable=True),
    Column("guest_phone", String(16), nullable=True),
    Column("details", Text, nullable=True),  # JSON: nights with prices, taxes, cancellation terms
    Column("cancellation_penalty_minor", Integer, nullable=True),
    Column("refund_minor", Integer, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

outbox = outbox_table(metadata)

# The notification reconciler's verdict on each published event: ``delivered`` (notification-service
# sent its e-mail) or ``resent`` (it had not, after reconcile_settle_after_s: a new event was written)
delivery_checks = Table(
    "delivery_checks",
    metadata,
    Column("event_id", String(64), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("checked_at", Float, nullable=False),
)
