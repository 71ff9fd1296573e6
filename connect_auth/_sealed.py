"""Tokens at rest in a shared cache: encrypted, authenticated, under opaque names.

Pure functions over one caller-supplied key: nothing here does I/O. Two keys
are derived from it with HKDF, one for AES-GCM and one for HMAC names, so a
cache entry's name reveals no connector, subject or credential, and a value
read with the wrong key, or moved under another name, does not open.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["KEY_HINT", "Sealer"]

KEY_HINT = 'generate one with: python -c "import secrets; print(secrets.token_urlsafe(32))"'
_MIN_KEY_BYTES = 32
_NONCE = 12


class Sealer:
    """Seals values and names entries with keys derived from ``key``.

    Args:
        key: at least 32 bytes of secret key material (``str`` is UTF-8 encoded);
            every process sharing the cache uses the same one. A short key can be
            guessed offline from any one value read from Redis, so it is refused.
    """

    __slots__ = ("_aead", "_mac")

    def __init__(self, key: bytes | str) -> None:
        material = key.encode() if isinstance(key, str) else key
        if not isinstance(material, bytes) or len(material) < _MIN_KEY_BYTES:
            raise ValueError(
                f"encryption_key must be a secret of at least {_MIN_KEY_BYTES} bytes; {KEY_HINT}"
            )
        self._aead = AESGCM(_derive(material, b"connect_auth shared cache: values"))
        self._mac = _derive(material, b"connect_auth shared cache: names")

    def __repr__(self) -> str:
        return "Sealer(<hidden>)"

    def name(self, *parts: str) -> str:
        """An opaque, stable name for ``parts`` (hex HMAC-SHA256)."""
        return hmac.new(self._mac, "\x1f".join(parts).encode(), hashlib.sha256).hexdigest()

    def fingerprint(self, token: str) -> bytes:
        """32 ASCII bytes that identify ``token`` without revealing it."""
        digest = hmac.new(self._mac, b"token\x00" + token.encode(), hashlib.sha256)
        return digest.hexdigest()[:32].encode()

    def seal(self, plaintext: bytes, bound_to: bytes) -> bytes:
        """Encrypt ``plaintext`` bound to ``bound_to`` (associated data: an entry's
        name and anything stored in clear beside the value): it opens only with it."""
        nonce = os.urandom(_NONCE)
        return nonce + self._aead.encrypt(nonce, plaintext, bound_to)

    def open(self, sealed: bytes, bound_to: bytes) -> bytes | None:
        """The plaintext, or ``None`` for a wrong key, other associated data or tampering."""
        if len(sealed) <= _NONCE:
            return None
        try:
            return self._aead.decrypt(sealed[:_NONCE], sealed[_NONCE:], bound_to)
        except InvalidTag:
            return None


def _derive(material: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(material)
