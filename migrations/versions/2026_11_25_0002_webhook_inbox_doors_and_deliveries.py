"""webhook inbox doors and deliveries

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 23:36:17.859767+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "seam_webhook",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("svix_id", sa.Text(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=True),
        sa.Column("event_type", sa.Text(), nullable=True),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("raw_body", sa.Text(), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("outcome_reason", sa.Text(), nullable=True),
        sa.Column(
            "received_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_seam_webhook")),
        sa.UniqueConstraint("event_id", name=op.f("uq_seam_webhook_event_id")),
        sa.UniqueConstraint("svix_id", name=op.f("uq_seam_webhook_svix_id")),
    )
    op.create_index("ix_seam_webhook_received_at", "seam_webhook", ["received_at"], unique=False)
    op.create_table(
        "delivery",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("reservation_id", sa.UUID(), nullable=False),
        sa.Column("access_method_id", sa.Text(), nullable=False),
        sa.Column("code_version", sa.Integer(), nullable=False),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("recipient", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("dedupe_key", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("send_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["reservation_id"],
            ["reservation.id"],
            name=op.f("fk_delivery_reservation_id_reservation"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_delivery_dedupe_key")),
    )
    op.create_index(
        "ix_delivery_reservation_id_created_at",
        "delivery",
        ["reservation_id", "created_at"],
        unique=False,
    )
    op.create_table(
        "reservation_door",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("reservation_id", sa.UUID(), nullable=False),
        sa.Column("door_type", sa.Text(), nullable=False),
        sa.Column("door_id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["reservation_id"],
            ["reservation.id"],
            name=op.f("fk_reservation_door_reservation_id_reservation"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reservation_door")),
        sa.UniqueConstraint(
            "reservation_id",
            "door_type",
            "door_id",
            name=op.f("uq_reservation_door_reservation_id_door_type_door_id"),
        ),
    )
    op.add_column(
        "access_method",
        sa.Column("code_version", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )
    op.create_index(
        "ix_reservation_status_updated_at", "reservation", ["status", "updated_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_reservation_status_updated_at", table_name="reservation")
    op.drop_column("access_method", "code_version")
    op.drop_table("reservation_door")
    op.drop_index("ix_delivery_reservation_id_created_at", table_name="delivery")
    op.drop_table("delivery")
    op.drop_index("ix_seam_webhook_received_at", table_name="seam_webhook")
    op.drop_table("seam_webhook")
