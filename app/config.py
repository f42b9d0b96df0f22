"""guestkey's settings, read once from the environment (see README, "Configuration")."""

from __future__ import annotations

import re
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SEAM_ENDPOINT = "https://connect.getseam.com"
SANDBOX_API_CLIENT = "sandbox"
SANDBOX_API_KEY = "gk_sandbox_key"
# What guestkey presents to a fake Seam (in-process, or `guestkey fake-seam` at SEAM_ENDPOINT).
SANDBOX_SEAM_API_KEY = "seam_sandbox_guestkey"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*$")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: str | int | float | timedelta) -> timedelta:
    """`48h`, `30m`, `2d`, `90` (seconds) or a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float):
        return timedelta(seconds=value)
    match = _DURATION.match(value)
    if match is None:
        raise ValueError(f"not a duration: {value!r} (use e.g. 90s, 30m, 48h, 7d)")
    amount, unit = match.groups()
    return timedelta(seconds=float(amount) * _DURATION_UNITS[unit or "s"])


def split_secrets(value: SecretStr | None) -> list[str]:
    """A comma- or whitespace-separated list of secrets."""
    if value is None:
        return []
    return [part for part in re.split(r"[\s,]+", value.get_secret_value()) if part]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False, populate_by_name=True)

    database_url: str | None = None
    database_pool_size: int = Field(default=10, ge=1, le=200)
    data_dir: Path = Field(default=Path(".guestkey"), alias="GUESTKEY_DATA_DIR")

    seam_api_key: SecretStr | None = None
    seam_endpoint: str = DEFAULT_SEAM_ENDPOINT
    seam_webhook_secret: SecretStr | None = None
    seam_timeout_seconds: float = Field(default=20.0, gt=0)
    seam_max_connections: int = Field(default=20, ge=1)

    guestkey_api_keys: SecretStr | None = None
    guestkey_encryption_key: SecretStr | None = None
    guestkey_delivery_lead: timedelta = timedelta(0)
    guestkey_worker_concurrency: int = Field(default=8, ge=1, le=100)
    guestkey_reconcile_after: timedelta = timedelta(minutes=5)
    guestkey_retention: timedelta = timedelta(days=30)
    guestkey_stalled_job_seconds: float = Field(default=20.0, ge=15)
    guestkey_callback_url: str | None = None
    guestkey_callback_secret: SecretStr | None = None
    guestkey_callback_timeout_seconds: float = Field(default=10.0, gt=0)
    guestkey_max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    # Shown to guests in every message ("+351 210 000 000", "help@example.com"); unset: not shown.
    guestkey_support_contact: str | None = None
    # The public base URL (https://HOST): `guestkey doctor` checks HOST/webhooks/seam.
    public_url: str | None = Field(default=None, alias="GUESTKEY_PUBLIC_URL")

    smtp_host: str | None = None
    smtp_port: int | None = None
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_tls: Literal["none", "starttls", "tls"] = "none"
    smtp_timeout_seconds: float = 20.0
    mail_from: str = "guestkey <no-reply@guestkey.local>"
    # Without SMTP_HOST (or with SMS_PROVIDER=outbox) messages are written here as files;
    # unset means `data_dir / "outbox"`.
    outbox_dir: Path | None = Field(default=None, alias="GUESTKEY_OUTBOX_DIR")

    sms_provider: Literal["outbox", "twilio"] = "outbox"
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_from: str | None = None
    twilio_endpoint: str = "https://api.twilio.com"
    twilio_timeout_seconds: float = Field(default=20.0, gt=0)

    log_level: str = Field(default="info", alias="GUESTKEY_LOG_LEVEL")
    # Unset: console lines when stderr is a terminal (a person reads them), JSON otherwise.
    log_format: Literal["json", "console"] | None = Field(default=None, alias="GUESTKEY_LOG_FORMAT")

    @field_validator(
        "guestkey_delivery_lead", "guestkey_reconcile_after", "guestkey_retention", mode="before"
    )
    @classmethod
    def _parse_lead(cls, value: object) -> timedelta:
        if value in (None, ""):
            return timedelta(0)
        return parse_duration(value)  # type: ignore[arg-type]

    @field_validator("database_url", "smtp_host", "guestkey_callback_url", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @property
    def missing_secrets(self) -> list[str]:
        """The variables `serve` and `worker` need outside sandbox mode and do not have. Checked
        at their start-up, not here: `guestkey seam connect` runs before the webhook secret
        exists, and `guestkey doctor` reports what is missing rather than stopping at it."""
        if self.sandbox:
            return []
        return [
            name
            for name, value in (
                ("SEAM_WEBHOOK_SECRET", self.seam_webhook_secret),
                ("GUESTKEY_ENCRYPTION_KEY", self.guestkey_encryption_key),
            )
            if value is None or not value.get_secret_value().strip()
        ]

    @model_validator(mode="after")
    def _callbacks_are_signed(self) -> Settings:
        if self.guestkey_callback_url and not split_secrets(self.guestkey_callback_secret):
            raise ValueError(
                "GUESTKEY_CALLBACK_SECRET (a whsec_… secret) must be set with GUESTKEY_CALLBACK_URL"
            )
        return self

    @property
    def sandbox(self) -> bool:
        """No Seam API key: guestkey talks to the fake Seam it ships."""
        return self.seam_api_key is None or not self.seam_api_key.get_secret_value()

    @property
    def in_process_fake_seam(self) -> bool:
        """Sandbox with no endpoint of its own: the fake Seam runs inside this process."""
        return self.sandbox and self.seam_endpoint == DEFAULT_SEAM_ENDPOINT

    @cached_property
    def env_api_keys(self) -> dict[str, str]:
        """`GUESTKEY_API_KEYS` as {key: client name}; sandbox mode adds its documented key."""
        keys: dict[str, str] = {}
        for pair in split_secrets(self.guestkey_api_keys):
            client, separator, key = pair.partition(":")
            if not separator or not client or not key:
                raise ValueError("GUESTKEY_API_KEYS must be comma-separated client:key pairs")
            keys[key] = client
        if self.sandbox and not keys:
            keys[SANDBOX_API_KEY] = SANDBOX_API_CLIENT
        return keys

    @property
    def webhook_secrets(self) -> list[str]:
        return split_secrets(self.seam_webhook_secret)
