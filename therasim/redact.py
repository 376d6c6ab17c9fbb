"""Secrets out of what therasim stores and prints; control characters out of the terminal.

A ``base_url`` may carry a credential (``https://user:KEY@host/v1``) or one in its
query string (``?api_key=KEY``). Everything therasim writes (manifest, events,
course status, branch records) or prints goes through :func:`redact_text` or
:func:`redact_url`: the password, and every query value, become ``***``.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

__all__ = ["MASK", "has_secret", "redact", "redact_text", "redact_url", "terminal_safe"]

MASK = "***"
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>`]+")
# C0 controls except newline and tab, DEL, C1 controls (ESC starts terminal escape sequences)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def redact_url(url: str) -> str:
    """``url`` with its password (or lone user token) and every query value masked."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url.split("?", 1)[0] + ("?" + MASK if "?" in url else "") if "@" not in url else MASK
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{MASK}@{host}" if ":" in userinfo else f"{MASK}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = "&".join(f"{k}={MASK}" for k, _ in pairs) if pairs else MASK
    fragment = MASK if parts.fragment else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


def has_secret(url: str) -> bool:
    """Whether :func:`redact_url` would change ``url``."""
    return redact_url(url) != url


def redact_text(text: str) -> str:
    """Every URL inside free text (an error message, a log line) redacted."""
    if "://" not in text:
        return text
    return _URL.sub(lambda m: redact_url(m.group(0)), text)


def redact(obj: Any) -> Any:
    """A copy of a JSON-like value with every string passed through :func:`redact_text`."""
    if isinstance(obj, str):
        return redact_text(obj)
    if isinstance(obj, dict):
        return {k: redact(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact(v) for v in obj]
    return obj


def terminal_safe(text: str) -> str:
    """``text`` with control characters (ESC, BEL, CR, ...) shown as ``\\x1b`` etc., so
    a profile id or a model's reply cannot move the cursor or recolour the terminal;
    newlines and tabs are kept."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group(0)):02x}", text)
