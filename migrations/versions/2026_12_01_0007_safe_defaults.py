"""installation facts, per-client callbacks and budgets, no rejected webhook bodies

Revision ID: 0007
Revises: 0009
Create Date: 2026-12-01 23:10:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "installation",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("address_key_ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("seam_workspace_id", sa.Text(), nullable=True),
        sa.Column("seam_workspace_name", sa.Text(), nullable=True),
        sa.Column("seam_workspace_recorded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint("id = 1", name=op.f("ck_installation_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_installation")),
    )
    op.add_column("api_client", sa.Column("callback_url", sa.Text(), nullable=True))
    op.add_column(
        "api_client", sa.Column("callback_secret_ciphertext", sa.LargeBinary(), nullable=True)
    )
    op.create_table(
        "seam_change_budget",
        sa.Column("client_id", sa.UUID(), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("spent", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["api_client.id"],
            name=op.f("fk_seam_change_budget_client_id_api_client"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("client_id", "window_start", name=op.f("pk_seam_change_budget")),
    )
    op.add_column("seam_webhook", sa.Column("body_sha256", sa.Text(), nullable=True))
    op.add_column("seam_webhook", sa.Column("body_length", sa.Integer(), nullable=True))
    # Rejected bodies kept so far may hold a code: keep their digest and length only.
    op.execute(
        "UPDATE seam_webhook SET body_sha256 = encode(sha256(convert_to(raw_body, 'UTF8')), 'hex'),"
        " body_length = octet_length(raw_body) WHERE raw_body IS NOT NULL"
    )
    op.execute(
        "UPDATE seam_webhook SET body_sha256 = encode(sha256(convert_to(payload::text, 'UTF8')),"
        " 'hex'), body_length = octet_length(payload::text), payload = NULL"
        " WHERE outcome = 'rejected' AND payload IS NOT NULL"
    )
    op.drop_column("seam_webhook", "raw_body")
    # Erased deliveries kept an unkeyed digest of the address in their dedupe key. (The others
    # are re-keyed by guestkey at its next start, with the key it keeps encrypted.)
    op.execute(
        "UPDATE delivery SET dedupe_key = 'erased:' || id::text WHERE recipient = '(erased)'"
    )


def downgrade() -> None:
    op.add_column("seam_webhook", sa.Column("raw_body", sa.Text(), nullable=True))
    op.drop_column("seam_webhook", "body_length")
    op.drop_column("seam_webhook", "body_sha256")
    op.drop_table("seam_change_budget")
    op.drop_column("api_client", "callback_secret_ciphertext")
    op.drop_column("api_client", "callback_url")
    op.drop_table("installation")
