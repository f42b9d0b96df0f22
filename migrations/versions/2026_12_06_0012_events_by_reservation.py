"""events by reservation: a routed event names its reservation, whose one job applies them all

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 21:30:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("seam_webhook", sa.Column("reservation_id", sa.UUID(), nullable=True))
    # Small: only events waiting for their reservation's job are in it.
    op.create_index(
        "ix_seam_webhook_routed",
        "seam_webhook",
        ["reservation_id", "received_at"],
        postgresql_where=sa.text("outcome = 'routed'"),
    )


def downgrade() -> None:
    op.drop_index("ix_seam_webhook_routed", table_name="seam_webhook")
    op.drop_column("seam_webhook", "reservation_id")
