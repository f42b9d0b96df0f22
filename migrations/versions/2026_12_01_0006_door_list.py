"""door list

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 23:10:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "door",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("door_type", sa.Text(), nullable=False),
        sa.Column("door_id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("can_take_pin_code", sa.Boolean(), nullable=False),
        sa.Column("online", sa.Boolean(), nullable=True),
        sa.Column("refreshed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("gone_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "door_type IN ('device', 'acs_entrance', 'space')", name=op.f("ck_door_door_type")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_door")),
        sa.UniqueConstraint("door_type", "door_id", name=op.f("uq_door_door_type_door_id")),
    )


def downgrade() -> None:
    op.drop_table("door")
