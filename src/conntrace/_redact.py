"""Keep secrets out of URLs before they become span attributes."""

from __future__ import annotations

REDACTED = "REDACTED"

# The OpenTelemetry HTTP conventions name the first four; the X-Amz-* ones carry the same
# secrets in AWS SigV4 presigned URLs.
_SENSITIVE_QUERY_KEYS = frozenset(
    key.lower()
    for key in (
        "AWSAccessKeyId",
        "Signature",
        "sig",
        "X-Goog-Signature",
        "X-Amz-Signature",
        "X-Amz-Credential",
        "X-Amz-Security-Token",
    )
)


def redact_query(query: str) -> str:
    parts = []
    for pair in query.split("&"):
        key, sep, _value = pair.partition("=")
        parts.append(f"{key}={REDACTED}" if sep and key.lower() in _SENSITIVE_QUERY_KEYS else pair)
    return "&".join(parts)


def full_url(scheme: str, host: str, port: int | None, target: str) -> str:
    """``url.full`` for a request target as urllib3's pools see it (a path, or an absolute URL).

    Credentials in the authority are replaced as the HTTP conventions ask.
    """
    if "://" in target:
        scheme, _, rest = target.partition("://")
        authority, slash, path = rest.partition("/")
        if "@" in authority:
            authority = f"{REDACTED}:{REDACTED}@{authority.rpartition('@')[2]}"
        target = f"{slash}{path}"
    else:
        authority = host if port is None else f"{host}:{port}"
        if ":" in host and not host.startswith("["):
            authority = f"[{host}]" if port is None else f"[{host}]:{port}"
    path, question, query = target.partition("?")
    if question:
        target = f"{path}?{redact_query(query)}"
    return f"{scheme}://{authority}{target}"
