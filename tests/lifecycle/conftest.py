"""These tests run guestkey and the fake Seam over real HTTP (see tests/http_stack.py)."""

from tests.http_stack import app, client, fake_seam, fake_seam_server

__all__ = ["app", "client", "fake_seam", "fake_seam_server"]
