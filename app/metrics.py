"""Prometheus metrics. Labels never carry ids, codes or keys: only bounded names."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter(
    "guestkey_http_requests_total", "HTTP requests served", ["method", "route", "status"]
)
HTTP_REQUEST_SECONDS = Histogram(
    "guestkey_http_request_duration_seconds", "HTTP request latency", ["method", "route"]
)
SEAM_CALL_SECONDS = Histogram(
    "guestkey_seam_call_duration_seconds",
    "Latency of calls to the Seam API",
    ["endpoint", "outcome"],
)
JOBS = Counter("guestkey_jobs_total", "Jobs run by outcome", ["task", "outcome"])
WEBHOOKS = Counter(
    "guestkey_webhooks_total", "Seam webhook deliveries by outcome", ["outcome", "reason"]
)
DELIVERIES = Counter(
    "guestkey_deliveries_total", "Guest messages by channel and outcome", ["channel", "outcome"]
)
RESERVATIONS = Gauge(
    "guestkey_reservations", "Reservations by status (read from the database at scrape)", ["status"]
)
GRANTS_MISSING = Counter(
    "guestkey_seam_grants_missing_total",
    "Deletes of a grant guestkey made that Seam did not know (alert on any)",
)
RATE_LIMITED = Counter(
    "guestkey_rate_limited_total", "Requests refused with 429, by limit", ["limit"]
)
