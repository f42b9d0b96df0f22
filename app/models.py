"""Every table, imported in one place for Alembic and the schema test."""

from app.clients.models import ApiClient, ApiKey, SeamChangeBudget
from app.console.models import AuditEntry, Operator, OperatorLoginAttempt, OperatorSession
from app.db import Base
from app.delivery.models import Delivery
from app.doors.models import Door
from app.guests.models import GuestLink, GuestPage
from app.installation.models import Installation
from app.reconciler.models import ReconcilerCursor
from app.reservations.models import AccessMethod, Reservation, ReservationDoor, ReservationEvent
from app.webhooks.models import SeamWebhook

__all__ = [
    "AccessMethod",
    "ApiClient",
    "ApiKey",
    "AuditEntry",
    "Base",
    "Delivery",
    "Door",
    "GuestLink",
    "GuestPage",
    "Installation",
    "Operator",
    "OperatorLoginAttempt",
    "OperatorSession",
    "ReconcilerCursor",
    "Reservation",
    "ReservationDoor",
    "ReservationEvent",
    "SeamChangeBudget",
    "SeamWebhook",
]
