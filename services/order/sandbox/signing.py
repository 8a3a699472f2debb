"""The sandbox's notification signature: the wire contract between the sandbox and the
order service's adapter. Standard library only.

A notification is signed as hex HMAC-SHA256(secret, ``f"{timestamp}.{body}"``) over the
exact body bytes, the timestamp being unix seconds sent in its own header. Signing the
timestamp with the body is what lets a receiver refuse replays: an old notification cannot
be given a fresh timestamp without the secret.
"""

from __future__ import annotations

import hashlib
import hmac

TIMESTAMP_HEADER = "X-Sandbox-Timestamp"
SIGNATURE_HEADER = "X-Sandbox-Signature"
SIGNATURE_HEX_LENGTH = hashlib.sha256().digest_size * 2


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The hex signature of ``body`` sent at ``timestamp`` (unix seconds)."""
    message = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def signed_headers(secret: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret, timestamp, body),
    }
