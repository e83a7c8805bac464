"""Sealing what the store keeps, as ``core.flow.Store`` says (AES-256-GCM under a key HKDF
derives from the caller's credential), with the ``cryptography`` package: the Python hosts'
(``make serve``, AWS Lambda, Vercel). The Pyodide hosts seal the same way with WebCrypto.
"""

from __future__ import annotations

import functools
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from core.exchange import SEAL_INFO, SEAL_SALT, SEAL_VERSION

NONCE_BYTES = 12


@functools.lru_cache(maxsize=1024)  # a key per credential, derived once per instance
def _cipher(secret: str) -> AESGCM:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=SEAL_SALT, info=SEAL_INFO).derive(secret.encode())
    return AESGCM(key)


class AESGCMSealer:
    """The driver's ``Sealer`` (``adapters.driver``) with ``cryptography``."""

    async def seal(self, secret: str, name: str, value: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return SEAL_VERSION + nonce + _cipher(secret).encrypt(nonce, value, name.encode())

    async def open(self, secret: str, name: str, value: bytes) -> bytes | None:
        if value[:1] != SEAL_VERSION or len(value) < 1 + NONCE_BYTES + 16:
            return None
        nonce = value[1 : 1 + NONCE_BYTES]
        try:
            return _cipher(secret).decrypt(nonce, value[1 + NONCE_BYTES :], name.encode())
        except InvalidTag:
            return None
