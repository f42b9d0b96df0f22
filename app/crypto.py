"""PIN codes at rest: Fernet (AES-128-CBC + HMAC-SHA256) with key rotation.

`GUESTKEY_ENCRYPTION_KEY` holds one or more Fernet keys, comma-separated: the first encrypts,
all decrypt. In sandbox mode without a key, one is generated once and kept under the data
directory, so codes survive restarts.
"""

from __future__ import annotations

import os
from pathlib import Path

import structlog
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from app.config import Settings, split_secrets

log = structlog.get_logger(__name__)


class CodeCipher:
    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ValueError("at least one encryption key is required")
        try:
            fernets = [Fernet(key.encode()) for key in keys]
            self._first = fernets[0]
            self._fernet = MultiFernet(fernets)
        except ValueError as error:
            raise ValueError(
                "GUESTKEY_ENCRYPTION_KEY must be Fernet keys (32 url-safe base64 bytes), "
                "comma-separated; make one with `guestkey keygen`"
            ) from error

    def encrypt(self, code: str) -> bytes:
        return self._fernet.encrypt(code.encode())

    def decrypt(self, ciphertext: bytes) -> str:
        return self._fernet.decrypt(ciphertext).decode()

    def rotate(self, ciphertext: bytes) -> bytes:
        """Re-encrypt under the first key (no-op in meaning, new token)."""
        return self._fernet.rotate(ciphertext)

    def is_current(self, ciphertext: bytes) -> bool:
        """Encrypted under the first key (what `reencrypt` leaves every token under)."""
        try:
            self._first.decrypt(ciphertext)
        except InvalidToken:
            return False
        return True


def sandbox_key(data_dir: Path) -> str:
    path = data_dir / "encryption.key"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key().decode()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(key)
    log.info("crypto.sandbox_key_created", path=str(path))
    return key


def build_cipher(settings: Settings) -> CodeCipher:
    keys = split_secrets(settings.guestkey_encryption_key)
    if not keys and settings.sandbox:
        keys = [sandbox_key(settings.data_dir)]
    return CodeCipher(keys)


__all__ = ["CodeCipher", "InvalidToken", "build_cipher"]
