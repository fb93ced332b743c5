"""Every span name, attribute, event and reason that conntrace emits.

OpenTelemetry semantic-convention names are used wherever one exists; what has no
convention (connection reuse, idle time, pool behaviour, client settings) lives
under the ``conntrace.`` namespace. The README lists this module as a table.
"""

from __future__ import annotations

from typing import Any

# --- OpenTelemetry semantic conventions ----------------------------------------------------------
HTTP_REQUEST_METHOD = "http.request.method"
HTTP_RESPONSE_STATUS_CODE = "http.response.status_code"
HTTP_REQUEST_RESEND_COUNT = "http.request.resend_count"
URL_FULL = "url.full"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
ERROR_TYPE = "error.type"
NETWORK_PEER_ADDRESS = "network.peer.address"
NETWORK_PEER_PORT = "network.peer.port"
NETWORK_LOCAL_ADDRESS = "network.local.address"
NETWORK_LOCAL_PORT = "network.local.port"
NETWORK_TRANSPORT = "network.transport"
NETWORK_TYPE = "network.type"
DNS_QUESTION_NAME = "dns.question.name"
DNS_ANSWERS = "dns.answers"
TLS_PROTOCOL_NAME = "tls.protocol.name"
TLS_PROTOCOL_VERSION = "tls.protocol.version"
TLS_CIPHER = "tls.cipher"
TLS_RESUMED = "tls.resumed"
TLS_SERVER_NAME = "tls.client.server_name"
RPC_SYSTEM = "rpc.system"
RPC_SERVICE = "rpc.service"
RPC_METHOD = "rpc.method"
CLOUD_REGION = "cloud.region"
AWS_REQUEST_ID = "aws.request_id"
# On a connection setup: where the program made the client or session that owns the pool.
CODE_FILEPATH = "code.filepath"
CODE_LINENO = "code.lineno"
CODE_FUNCTION = "code.function"

RPC_SYSTEM_AWS = "aws-api"

# --- conntrace: the connection that carried a request --------------------------------------------
CONNECTION_ID = "conntrace.connection.id"
CONNECTION_REUSED = "conntrace.connection.reused"
CONNECTION_REASON = "conntrace.connection.reason"
CONNECTION_REQUEST_NUMBER = "conntrace.connection.request_number"
CONNECTION_AGE_MS = "conntrace.connection.age_ms"
CONNECTION_IDLE_MS = "conntrace.connection.idle_ms"
# False on a connection opened before conntrace was switched on: its request numbers count
# from then, and its age is unknown.
CONNECTION_SETUP_SEEN = "conntrace.connection.setup_seen"
POOL_WAIT_MS = "conntrace.pool.wait_ms"
POOL_MAX_SIZE = "conntrace.pool.max_size"
POOL_COUNT = "conntrace.pool.count"
# The library the program made the pool's client or session with: botocore, awscli,
# requests or urllib3.
POOL_LIBRARY = "conntrace.pool.library"
POOL_CHECKED_OUT = "conntrace.pool.checked_out"
# Why a TCP connection ended (one of CLOSE_CAUSES), on the events that say so.
CONNECTION_CLOSE_CAUSE = "conntrace.connection.close_cause"

# --- conntrace: the proxy a request went through -------------------------------------------------
# The semantic conventions name the server behind a proxy (server.*) and the proxy's socket
# address (network.peer.*), but not the proxy as configured (its name and port).
PROXY_ADDRESS = "conntrace.proxy.address"
PROXY_PORT = "conntrace.proxy.port"


def with_proxy(proxy: tuple[str, int] | None, attributes: dict[str, Any]) -> dict[str, Any]:
    """``attributes``, naming the proxy the traffic went through, if any."""
    if proxy is not None:
        attributes[PROXY_ADDRESS], attributes[PROXY_PORT] = proxy
    return attributes


