"""reservations clients and jobs

Revision ID: 0001
Revises:
Create Date: 2026-11-25 23:29:21.473432+00:00
"""

from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# procrastinate's own schema, as its 3.10.0 release ships it. Later procrastinate releases
# bring their migration files into later guestkey migrations.
PROCRASTINATE_SCHEMA = Path(__file__).parent.parent / "sql" / "procrastinate-3.10.0.sql"


def upgrade() -> None:
    # Run on the raw psycopg connection: no bind-parameter parsing of the SQL text.
    op.get_bind().connection.dbapi_connection.execute(PROCRASTINATE_SCHEMA.read_text())  # type: ignore[union-attr]
    op.create_table(
        "api_client",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_client")),
        sa.UniqueConstraint("name", name=op.f("uq_api_client_name")),
    )
    op.create_table(
        "api_key",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("client_id", sa.UUID(), nullable=False),
        sa.Column("key_digest", sa.Text(), nullable=False),
        sa.Column("key_prefix", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["api_client.id"],
            name=op.f("fk_api_key_client_id_api_client"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_key")),
        sa.UniqueConstraint("key_digest", name=op.f("uq_api_key_key_digest")),
    )
    op.create_index(op.f("ix_api_key_client_id"), "api_key", ["client_id"], unique=False)
    op.create_table(
        "reservation",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("client_id", sa.UUID(), nullable=False),
        sa.Column("reservation_key", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("guest_name", sa.Text(), nullable=False),
        sa.Column("guest_email", sa.Text(), nullable=True),
        sa.Column("guest_phone", sa.Text(), nullable=True),
        sa.Column("guest_locale", sa.Text(), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("timezone", sa.Text(), nullable=False),
        sa.Column("property_name", sa.Text(), nullable=True),
        sa.Column("device_ids", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("acs_entrance_ids", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("space_ids", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("access_grant_key", sa.Text(), nullable=False),
        sa.Column("grant_generation", sa.Integer(), nullable=False),
        sa.Column("access_grant_id", sa.Text(), nullable=True),
        sa.Column("granted", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
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
        sa.CheckConstraint(
            "status IN ('pending', 'granted', 'issued', 'delivered', 'failed', 'cancelled')",
            name=op.f("ck_reservation_status"),
        ),
        sa.CheckConstraint("ends_at > starts_at", name=op.f("ck_reservation_window")),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["api_client.id"],
            name=op.f("fk_reservation_client_id_api_client"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reservation")),
        sa.UniqueConstraint("access_grant_id", name=op.f("uq_reservation_access_grant_id")),
        sa.UniqueConstraint("access_grant_key", name=op.f("uq_reservation_access_grant_key")),
        sa.UniqueConstraint(
            "client_id", "reservation_key", name=op.f("uq_reservation_client_id_reservation_key")
        ),
    )
    op.create_index(
        "ix_reservation_client_id_created_at_id",
        "reservation",
        ["client_id", "created_at", "id"],
        unique=False,
    )
    op.create_table(
        "access_method",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("reservation_id", sa.UUID(), nullable=False),
        sa.Column("access_method_id", sa.Text(), nullable=False),
        sa.Column("access_grant_id", sa.Text(), nullable=False),
        sa.Column("mode", sa.Text(), nullable=False),
        sa.Column("is_issued", sa.Boolean(), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("is_backup_code", sa.Boolean(), nullable=False),
        sa.Column("code_ciphertext", sa.LargeBinary(), nullable=True),
        sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True),
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
            name=op.f("fk_access_method_reservation_id_reservation"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_method")),
        sa.UniqueConstraint("access_method_id", name=op.f("uq_access_method_access_method_id")),
    )
    op.create_index(
        op.f("ix_access_method_access_grant_id"), "access_method", ["access_grant_id"], unique=False
    )
    op.create_index(
        op.f("ix_access_method_reservation_id"), "access_method", ["reservation_id"], unique=False
    )
    op.create_table(
        "reservation_event",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("reservation_id", sa.UUID(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("detail", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["reservation_id"],
            ["reservation.id"],
            name=op.f("fk_reservation_event_reservation_id_reservation"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reservation_event")),
    )
    op.create_index(
        "ix_reservation_event_reservation_id_id",
        "reservation_event",
        ["reservation_id", "id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_reservation_event_reservation_id_id", table_name="reservation_event")
    op.drop_table("reservation_event")
    op.drop_index(op.f("ix_access_method_reservation_id"), table_name="access_method")
    op.drop_index(op.f("ix_access_method_access_grant_id"), table_name="access_method")
    op.drop_table("access_method")
    op.drop_index("ix_reservation_client_id_created_at_id", table_name="reservation")
    op.drop_table("reservation")
    op.drop_index(op.f("ix_api_key_client_id"), table_name="api_key")
    op.drop_table("api_key")
    op.drop_table("api_client")
    op.execute(
        """
        DO $$
        DECLARE object record;
        BEGIN
            FOR object IN SELECT tablename FROM pg_tables
                          WHERE schemaname = current_schema() AND tablename LIKE 'procrastinate%' LOOP
                EXECUTE format('DROP TABLE IF EXISTS %I CASCADE', object.tablename);
            END LOOP;
            FOR object IN SELECT p.oid::regprocedure AS signature FROM pg_proc p
                          JOIN pg_namespace n ON n.oid = p.pronamespace
                          WHERE n.nspname = current_schema() AND p.proname LIKE 'procrastinate%' LOOP
                EXECUTE format('DROP FUNCTION IF EXISTS %s CASCADE', object.signature);
            END LOOP;
            FOR object IN SELECT t.typname FROM pg_type t
                          JOIN pg_namespace n ON n.oid = t.typnamespace
                          WHERE n.nspname = current_schema() AND t.typname LIKE 'procrastinate%'
                            AND t.typtype IN ('e', 'c') LOOP
                EXECUTE format('DROP TYPE IF EXISTS %I CASCADE', object.typname);
            END LOOP;
        END $$;
        """
    )
