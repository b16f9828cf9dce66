"""Signed URLs (docs/security.md): agents fetch what a job or an update refers to (a voice's prompt
clip, a bundle's files) with ``?exp=<unix time>&sig=<hmac>`` instead of a token, valid for one path
until ``exp``."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from pathlib import Path
from urllib.parse import urlencode

SIGNED_URL_TTL_S = 3600.0


def _mac(secret: bytes, path: str, exp: int) -> str:
    return hmac.new(secret, f"{path}\n{exp}".encode(), hashlib.sha256).hexdigest()


def signed_query(secret: bytes, path: str, ttl_s: float = SIGNED_URL_TTL_S) -> str:
    """The query string (``exp`` and ``sig``) that lets anyone holding it GET ``path`` until it expires."""
    exp = int(time.time() + ttl_s)
    return urlencode({"exp": exp, "sig": _mac(secret, path, exp)})


def signature_ok(secret: bytes, path: str, exp: str | None, sig: str | None) -> bool:
    # isascii: str.isdigit() also holds for "¹" and other digits int() refuses
    if not exp or not sig or not (exp.isascii() and exp.isdigit()) or int(exp) < time.time():
        return False
    return hmac.compare_digest(_mac(secret, path, int(exp)), sig)


def url_secret(configured: str | None, home: Path) -> bytes:
    """VOICEFLEET_URL_SECRET (replicas must share it), else one kept in ``home/url.secret``."""
    if configured:
        return configured.encode()
    path = home / "url.secret"
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(32))
    return path.read_text().strip().encode()