# --- conntrace: socket options seen on a new TCP connection --------------------------------------
SOCKET_KEEPALIVE = "conntrace.socket.keepalive"
SOCKET_NODELAY = "conntrace.socket.nodelay"
# The keepalive timers in effect on the socket (getsockopt TCP_KEEPIDLE, TCP_KEEPINTVL,
# TCP_KEEPCNT; on Linux an unset one reads as net.ipv4.tcp_keepalive_*), where the OS has them.
SOCKET_KEEPALIVE_IDLE = "conntrace.socket.keepalive_idle_s"
SOCKET_KEEPALIVE_INTERVAL = "conntrace.socket.keepalive_interval_s"
SOCKET_KEEPALIVE_COUNT = "conntrace.socket.keepalive_count"
# The server's ``Keep-Alive: timeout=N`` response header, in seconds.
HTTP_KEEP_ALIVE_TIMEOUT = "conntrace.http.keep_alive_timeout_s"

# --- conntrace: the botocore client settings that decide latency ---------------------------------
AWS_ATTEMPTS = "conntrace.aws.attempts"
AWS_CONNECT_TIMEOUT = "conntrace.aws.connect_timeout"
AWS_READ_TIMEOUT = "conntrace.aws.read_timeout"
# Which of connect_timeout and read_timeout are at botocore's default (60 s).
AWS_DEFAULT_TIMEOUTS = "conntrace.aws.default_timeouts"
AWS_RETRY_MODE = "conntrace.aws.retry_mode"
AWS_MAX_ATTEMPTS = "conntrace.aws.max_attempts"
AWS_MAX_POOL_CONNECTIONS = "conntrace.aws.max_pool_connections"
AWS_TCP_KEEPALIVE = "conntrace.aws.tcp_keepalive"
# False when running the call twice may do its work twice (findings/rules.py: retried calls
# that are not idempotent; layers/botocore.py says how it is decided).
AWS_IDEMPOTENT = "conntrace.aws.idempotent"

# --- span names ----------------------------------------------------------------------------------
SPAN_CONNECTION_SETUP = "HTTP connection_setup"
SPAN_DNS = "DNS lookup"
SPAN_CONNECT = "socket connect"
SPAN_TLS = "TLS client handshake"
SPAN_PROXY = "HTTP CONNECT tunnel"

# --- span events ---------------------------------------------------------------------------------
EVENT_POOL_DISCARDED = "conntrace.pool.discarded"
EVENT_POOL_CREATED = "conntrace.pool.created"
EVENT_CONNECTION_DROPPED = "conntrace.connection.dropped"
EVENT_SERVER_CLOSED = "conntrace.connection.server_closed"
EVENT_CLIENT_CLOSED = "conntrace.connection.client_closed"
EVENT_CONNECTIONS_NOT_RETURNED = "conntrace.pool.not_returned"

# --- why a TCP connection ended ------------------------------------------------------------------
# The program (its HTTP library) closed it: a response released with its body unread (urllib3
# then finds data waiting at the next checkout and closes it), a response or connection closed
# by the program, the pool closed or cleared, a connection discarded by a full pool.
CLOSED_UNREAD_BODY = "unread_body"
CLOSED_BY_PROGRAM = "closed_by_program"
CLOSED_POOL_CLOSED = "pool_closed"
CLOSED_POOL_FULL = "pool_full"
# The server, after a response: it said 'Connection: close', or answered HTTP/1.0 without
# keep-alive.
CLOSED_CONNECTION_CLOSE = "connection_close"
CLOSED_HTTP_1_0 = "http_1_0"
# The peer, while the connection sat idle in the pool: found at checkout (FIN, or a reset).
CLOSED_PEER_IDLE = "peer_idle"
CLOSED_PEER_RESET = "peer_reset"
# An error broke the exchange.
CLOSED_ERROR = "error"

CLOSED_BY_CLIENT = (CLOSED_UNREAD_BODY, CLOSED_BY_PROGRAM, CLOSED_POOL_CLOSED, CLOSED_POOL_FULL)
CLOSED_BY_SERVER = (CLOSED_CONNECTION_CLOSE, CLOSED_HTTP_1_0)
CLOSED_BY_PEER_IDLE = (CLOSED_PEER_IDLE, CLOSED_PEER_RESET)
CLOSE_CAUSES = (*CLOSED_BY_CLIENT, *CLOSED_BY_SERVER, *CLOSED_BY_PEER_IDLE, CLOSED_ERROR)

