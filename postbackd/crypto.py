"""Encryption of postback secrets at rest (Fernet: AES-128-CBC + HMAC-SHA256).

The key comes from POSTBACKD_SECRET_KEY (any string; hashed to a Fernet key) or, when that
is empty, from a key file generated on first use. Several processes sharing one database
must share the key.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import orjson
from cryptography.fernet import Fernet, InvalidToken


class SecretBox:
    def __init__(self, key_material: str):
        digest = hashlib.sha256(key_material.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    @classmethod
    def from_settings(cls, secret_key: str, key_file: str) -> SecretBox:
        if secret_key:
            return cls(secret_key)
        path = Path(key_file)
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(base64.urlsafe_b64encode(os.urandom(32)).decode())
        return cls(path.read_text().strip())

    def seal(self, secrets: dict[str, str]) -> str:
        return self._fernet.encrypt(orjson.dumps(secrets)).decode() if secrets else ""

    def open(self, sealed: str) -> dict[str, str]:
        if not sealed:
            return {}
        try:
            return orjson.loads(self._fernet.decrypt(sealed.encode()))
        except InvalidToken:
            raise ValueError(
                "postback secrets cannot be decrypted: wrong POSTBACKD_SECRET_KEY"
            ) from None
