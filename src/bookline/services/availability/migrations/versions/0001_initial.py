"""properties, rooms, holds and room-night claims

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
        "properties",
        sa.Column("property_id", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("city", sa.String(100), nullable=False),
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("stars", sa.Integer, nullable=False),
    )
    op.create_index("ix_properties_city", "properties", ["city"])
    op.create_table(
        "rooms",
        sa.Column("room_id", sa.String(60), primary_key=True),
        sa.Column("property_id", sa.String(40), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("room_type", sa.String(40), nullable=False),
        sa.Column("capacity", sa.Integer, nullable=False),
    )
    op.create_index("ix_rooms_property_id", "rooms", ["property_id"])
    op.create_table(
        "holds",
        sa.Column("reservation_id", sa.String(40), primary_key=True),
        sa.Column("property_id", sa.String(40), nullable=False),
        sa.Column("room_id", sa.String(60), nullable=False),
        sa.Column("check_in", sa.Date, nullable=False),
        sa.Column("check_out", sa.Date, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_holds_status_expires", "holds", ["status", "expires_at"])
    op.create_table(
        "room_night_claims",
        sa.Column("room_id", sa.String(60), nullable=False),
        sa.Column("night", sa.Date, nullable=False),
        sa.Column("reservation_id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("expires_at", sa.Float, nullable=True),
        sa.PrimaryKeyConstraint("room_id", "night", name="pk_room_night_claims"),
    )
    op.create_index("ix_room_night_claims_reservation_id", "room_night_claims", ["reservation_id"])


def downgrade() -> None:
    op.drop_table("room_night_claims")
    op.drop_table("holds")
    op.drop_table("rooms")
    op.drop_table("properties")
