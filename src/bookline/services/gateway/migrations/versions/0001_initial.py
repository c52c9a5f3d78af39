"""tokens, authorizations and idempotency keys

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
        "tokens",
        sa.Column("token", sa.String(40), primary_key=True),
        sa.Column("last4", sa.String(4), nullable=False),
        sa.Column("brand", sa.String(16), nullable=False),
        sa.Column("behavior", sa.String(24), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "authorizations",
        sa.Column("auth_id", sa.String(40), primary_key=True),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("token", sa.String(40), nullable=False),
        sa.Column("reservation_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("decline_reason", sa.String(32), nullable=True),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("captured_minor", sa.BigInteger, nullable=False),
        sa.Column("refunded_minor", sa.BigInteger, nullable=False),
        sa.Column("last4", sa.String(4), nullable=False),
        sa.Column("brand", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.UniqueConstraint("idempotency_key", name="uq_authorizations_idempotency_key"),
    )
    op.create_index("ix_authorizations_reservation_id", "authorizations", ["reservation_id"])
    op.create_table(
        "idempotency_keys",
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("operation", sa.String(16), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("response_status", sa.Integer, nullable=True),
        sa.Column("response_body", sa.Text, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("key", "operation", name="pk_idempotency_keys"),
    )


def downgrade() -> None:
    op.drop_table("idempotency_keys")
    op.drop_table("authorizations")
    op.drop_table("tokens")
