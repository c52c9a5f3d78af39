"""bookings, saga steps and idempotency keys

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bookings",
        sa.Column("booking_id", sa.String(40), primary_key=True),
        sa.Column("reservation_id", sa.String(40), nullable=False, unique=True),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("property_id", sa.String(40), nullable=False),
        sa.Column("room_id", sa.String(60), nullable=True),
        sa.Column("check_in", sa.Date, nullable=False),
        sa.Column("check_out", sa.Date, nullable=False),
        sa.Column("guests", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(20), nullable=True),
        sa.Column("failure_code", sa.String(40), nullable=True),
        sa.Column("quote_id", sa.String(40), nullable=True),
        sa.Column("total_minor", sa.Integer, nullable=True),
        sa.Column("currency", sa.String(3), nullable=True),
        sa.Column("payment_method", sa.String(16), nullable=False),
        sa.Column("card_last_four", sa.String(4), nullable=False),
        sa.Column("payment_transaction_id", sa.String(64), nullable=True),
        sa.Column("confirmation_code", sa.String(20), nullable=True),
        sa.Column("trace_parent", sa.String(64), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_bookings_status_updated", "bookings", ["status", "updated_at"])
    op.create_table(
        "saga_steps",
        sa.Column("booking_id", sa.String(40), nullable=False),
        sa.Column("step", sa.String(24), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("booking_id", "step", name="pk_saga_steps"),
    )
    op.create_index("ix_saga_steps_status", "saga_steps", ["status"])
    op.create_table(
        "idempotency_keys",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("booking_id", sa.String(40), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("response_status", sa.Integer, nullable=True),
        sa.Column("response_body", sa.Text, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("idempotency_keys")
    op.drop_table("saga_steps")
    op.drop_table("bookings")