# --- why a new connection was opened -------------------------------------------------------------
REASON_FIRST = "first"
REASON_NEW_POOL = "new_pool"
REASON_POOL_BUSY = "pool_busy"
REASON_POOL_DISCARDED = "pool_discarded"
REASON_SERVER_CLOSED = "server_closed"
REASON_STALE = "stale"
REASON_CLIENT_CLOSED = "client_closed"
REASON_ERROR = "error"

REASONS = (
    REASON_FIRST,
    REASON_NEW_POOL,
    REASON_POOL_BUSY,
    REASON_POOL_DISCARDED,
    REASON_SERVER_CLOSED,
    REASON_STALE,
    REASON_CLIENT_CLOSED,
    REASON_ERROR,
)

# --- AWS Lambda: one SERVER span per invocation (layers/awslambda.py) ----------------------------
FAAS_INVOCATION_ID = "faas.invocation_id"
FAAS_COLDSTART = "faas.coldstart"
FAAS_NAME = "faas.name"
FAAS_VERSION = "faas.version"
CLOUD_RESOURCE_ID = "cloud.resource_id"
CLOUD_ACCOUNT_ID = "cloud.account.id"
AWS_LAMBDA_INVOKED_ARN = "aws.lambda.invoked_arn"
EXCEPTION_TYPE = "exception.type"
EXCEPTION_MESSAGE = "exception.message"
EXCEPTION_STACKTRACE = "exception.stacktrace"
EVENT_EXCEPTION = "exception"

# --- diagnosis: metrics, findings and the report (metrics.py, findings/) -------------------------
URL_SCHEME = "url.scheme"
HTTP_CONNECTION_STATE = "http.connection.state"
CONNECTION_STATE_ACTIVE = "active"
CONNECTION_STATE_IDLE = "idle"

METRIC_OPEN_CONNECTIONS = "http.client.open_connections"
METRIC_CONNECTION_DURATION = "http.client.connection.duration"
METRIC_TIME_IN_QUEUE = "http.client.request.time_in_queue"
METRIC_DNS_DURATION = "dns.lookup.duration"
METRIC_CONNECT_DURATION = "conntrace.tcp.connect.duration"
METRIC_TLS_DURATION = "conntrace.tls.handshake.duration"
METRIC_CONNECTIONS_OPENED = "conntrace.connections.opened"
METRIC_REQUESTS = "conntrace.requests"

# A finding is a span event on the nearest open ancestor of the span that showed it.
EVENT_FINDING = "conntrace.finding"
FINDING_ID = "conntrace.finding.id"
FINDING_SEVERITY = "conntrace.finding.severity"
FINDING_MESSAGE = "conntrace.finding.message"

SEVERITY_WARNING = "warning"
SEVERITY_INFO = "info"

FINDING_CLIENT_RECREATED = "client_recreated"
FINDING_POOL_TOO_SMALL = "pool_too_small"
FINDING_SERVER_CLOSES = "server_closes_connections"
FINDING_IDLE_DROPPED = "idle_connections_dropped"
FINDING_REPEATED_DNS = "repeated_dns_lookups"
FINDING_DEFAULT_TIMEOUTS = "default_timeouts"
FINDING_RETRY_TIME = "time_lost_to_retries"
FINDING_SETUP_SHARE = "connection_setup_share"
FINDING_NOT_IDEMPOTENT = "retried_not_idempotent"
FINDING_IDLE_TIMEOUT = "idle_timeout"
FINDING_BODIES_NOT_CLOSED = "response_bodies_not_closed"
FINDING_POOL_WAIT = "pool_wait"

FINDINGS = (
    FINDING_CLIENT_RECREATED,
    FINDING_BODIES_NOT_CLOSED,
    FINDING_POOL_TOO_SMALL,
    FINDING_POOL_WAIT,
    FINDING_SERVER_CLOSES,
    FINDING_IDLE_DROPPED,
    FINDING_REPEATED_DNS,
    FINDING_DEFAULT_TIMEOUTS,
    FINDING_RETRY_TIME,
    FINDING_SETUP_SHARE,
    FINDING_NOT_IDEMPOTENT,
    FINDING_IDLE_TIMEOUT,
)
