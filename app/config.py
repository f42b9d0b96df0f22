"""guestkey's settings, read once from the environment (see README, "Configuration")."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SEAM_ENDPOINT = "https://connect.getseam.com"
SANDBOX_API_CLIENT = "sandbox"
SANDBOX_API_KEY = "gk_sandbox_key"
# What guestkey presents to a fake Seam (in-process, or `guestkey fake-seam` at SEAM_ENDPOINT).
SANDBOX_SEAM_API_KEY = "seam_sandbox_guestkey"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*$")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class ConfigurationError(Exception):
    """guestkey cannot start as configured; the message names what to change."""


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


LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
PRODUCTION_SECRETS = ("SEAM_API_KEY", "SEAM_WEBHOOK_SECRET", "GUESTKEY_ENCRYPTION_KEY")
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\S+)\s*$")


def is_local_host(host: str | None) -> bool:
    return (host or "").strip("[]").lower() in LOCAL_HOSTS


def insecure_url_problem(name: str, url: str) -> str | None:
    """HTTPS, or plain HTTP to this machine only: a URL that carries keys, codes or guests'
    details never crosses a network in clear."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and is_local_host(parts.hostname):
        return None
    return f"{name} must be an https:// URL (plain http only to localhost)"


@dataclass(frozen=True)
class Rate:
    """`3/1h`: at most `count` within `window`."""

    count: int
    window: timedelta

    @classmethod
    def parse(cls, value: object) -> Rate:
        if isinstance(value, Rate):
            return value
        match = _RATE.match(str(value))
        if match is None:
            raise ValueError(f"not a rate: {value!r} (use e.g. 3/1h, 600/1h)")
        window = parse_duration(match.group(2))
        if window <= timedelta(0):
            raise ValueError(f"not a rate: {value!r} (the window must be positive)")
        return cls(int(match.group(1)), window)

    def __str__(self) -> str:
        return f"{self.count}/{int(self.window.total_seconds())}s"


def split_secrets(value: SecretStr | None) -> list[str]:
    """A comma- or whitespace-separated list of secrets."""
    if value is None:
        return []
    return [part for part in re.split(r"[\s,]+", value.get_secret_value()) if part]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False, populate_by_name=True)

    database_url: str | None = None
    database_pool_size: int = Field(default=20, ge=1, le=200)
    data_dir: Path = Field(default=Path(".guestkey"), alias="GUESTKEY_DATA_DIR")

    # DESIGN.md §9.1: sandbox mode (the fake Seam, the published API key) only when asked for.
    sandbox: bool = Field(default=False, alias="GUESTKEY_SANDBOX")
    # A database remembers the Seam workspace it was used with; these accept another one, or
    # the fake Seam outside sandbox mode (tests, the compose sandbox), knowingly.
    allow_workspace_change: bool = Field(default=False, alias="GUESTKEY_ALLOW_WORKSPACE_CHANGE")
    allow_fake_seam: bool = Field(default=False, alias="GUESTKEY_ALLOW_FAKE_SEAM")
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
    guestkey_resend_limit: Rate = Rate(3, timedelta(hours=1))
    guestkey_seam_change_limit: Rate = Rate(600, timedelta(hours=1))
    guestkey_metrics_token: SecretStr | None = None
    # Fresh codes a guest may ask for from their page per stay (DESIGN.md §9.10).
    guestkey_fresh_code_limit: int = Field(default=2, ge=0, le=20)

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

    @field_validator("guestkey_resend_limit", "guestkey_seam_change_limit", mode="before")
    @classmethod
    def _parse_rate(cls, value: object) -> Rate:
        return Rate.parse(value)

    @field_validator(
        "database_url",
        "smtp_host",
        "guestkey_callback_url",
        "seam_api_key",
        "guestkey_metrics_token",
        mode="before",
    )
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
                ("SEAM_API_KEY", self.seam_api_key),
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

    def startup_problems(self) -> list[str]:
        """What stops `serve` and `worker` from starting, each naming the variable to fix."""
        problems: list[str] = []
        if self.sandbox:
            if self.seam_api_key is not None:
                problems.append(
                    "GUESTKEY_SANDBOX is set together with SEAM_API_KEY: unset one of them "
                    "(sandbox mode never talks to a real Seam workspace)"
                )
            return problems
        if missing := self.missing_secrets:
            problems.append(
                f"missing {', '.join(missing)} (or set GUESTKEY_SANDBOX=true to try guestkey "
                "against its fake Seam)"
            )
        env_keys = [pair.partition(":")[2] for pair in split_secrets(self.guestkey_api_keys)]
        if SANDBOX_API_KEY in env_keys:
            problems.append(f"GUESTKEY_API_KEYS holds the public sandbox key {SANDBOX_API_KEY}")
        urls = {"SEAM_ENDPOINT": self.seam_endpoint, "GUESTKEY_CALLBACK_URL": None}
        urls["GUESTKEY_CALLBACK_URL"] = self.guestkey_callback_url
        if self.sms_provider == "twilio":
            urls["TWILIO_ENDPOINT"] = self.twilio_endpoint
        if self.allow_fake_seam:
            del urls["SEAM_ENDPOINT"]  # a fake Seam on a private network, asked for by name
        for name, url in urls.items():
            problem = insecure_url_problem(name, url) if url else None
            if problem:
                problems.append(problem)
        return problems

    @property
    def smtp_in_clear(self) -> bool:
        """Mail (codes, guests' addresses) to another machine without TLS."""
        in_clear = self.smtp_tls == "none"
        return bool(self.smtp_host) and in_clear and not is_local_host(self.smtp_host)

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
