"""What to change, in the terms of the library the program uses (``Pool.library``: botocore
for boto3 and botocore, awscli, requests, urllib3, aiohttp, aiobotocore, httpx), in one place.

A rule words its advice with ``advice(finding, library, **values)``: one table per finding,
one text per library; a library the table does not name gets botocore's words, the library
conntrace is made for. ``words(library)`` gives the shorter phrases the rules weave into
their summaries and span events.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from .. import attributes as A
from ..ledger import AIOBOTOCORE, AIOHTTP, AWSCLI, BOTOCORE, HTTPX, REQUESTS, URLLIB3


@dataclass(frozen=True)
class Words:
    """How one library's users change what the host rules find."""

    pool_size: str  # ``{n}``: the suggested size
    finds_dead: str
    dns_cache: str
    dns_event: str
    idle_settings: str


_AIOHTTP_DNS = (
    "aiohttp caches lookups per connector for TCPConnector(ttl_dns_cache=...) seconds (10 by "
    "default): a name is looked up again when its entry expired, and every new connector "
    "starts with an empty cache."
)
_AIOHTTP_FULL = (
    "aiohttp makes a request wait for a free connection once the connector's limit is "
    "reached, and the wait counts against the request's connect timeout."
)
_BOTOCORE_WORDS = Words(
    pool_size="botocore.config.Config(max_pool_connections={n})",
    finds_dead="urllib3 found them dead when it took them from the pool",
    dns_cache=(
        "Python, urllib3 and botocore keep no DNS cache: every new connection calls "
        "getaddrinfo again."
    ),
    dns_event="Python keeps no DNS cache",
    idle_settings=(
        "tcp_keepalive (Config(tcp_keepalive=True), BOTOCORE_TCP_KEEPALIVE=true or "
        "tcp_keepalive in the shared config file) only sets SO_KEEPALIVE on new sockets: "
        "the kernel then probes a connection idle for net.ipv4.tcp_keepalive_time (7200 s "
        "by default on Linux), which keeps a NAT mapping alive only if that time is below "
        "the NAT's idle timeout. It does not stop a server from closing idle HTTP "
        "connections, sends nothing while a Lambda environment is frozen, and does not "
        "change pooling."
    ),
)
_SOCKET_KEEPALIVE = (
    "SO_KEEPALIVE (socket_options, off by default) makes the kernel probe a connection idle "
    "for net.ipv4.tcp_keepalive_time (7200 s by default on Linux) unless TCP_KEEPIDLE is set "
    "lower, which keeps a NAT mapping alive only if that time is below the NAT's idle "
    "timeout. It does not stop a server from closing idle HTTP connections."
)
_WORDS = {
    BOTOCORE: _BOTOCORE_WORDS,
    AWSCLI: replace(
        _BOTOCORE_WORDS,
        pool_size="max_concurrent_requests = {n} (aws configure set default.s3."
        "max_concurrent_requests {n})",
    ),
    REQUESTS: replace(
        _BOTOCORE_WORDS,
        pool_size="requests.adapters.HTTPAdapter(pool_maxsize={n})",
        dns_cache="Python, urllib3 and requests keep no DNS cache: every new connection calls "
        "getaddrinfo again.",
        idle_settings=_SOCKET_KEEPALIVE,
    ),
    URLLIB3: replace(
        _BOTOCORE_WORDS,
        pool_size="urllib3.PoolManager(maxsize={n})",
        dns_cache="Python and urllib3 keep no DNS cache: every new connection calls "
        "getaddrinfo again.",
        idle_settings=_SOCKET_KEEPALIVE,
    ),
    AIOHTTP: Words(
        pool_size="aiohttp.TCPConnector(limit={n}, limit_per_host={n})",
        finds_dead="aiohttp found them closed when it took them from the pool",
        dns_cache=_AIOHTTP_DNS,
        dns_event="aiohttp's DNS cache (ttl_dns_cache) did not have it",
        idle_settings=(
            "aiohttp itself closes connections idle longer than "
            "TCPConnector(keepalive_timeout=...) (15 s by default): keep that below the "
            "server's idle timeout, and raise it if your requests come further apart."
        ),
    ),
    AIOBOTOCORE: Words(
        pool_size="aiobotocore.config.AioConfig(max_pool_connections={n})",
        finds_dead="aiohttp found them closed when it took them from the pool",
        dns_cache=_AIOHTTP_DNS,
        dns_event="aiohttp's DNS cache (ttl_dns_cache) did not have it",
        idle_settings=(
            "aiobotocore's connector itself closes connections idle longer than "
            "AioConfig(connector_args={'keepalive_timeout': ...}) (12 s by default): keep that "
            "below the server's idle timeout."
        ),
    ),
    HTTPX: Words(
        pool_size=(
            "httpx.Limits(max_keepalive_connections={n}) with max_connections of at least {n}"
        ),
        finds_dead="httpx found them closed when it took them from the pool",
        dns_cache="Python and httpx keep no DNS cache: every new connection calls getaddrinfo "
        "again.",
        dns_event="Python keeps no DNS cache",
        idle_settings=(
            "httpx itself closes connections idle longer than httpx.Limits(keepalive_expiry=...) "
            "(5 s by default): raise it to a little below the server's idle timeout if your "
            "requests come further apart."
        ),
    ),
}


