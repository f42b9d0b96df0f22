"""operator console

Revision ID: 0010
Revises: 0006
Create Date: 2026-12-01 22:36:39.757392+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "operator_login_attempt",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("email", sa.Text(), nullable=False),
        sa.Column("client_address", sa.Text(), nullable=False),
        sa.Column("succeeded", sa.Boolean(), nullable=False),
        sa.Column(
            "attempted_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operator_login_attempt")),
    )
    op.create_index(
        "ix_operator_login_attempt_client_address_attempted_at",
        "operator_login_attempt",
        ["client_address", "attempted_at"],
        unique=False,
    )
    op.create_index(
        "ix_operator_login_attempt_email_attempted_at",
        "operator_login_attempt",
        ["email", "attempted_at"],
        unique=False,
    )
    op.create_table(
        "operator",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("email", sa.Text(), nullable=False),
        sa.Column("client_id", sa.UUID(), nullable=True),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("password_chosen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["api_client.id"],
            name=op.f("fk_operator_client_id_api_client"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operator")),
        sa.UniqueConstraint("email", name=op.f("uq_operator_email")),
    )
    op.create_table(
        "audit_entry",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("operator_id", sa.UUID(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("reservation_id", sa.UUID(), nullable=True),
        sa.Column("client_id", sa.UUID(), nullable=True),
        sa.Column("detail", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["api_client.id"],
            name=op.f("fk_audit_entry_client_id_api_client"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["operator_id"],
            ["operator.id"],
            name=op.f("fk_audit_entry_operator_id_operator"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["reservation_id"],
            ["reservation.id"],
            name=op.f("fk_audit_entry_reservation_id_reservation"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_entry")),
    )
    op.create_index("ix_audit_entry_created_at", "audit_entry", ["created_at"], unique=False)
    op.create_index(
        "ix_audit_entry_reservation_id_id", "audit_entry", ["reservation_id", "id"], unique=False
    )
    op.create_table(
        "operator_session",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("token_digest", sa.Text(), nullable=False),
        sa.Column("operator_id", sa.UUID(), nullable=False),
        sa.Column("csrf_token", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["operator_id"],
            ["operator.id"],
            name=op.f("fk_operator_session_operator_id_operator"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operator_session")),
        sa.UniqueConstraint("token_digest", name=op.f("uq_operator_session_token_digest")),
    )
    op.create_index(
        op.f("ix_operator_session_operator_id"), "operator_session", ["operator_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_operator_session_operator_id"), table_name="operator_session")
    op.drop_table("operator_session")
    op.drop_index("ix_audit_entry_reservation_id_id", table_name="audit_entry")
    op.drop_index("ix_audit_entry_created_at", table_name="audit_entry")
    op.drop_table("audit_entry")
    op.drop_table("operator")
    op.drop_index(
        "ix_operator_login_attempt_email_attempted_at", table_name="operator_login_attempt"
    )
    op.drop_index(
        "ix_operator_login_attempt_client_address_attempted_at", table_name="operator_login_attempt"
    )
    op.drop_table("operator_login_attempt")
