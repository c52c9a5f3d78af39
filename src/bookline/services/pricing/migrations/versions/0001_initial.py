"""rate plans and quotes

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
        "rate_plans",
        sa.Column("room_id", sa.String(60), primary_key=True),
        sa.Column("property_id", sa.String(40), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("base_rate_minor", sa.Integer, nullable=False),
        sa.Column("weekend_uplift_bp", sa.Integer, nullable=False),
        sa.Column("extra_guest_minor", sa.Integer, nullable=False),
        sa.Column("base_occupancy", sa.Integer, nullable=False),
        sa.Column("tax_bp", sa.Integer, nullable=False),
    )
    op.create_index("ix_rate_plans_property_id", "rate_plans", ["property_id"])
    op.create_table(
        "quotes",
        sa.Column("quote_id", sa.String(40), primary_key=True),
        sa.Column("property_id", sa.String(40), nullable=False),
        sa.Column("room_id", sa.String(60), nullable=False),
        sa.Column("check_in", sa.Date, nullable=False),
        sa.Column("check_out", sa.Date, nullable=False),
        sa.Column("guests", sa.Integer, nullable=False),
        sa.Column("total_minor", sa.Integer, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("taxes_minor", sa.Integer, nullable=False),
        sa.Column("lines", sa.Text, nullable=False),
        sa.Column("rules_applied", sa.Text, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    # lets a future purge of old quotes find them without a full scan
    op.create_index("ix_quotes_expires_at", "quotes", ["expires_at"])


def downgrade() -> None:
    op.drop_table("quotes")
    op.drop_table("rate_plans")
