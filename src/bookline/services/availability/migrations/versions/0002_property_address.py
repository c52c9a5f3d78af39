"""a property's address and time zone (the e-mail shows them; cancellation deadlines use the zone)

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("properties", sa.Column("address", sa.String(300), nullable=False, server_default=""))
    op.add_column("properties", sa.Column("time_zone", sa.String(64), nullable=False, server_default="UTC"))


def downgrade() -> None:
    with op.batch_alter_table("properties") as batch:
        batch.drop_column("time_zone")
        batch.drop_column("address")
