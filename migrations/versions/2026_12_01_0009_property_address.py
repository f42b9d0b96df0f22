"""property address

Revision ID: 0009
Revises: 0010
Create Date: 2026-12-01 22:45:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("reservation", sa.Column("property_address", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("reservation", "property_address")
