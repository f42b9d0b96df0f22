"""guest page: personal links and what the page remembers

Revision ID: 0011
Revises: 0007
Create Date: 2026-12-01 23:40:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "guest_link",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("reservation_id", sa.UUID(), nullable=False),
        sa.Column("token_digest", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["reservation_id"],
            ["reservation.id"],
            name=op.f("fk_guest_link_reservation_id_reservation"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_guest_link")),
        sa.UniqueConstraint("token_digest", name=op.f("uq_guest_link_token_digest")),
    )
    op.create_index(
        op.f("ix_guest_link_reservation_id"), "guest_link", ["reservation_id"], unique=False
    )
    op.create_table(
        "guest_page",
        sa.Column("reservation_id", sa.UUID(), nullable=False),
        sa.Column("seen_access_method_id", sa.Text(), nullable=True),
        sa.Column("seen_code_version", sa.Integer(), nullable=True),
        sa.Column("fresh_codes", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_report_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("awaiting_access_method_id", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["reservation_id"],
            ["reservation.id"],
            name=op.f("fk_guest_page_reservation_id_reservation"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("reservation_id", name=op.f("pk_guest_page")),
    )


def downgrade() -> None:
    op.drop_table("guest_page")
    op.drop_index(op.f("ix_guest_link_reservation_id"), table_name="guest_link")
    op.drop_table("guest_link")
