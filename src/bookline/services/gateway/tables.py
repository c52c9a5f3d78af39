"""The tables payment-gateway owns. No column ever holds a card number, a CVC or an expiry."""

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

tokens = Table(
    "tokens",
    metadata,
    Column("token", String(40), primary_key=True),
    Column("last4", String(4), nullable=False),
    Column("brand", String(16), nullable=False),
    Column("behavior", String(24), nullable=False),  # see cards.Behavior
    Column("created_at", Float, nullable=False),  # unix seconds
)

authorizations = Table(
    "authorizations",
    metadata,
    Column("auth_id", String(40), primary_key=True),
    # the Idempotency-Key of the authorize call, so a caller can resolve an unknown outcome
    Column("idempotency_key", String(255), nullable=False),
    Column("token", String(40), nullable=False),
    Column("reservation_id", String(64), nullable=False, index=True),
    # authorized -> captured -> partially_refunded | refunded; authorized -> voided; declined is final
    Column("status", String(24), nullable=False),
    Column("decline_reason", String(32), nullable=True),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("captured_minor", BigInteger, nullable=False),
    Column("refunded_minor", BigInteger, nullable=False),
    Column("last4", String(4), nullable=False),
    Column("brand", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    UniqueConstraint("idempotency_key", name="uq_authorizations_idempotency_key"),
)

# One row per (key, operation): inserted first in the operation's transaction (the primary key is the
# guard against a concurrent duplicate, which waits for that transaction), with the response that is
# replayed afterwards written in the same transaction.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("key", String(255), nullable=False),
    Column("operation", String(16), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("response_status", Integer, nullable=True),  # NULL only in rows of older versions
    Column("response_body", Text, nullable=True),  # JSON
    Column("created_at", Float, nullable=False),
    PrimaryKeyConstraint("key", "operation", name="pk_idempotency_keys"),
)
