"""retention

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 00:06:42.480955+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("reservation", sa.Column("purged_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_reservation_ends_at_unpurged",
        "reservation",
        ["ends_at"],
        unique=False,
        postgresql_where=sa.text("purged_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_reservation_ends_at_unpurged",
        table_name="reservation",
        postgresql_where=sa.text("purged_at IS NULL"),
    )
    op.drop_column("reservation", "purged_at")
