"""Hidden labels are sealed to the grader's public key (libsodium sealed boxes).

The portal holds only the public key: it can seal labels it receives but never open
them again, so neither the web server nor a session it serves can read them. The grader
alone holds the secret key (`podium up` keeps it in instance/grader/, mode 0600).
"""

from __future__ import annotations

import base64
from pathlib import Path

from nacl.public import PrivateKey, PublicKey, SealedBox


def new_secret_key(path: Path) -> str:
    """Write a new secret key to `path` (0600); return its public key, base64."""
    key = PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.touch(mode=0o600)
    path.write_bytes(base64.b64encode(bytes(key)))
    return public_key_of(path)


def public_key_of(path: Path) -> str:
    key = PrivateKey(base64.b64decode(path.read_bytes()))
    return base64.b64encode(bytes(key.public_key)).decode()


def seal(public_key: str, data: bytes) -> bytes:
    return SealedBox(PublicKey(base64.b64decode(public_key))).encrypt(data)


def unseal(secret_key_file: Path, sealed: bytes) -> bytes:
    key = PrivateKey(base64.b64decode(secret_key_file.read_bytes()))
    return SealedBox(key).decrypt(sealed)