def words(library: str) -> Words:
    return _WORDS.get(library, _BOTOCORE_WORDS)


_TABLE: dict[str, dict[str, str]] = {
    A.FINDING_CLIENT_RECREATED: {
        BOTOCORE: (
            "Create the boto3 client or resource once (at module level, outside the Lambda "
            "handler) and reuse it for every call; clients are thread-safe. Each new client "
            "pays DNS, TCP and TLS again: {setup} here so far."
        ),
        AWSCLI: (
            "Each aws command is a new process with a new client, so nothing is reused between "
            "commands: for many calls in a row, make them from one boto3 client in a script, or "
            "use the commands that take many items at once. Each new client pays DNS, TCP and "
            "TLS again: {setup} here so far."
        ),
        REQUESTS: (
            "requests.get() and its siblings make a new Session, and so a new pool, on every "
            "call: make one requests.Session() and call session.get() on it (a Session per "
            "thread if you share nothing). Each new pool pays DNS, TCP and TLS again: {setup} "
            "here so far."
        ),
        URLLIB3: (
            "Make one urllib3.PoolManager (or one HTTPConnectionPool per host) and reuse it for "
            "every request; it is thread-safe. Each new pool pays DNS, TCP and TLS again: "
            "{setup} here so far."
        ),
        AIOHTTP: (
            "Create one aiohttp.ClientSession (with its TCPConnector) and reuse it for every "
            "request; each new session starts with no connections and an empty DNS cache. "
            "Each new client pays DNS, TCP and TLS again: {setup} here so far."
        ),
        AIOBOTOCORE: (
            "Create the aiobotocore client once (enter session.create_client(...) once for "
            "the program's life, e.g. with contextlib.AsyncExitStack) and reuse it for every "
            "call; each new client opens its own aiohttp connector with no connections. Each "
            "new client pays DNS, TCP and TLS again: {setup} here so far."
        ),
        HTTPX: (
            "Create the httpx.Client (or httpx.AsyncClient) once and send every request "
            "through it, instead of httpx.get() or a client per call: its pool keeps "
            "connections open between requests (httpx.Limits(max_keepalive_connections=..., "
            "keepalive_expiry=...) says how many and how long). Each new client pays DNS, TCP "
            "and TLS again: {setup} here so far."
        ),
    },
    A.FINDING_POOL_TOO_SMALL: {
        BOTOCORE: (
            "Set botocore.config.Config(max_pool_connections={suggestion}) on the client these "
            "threads share (it is per client; the default is 10). urllib3 does not make a "
            "thread wait for a pooled connection: it opens an extra one and throws it away "
            'afterwards ("Connection pool is full, discarding connection").'
        ),
        AWSCLI: (
            "The AWS CLI sizes its connection pool from max_concurrent_requests (default 10): "
            "keep them equal, e.g. aws configure set default.s3.max_concurrent_requests "
            "{suggestion}, or lower the concurrency if the pool must stay small."
        ),
        REQUESTS: (
            "Mount an adapter with a larger pool on the Session these threads share: "
            "session.mount('https://', requests.adapters.HTTPAdapter(pool_maxsize={suggestion})) "
            "(pool_maxsize is per host, default 10; pool_connections is how many hosts keep a "
            "pool). urllib3 opens an extra connection when the pool is empty and throws it away "
            'afterwards ("Connection pool is full, discarding connection"); '
            "HTTPAdapter(pool_block=True) makes threads wait for one instead."
        ),
        URLLIB3: (
            "Make the pool as large as the concurrency: urllib3.PoolManager(maxsize={suggestion}) "
            "(per host; the default is 1). With "
            "block=False (the default) urllib3 opens an extra connection when the pool is empty "
            "and throws it away afterwards; block=True makes threads wait for a pooled one."
        ),
        AIOHTTP: (
            "Set aiohttp.TCPConnector(limit={suggestion}, limit_per_host={suggestion}) on the "
            "session these tasks share (the defaults are limit=100 and no limit per host). "
            + _AIOHTTP_FULL
        ),
        AIOBOTOCORE: (
            "Set aiobotocore.config.AioConfig(max_pool_connections={suggestion}) on the client "
            "these tasks share (it is the limit of the client's aiohttp connector; the default "
            "is 10). " + _AIOHTTP_FULL
        ),
        HTTPX: (
            "Set httpx.Limits(max_keepalive_connections={suggestion}) with max_connections of "
            "at least {suggestion} on the client these requests share (the defaults are "
            "max_connections=100 and max_keepalive_connections=20). httpx makes a request wait "
            "for a connection once max_connections are in use, and closes idle connections "
            "while its pool holds more than max_keepalive_connections: the next busy moment "
            "opens them again."
        ),
    },
    A.FINDING_RETRY_TIME: {
        BOTOCORE: (
            "Retries turn failures into latency. Look at the errors first (throttling: more "
            "capacity or smoother load; 5xx: the service or a proxy on the way). Bound the "
            "attempts to what your latency budget allows: Config(retries={{'mode': 'standard', "
            "'total_max_attempts': 3}}) backs off exponentially with jitter; 'adaptive' also "
            "slows the client down while it is throttled."
        ),
        AWSCLI: (
            "Retries turn failures into latency. Look at the errors first (throttling: more "
            "capacity or smoother load; 5xx: the service or a proxy on the way). Bound the "
            "attempts with AWS_MAX_ATTEMPTS=3 and AWS_RETRY_MODE=standard (or max_attempts and "
            "retry_mode in the profile of ~/.aws/config)."
        ),
        REQUESTS: (
            "Retries turn failures into latency. Look at the errors first. requests retries "
            "through urllib3: mount HTTPAdapter(max_retries=urllib3.util.Retry(total=3, "
            "backoff_factor=0.5, status_forcelist=[502, 503, 504])) and bound each attempt "
            "with timeout=(connect, read) on every call (requests has no default timeout)."
        ),
        URLLIB3: (
            "Retries turn failures into latency. Look at the errors first. Bound them with "
            "retries=urllib3.util.Retry(total=3, backoff_factor=0.5) on the PoolManager or the "
            "request, and each attempt with timeout=urllib3.util.Timeout(connect=1, read=2)."
        ),
        HTTPX: (
            "Retries turn failures into latency. Look at the errors first. httpx retries only "
            "a connect that failed, httpx.HTTPTransport(retries=n) times, with backoff; bound "
            "each request with timeout=httpx.Timeout(5, connect=1)."
        ),
    },
    A.FINDING_DEFAULT_TIMEOUTS: {
        BOTOCORE: (
            "For latency-sensitive calls, AWS's guidance on tuning SDK HTTP settings (written "
            "for DynamoDB) sets timeouts from the latency budget instead of keeping the "
            "defaults: a short connect timeout (1 s or less), a read timeout a little above the "
            "slowest normal response (well under a second for single-item DynamoDB calls; about "
            "5.5 s for batch calls, as DynamoDB gives up on an item after 5 s) and few attempts "
            "with backoff, e.g. Config(connect_timeout=1, read_timeout=2, retries={{'mode': "
            "'standard', 'total_max_attempts': 3}}). botocore has no deadline for a whole call: "
            "bound it in your code if you need one. Values too low fail calls on a brief "
            "network hiccup."
        ),
        AWSCLI: (
            "Set the timeouts from your latency budget instead of keeping the defaults: "
            "--cli-connect-timeout 1 (seconds; 0 waits for ever) and --cli-read-timeout a "
            "little above the slowest normal response, with few attempts "
            "(AWS_MAX_ATTEMPTS=3, AWS_RETRY_MODE=standard). Values too low fail commands on a "
            "brief network hiccup."
        ),
    },
    A.FINDING_NOT_IDEMPOTENT: {
        BOTOCORE: (
            "botocore retries every operation after a read timeout or a broken connection, "
            "whether or not it is safe to repeat (boto3#883). Make the write safe to repeat (a "
            "ConditionExpression on DynamoDB writes, a ClientRequestToken or idempotency key "
            "where the API has one, a MessageDeduplicationId on an SQS FIFO queue), or call "
            "it through a client of its own with Config(retries={{'total_max_attempts': 1}}) "
            "and a read_timeout above its slowest normal answer (for Lambda Invoke: above the "
            "function's timeout), and decide in your code what a timeout means."
        ),
        AWSCLI: (
            "The AWS CLI retries every operation after a read timeout or a broken connection, "
            "whether or not it is safe to repeat. Make the write safe to repeat (a "
            "--condition-expression on DynamoDB writes, a client request token where the API "
            "has one), or run it with AWS_MAX_ATTEMPTS=1 and a --cli-read-timeout above its "
            "slowest normal answer, and check the outcome yourself after a timeout."
        ),
    },
    A.FINDING_IDLE_TIMEOUT: {
        BOTOCORE: (
            "Keep idle connections alive past the bound, or expect one new connection after "
            "such pauses. Config(tcp_keepalive=True) only turns SO_KEEPALIVE on: Linux then "
            "waits net.ipv4.tcp_keepalive_time (7,200 s by default) before the first probe, far "
            "beyond a 350 s NAT gateway timeout (botocore#2916). botocore has no per-client "
            "TCP_KEEPIDLE: lower it for the machine below the bound (sysctl -w "
            "net.ipv4.tcp_keepalive_time={keepidle}) together with tcp_keepalive=True. Probes "
            "do not stop a server that closes idle HTTP connections itself (Keep-Alive: "
            "timeout): there, a call after a long pause opens a new connection."
        ),
        AWSCLI: (
            "Each aws command opens its own connections, so this shows pauses within one "
            "command (a long s3 transfer, pagination). The AWS CLI sets no keepalive timers: "
            "tcp_keepalive = true in the profile of ~/.aws/config turns SO_KEEPALIVE on, and "
            "the first probe comes after net.ipv4.tcp_keepalive_time (7,200 s by default on "
            "Linux): lower it below the bound (sysctl -w net.ipv4.tcp_keepalive_time="
            "{keepidle})."
        ),
        REQUESTS: (
            "Keep idle connections alive past the bound with keepalive probes that start "
            "sooner: mount an HTTPAdapter subclass whose init_poolmanager passes "
            "socket_options=urllib3.connection.HTTPConnection.default_socket_options + "
            "[(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1), (socket.IPPROTO_TCP, "
            "socket.TCP_KEEPIDLE, {keepidle}), (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 10), "
            "(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)] (SO_KEEPALIVE alone waits 7,200 s on "
            "Linux). Probes do not stop a server that closes idle HTTP connections itself: "
            "there, expect one new connection after a long pause."
        ),
        URLLIB3: (
            "Keep idle connections alive past the bound with keepalive probes that start "
            "sooner: urllib3.PoolManager(socket_options=urllib3.connection.HTTPConnection."
            "default_socket_options + [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1), "
            "(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, {keepidle}), (socket.IPPROTO_TCP, "
            "socket.TCP_KEEPINTVL, 10), (socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)]) "
            "(SO_KEEPALIVE alone waits 7,200 s on Linux). Probes do not stop a server that "
            "closes idle HTTP connections itself: there, expect one new connection after a "
            "long pause."
        ),
        AIOHTTP: (
            "aiohttp closes connections idle longer than TCPConnector(keepalive_timeout=...) "
            "(15 s by default) itself: keep that below the bound (e.g. {keepidle} s), so that "
            "aiohttp retires an idle connection before the middle drops it."
        ),
        AIOBOTOCORE: (
            "aiobotocore's connector closes connections idle longer than "
            "AioConfig(connector_args={{'keepalive_timeout': ...}}) (12 s by default) itself: "
            "keep that below the bound (e.g. {keepidle} s), so that it retires an idle "
            "connection before the middle drops it."
        ),
        HTTPX: (
            "httpx closes connections idle longer than httpx.Limits(keepalive_expiry=...) "
            "(5 s by default) itself: keep that below the bound (e.g. {keepidle} s), so that "
            "httpx retires an idle connection before the middle drops it."
        ),
    },
}


def advice(finding: str, library: str, **values: Any) -> str:
    """The advice for ``finding`` in ``library``'s terms, filled with ``values``."""
    texts = _TABLE[finding]
    return texts.get(library, texts[BOTOCORE]).format(**values)
