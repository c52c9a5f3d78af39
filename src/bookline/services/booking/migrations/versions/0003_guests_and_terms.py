"""the guest of a booking, its room type, its cancellation terms and what a cancellation kept

Revision ID: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

COLUMNS = (
    ("room_type", sa.String(40)),
    ("guest_name", sa.String(100)),
    ("guest_email", sa.String(254)),
    ("guest_phone", sa.String(16)),
    ("terms", sa.Text),
    ("cancellation_penalty_minor", sa.Integer),
    ("refund_minor", sa.Integer),
)


def upgrade() -> None:
    for name, kind in COLUMNS:
        op.add_column("bookings", sa.Column(name, kind, nullable=True))
    op.create_index("ix_bookings_confirmation_code", "bookings", ["confirmation_code"])


def downgrade() -> None:
    op.drop_index("ix_bookings_confirmation_code", table_name="bookings")
    with op.batch_alter_table("bookings") as batch:
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
