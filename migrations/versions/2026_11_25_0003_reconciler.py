"""reconciler

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 23:49:09.407653+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reconciler_cursor",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("position", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_reconciler_cursor")),
    )
    op.add_column(
        "reservation", sa.Column("next_check_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "reservation", sa.Column("check_count", sa.Integer(), server_default="0", nullable=False)
    )
    op.drop_index(op.f("ix_reservation_status_updated_at"), table_name="reservation")
    op.create_index(
        "ix_reservation_next_check_at",
        "reservation",
        ["next_check_at"],
        unique=False,
        postgresql_where=sa.text("next_check_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_reservation_next_check_at",
        table_name="reservation",
        postgresql_where=sa.text("next_check_at IS NOT NULL"),
    )
    op.create_index(
        op.f("ix_reservation_status_updated_at"),
        "reservation",
        ["status", "updated_at"],
        unique=False,
    )
    op.drop_column("reservation", "check_count")
    op.drop_column("reservation", "next_check_at")
    op.drop_table("reconciler_cursor")
