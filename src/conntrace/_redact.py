"""Keep secrets out of URLs before they become span attributes.

Every query value is replaced by default: a key alone says what was asked for, while its
value may be a token, a password or a signature under any name (``token=``, ``sig=``,
``access_token=``...), and no list of names can be complete. The keys that
``keep_query_values`` names keep their values, except the known secret ones.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus

REDACTED = "REDACTED"

# Values that are never kept, even when a user lists their key: the OpenTelemetry HTTP
# conventions name the first four; the X-Amz-* ones carry the same secrets in AWS SigV4
# presigned URLs.
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

# Lower-case query keys whose values are kept (CONNTRACE_KEEP_QUERY_VALUES). Set once at
# start-up by conntrace.sdk; a module attribute, because every traced request reads it.
keep_query_values: frozenset[str] = frozenset()


def _kept(key: str, keep: frozenset[str]) -> bool:
    # Compared decoded, so that "pa%67e" is not a way around the list (nor into it).
    name = unquote_plus(key).lower()
    return name in keep and name not in _SENSITIVE_QUERY_KEYS


def redact_query(query: str, keep: frozenset[str] | None = None) -> str:
    """``query`` with every value replaced, but those of the keys in ``keep``."""
    keep = keep_query_values if keep is None else keep
    parts = []
    for pair in query.split("&"):
        key, sep, _value = pair.partition("=")
        parts.append(f"{key}={REDACTED}" if sep and not (keep and _kept(key, keep)) else pair)
    return "&".join(parts)


# "scheme://user:password@": how a proxy's credentials ride in its URL, and so in the
# messages of the errors urllib3 raises about it (a timeout names the proxy's URL).
_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^\s/?#@'\"]+@")


def redact_userinfo(text: str) -> str:
    """``text`` with the user and password of every URL in it replaced."""
    if "@" not in text:
        return text
    return _USERINFO.sub(rf"\1{REDACTED}:{REDACTED}@", text)


def _host(host: str) -> str:
    """An IPv6 address in brackets, as a URL's authority has it."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def full_url(scheme: str, host: str, port: int | None, target: str) -> str:
    """``url.full`` for a request target as urllib3's pools see it (a path, or an absolute URL).

    Credentials in the authority (a proxied request's absolute URL may carry them) and every
    query value not listed in ``keep_query_values`` are replaced, as the HTTP conventions ask.
    """
    if "://" in target:
        scheme, _, rest = target.partition("://")
        # The authority ends at the first "/", "?" or "#" (RFC 3986, 3.2).
        end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
        authority, target = rest[:end], rest[end:]
        if "@" in authority:
            authority = f"{REDACTED}:{REDACTED}@{authority.rpartition('@')[2]}"
    else:
        authority = _host(host) if port is None else f"{_host(host)}:{port}"
    path, question, query = target.partition("?")
    if question:
        target = f"{path}?{redact_query(query)}"
    elif "#" in path:
        # A fragment is never sent, but one that reached here is no safer than a query.
        target = f"{path.partition('#')[0]}#{REDACTED}"
    return f"{scheme}://{authority}{target}"
