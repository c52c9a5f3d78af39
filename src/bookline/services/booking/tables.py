"""The tables booking-service owns: bookings, the durable saga log and idempotency keys."""

from sqlalchemy import (
    Column,
    Date,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

metadata = MetaData()

bookings = Table(
    "bookings",
    metadata,
    Column("booking_id", String(40), primary_key=True),
    Column("reservation_id", String(40), nullable=False, unique=True),
    Column("user_id", String(64), nullable=False),
    Column("source", String(16), nullable=False),
    Column("property_id", String(40), nullable=False),
    Column("room_id", String(60), nullable=True),
    Column("room_type", String(40), nullable=True),
    Column("check_in", Date, nullable=False),
    Column("check_out", Date, nullable=False),
    Column("guests", Integer, nullable=False),
    Column("status", String(16), nullable=False),  # pending | confirmed | failed | cancelled
    Column("outcome", String(20), nullable=True),
    Column("failure_code", String(40), nullable=True),
    Column("quote_id", String(40), nullable=True),
    Column("total_minor", Integer, nullable=True),
    Column("currency", String(3), nullable=True),
    Column("payment_method", String(16), nullable=False),
    Column("card_last_four", String(4), nullable=False),
    Column("payment_transaction_id", String(64), nullable=True),
    Column("confirmation_code", String(20), nullable=True),
    Column("trace_parent", String(64), nullable=True),  # W3C traceparent of booking.create
    # the guest: personal data, kept here and at confirmation-service only (never in telemetry)
    Column("guest_name", String(100), nullable=True),
    Column("guest_email", String(254), nullable=True),
    Column("guest_phone", String(16), nullable=True),
    Column("terms", Text, nullable=True),  # JSON: the cancellation terms the stay was sold on
    Column("cancellation_penalty_minor", Integer, nullable=True),  # kept when cancelled late
    Column("refund_minor", Integer, nullable=True),  # what the cancellation refunds
    # the saga's lease (saga/lease.py): which replica runs it, until when, and the fencing token that
    # every write of the saga log must present
    Column("lease_owner", String(64), nullable=True),
    Column("lease_expires_at", Float, nullable=True),
    Column("fence", Integer, nullable=False, server_default="0"),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    # GET /bookings: a customer's bookings, newest first
    Index("ix_bookings_user_created", "user_id", "created_at", "booking_id"),
    # POST /bookings/lookup: a guest without an account finds a booking by its code
    Index("ix_bookings_confirmation_code", "confirmation_code"),
)

# The durable saga log: a step is recorded as started before it runs, so its compensation is
# known even when the outcome is not (a crash, a timeout).
saga_steps = Table(
    "saga_steps",
    metadata,
    Column("booking_id", String(40), nullable=False),
    Column("step", String(24), nullable=False),  # hold | authorize | confirm | capture | cancel | refund
    Column("status", String(16), nullable=False),  # started | done | failed | compensated
    Column("updated_at", Float, nullable=False),
    PrimaryKeyConstraint("booking_id", "step", name="pk_saga_steps"),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("key", String(200), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("booking_id", String(40), nullable=True),
    Column("status", String(16), nullable=False),  # in_flight | done
    Column("response_status", Integer, nullable=True),
    Column("response_body", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)
