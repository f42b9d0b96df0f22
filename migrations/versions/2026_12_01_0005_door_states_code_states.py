"""door states, code states, warnings, identity reuse, create-before-delete

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 23:10:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "seam_identity",
        sa.Column("user_identity_key", sa.Text(), nullable=False),
        sa.Column("user_identity_id", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("user_identity_key", name=op.f("pk_seam_identity")),
    )
    op.add_column("reservation", sa.Column("replacing_grant_id", sa.Text(), nullable=True))
    op.add_column("reservation", sa.Column("user_identity_id", sa.Text(), nullable=True))
    op.add_column(
        "reservation",
        sa.Column(
            "warnings",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
    )
    op.add_column(
        "access_method",
        sa.Column("state", sa.Text(), server_default="current", nullable=False),
    )
    op.add_column("access_method", sa.Column("original_access_method_id", sa.Text(), nullable=True))
    # Methods of a replaced grant were marked removed: they were superseded by the new grant.
    op.execute("UPDATE access_method SET state = 'superseded' WHERE removed_at IS NOT NULL")
    op.create_check_constraint(
        "state", "access_method", "state IN ('current', 'superseded', 'revoked')"
    )
    op.add_column("reservation_door", sa.Column("reason", sa.Text(), nullable=True))
    op.alter_column("reservation_door", "name", existing_type=sa.Text(), nullable=True)
    # Doors were recorded only once Seam named them for an issued code: they were granted.
    op.execute("UPDATE reservation_door SET state = 'granted' WHERE state IS NULL")
    op.execute(
        "UPDATE reservation_door SET state = 'lost' "
        "WHERE state NOT IN ('pending', 'granted', 'unsupported', 'failed', 'lost')"
    )
    op.alter_column(
        "reservation_door",
        "state",
        existing_type=sa.Text(),
        nullable=False,
        server_default="pending",
    )
    op.create_check_constraint(
        "state",
        "reservation_door",
        "state IN ('pending', 'granted', 'unsupported', 'failed', 'lost')",
    )


def downgrade() -> None:
    op.drop_constraint("ck_reservation_door_state", "reservation_door", type_="check")
    op.alter_column(
        "reservation_door", "state", existing_type=sa.Text(), nullable=True, server_default=None
    )
    op.execute("UPDATE reservation_door SET name = door_id WHERE name IS NULL")
    op.alter_column("reservation_door", "name", existing_type=sa.Text(), nullable=False)
    op.drop_column("reservation_door", "reason")
    op.drop_constraint("ck_access_method_state", "access_method", type_="check")
    op.drop_column("access_method", "original_access_method_id")
    op.drop_column("access_method", "state")
    op.drop_column("reservation", "warnings")
    op.drop_column("reservation", "user_identity_id")
    op.drop_column("reservation", "replacing_grant_id")
    op.drop_table("seam_identity")
