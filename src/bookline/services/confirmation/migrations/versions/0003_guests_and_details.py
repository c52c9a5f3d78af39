"""the guest of a booking, what its e-mail shows (nights, taxes, terms) and what a cancellation kept

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
    ("details", sa.Text),
    ("cancellation_penalty_minor", sa.Integer),
    ("refund_minor", sa.Integer),
)


def upgrade() -> None:
    for name, kind in COLUMNS:
        op.add_column("bookings", sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("bookings") as batch:
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
