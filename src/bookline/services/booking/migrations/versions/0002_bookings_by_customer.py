"""a customer's bookings, newest first (GET /bookings)

Revision ID: 0002
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_bookings_user_created", "bookings", ["user_id", "created_at", "booking_id"])


def downgrade() -> None:
    op.drop_index("ix_bookings_user_created", table_name="bookings")
