"""The server key that signs approval decisions and seals the audit chain, kept outside our database.

A database writer (a compromised service account, a careless UPDATE) can change any row, but cannot
make an HMAC without this key, so a forged or rewritten decision is detected wherever it is checked.
The key comes from AGENT_PIPELINES_APPROVAL_KEY, else from `<state>/approval_signing.key`, a 0600 file
created on first use. Every process that decides or commits approvals must see the same key."""

import hashlib
import hmac
import json
import os
import secrets
import stat
from functools import cache
from pathlib import Path
from typing import Any

KEY_ENV = "AGENT_PIPELINES_APPROVAL_KEY"
KEY_FILE = "approval_signing.key"
MIN_KEY_CHARS = 32


class KeyUnavailable(Exception):
    """The signing key cannot be loaded safely (too short, or a file others can read)."""


def canonical(value: Any) -> bytes:
    """One byte string per JSON value: what is hashed and signed (stable across a database round trip)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False).encode()


def sha256(value: Any) -> str:
    return hashlib.sha256(canonical(value)).hexdigest()


class ApprovalKey:
    def __init__(self, secret: bytes) -> None:
        if len(secret) < MIN_KEY_CHARS:
            raise KeyUnavailable(f"the approval signing key needs at least {MIN_KEY_CHARS} bytes")
        self._secret = secret
        # Which key signed (shown in the audit report), without revealing anything about it.
        self.key_id = hashlib.sha256(b"key-id:" + secret).hexdigest()[:12]

    def __repr__(self) -> str:  # never print the secret
        return f"ApprovalKey({self.key_id})"

    def sign(self, *parts: Any) -> str:
        return hmac.new(self._secret, canonical(list(parts)), hashlib.sha256).hexdigest()

    def verify(self, signature: str | None, *parts: Any) -> bool:
        return bool(signature) and hmac.compare_digest(str(signature), self.sign(*parts))


def load_key(state_dir: str | Path, env: dict[str, str] | None = None) -> ApprovalKey:
    """The deployment's key: the environment's, else the state folder's file (created 0600 if absent)."""
    env = dict(os.environ if env is None else env)
    if env.get(KEY_ENV):
        return ApprovalKey(env[KEY_ENV].encode())
    return _file_key(str(Path(state_dir).resolve() / KEY_FILE))


@cache
def _file_key(path_str: str) -> ApprovalKey:
    path = Path(path_str)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: two processes starting at once create it once; the loser reads the winner's key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyUnavailable(f"{path} is readable by others (mode {oct(mode & 0o777)}); chmod 600 it")
    text = path.read_text().strip()
    if not text:  # the creator has not written it yet: never sign with an empty key
        raise KeyUnavailable(f"{path} is empty")
    return ApprovalKey(text.encode())
