"""Every span name, attribute, event and reason that conntrace emits.

OpenTelemetry semantic-convention names are used wherever one exists; what has no
convention (connection reuse, idle time, pool behaviour, client settings) lives
under the ``conntrace.`` namespace. The README lists this module as a table.
"""

from __future__ import annotations

# --- OpenTelemetry semantic conventions -------------------------------------------
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

RPC_SYSTEM_AWS = "aws-api"

# --- conntrace: the connection that carried a request ---------------------------
CONNECTION_ID = "conntrace.connection.id"
CONNECTION_REUSED = "conntrace.connection.reused"
CONNECTION_REASON = "conntrace.connection.reason"
CONNECTION_REQUEST_NUMBER = "conntrace.connection.request_number"
CONNECTION_AGE_MS = "conntrace.connection.age_ms"
CONNECTION_IDLE_MS = "conntrace.connection.idle_ms"
POOL_WAIT_MS = "conntrace.pool.wait_ms"
POOL_MAX_SIZE = "conntrace.pool.max_size"
POOL_COUNT = "conntrace.pool.count"

# --- conntrace: socket options seen on a new TCP connection ------------------------
SOCKET_KEEPALIVE = "conntrace.socket.keepalive"
SOCKET_NODELAY = "conntrace.socket.nodelay"

# --- conntrace: the botocore client settings that decide latency ------------------
AWS_ATTEMPTS = "conntrace.aws.attempts"
AWS_CONNECT_TIMEOUT = "conntrace.aws.connect_timeout"
AWS_READ_TIMEOUT = "conntrace.aws.read_timeout"
AWS_RETRY_MODE = "conntrace.aws.retry_mode"
AWS_MAX_ATTEMPTS = "conntrace.aws.max_attempts"
AWS_MAX_POOL_CONNECTIONS = "conntrace.aws.max_pool_connections"
AWS_TCP_KEEPALIVE = "conntrace.aws.tcp_keepalive"

# --- span names --------------------------------------------------------------------
SPAN_CONNECTION_SETUP = "HTTP connection_setup"
SPAN_DNS = "DNS lookup"
SPAN_CONNECT = "socket connect"
SPAN_TLS = "TLS client handshake"

# --- span events -------------------------------------------------------------------
EVENT_POOL_DISCARDED = "conntrace.pool.discarded"
EVENT_POOL_CREATED = "conntrace.pool.created"
EVENT_CONNECTION_DROPPED = "conntrace.connection.dropped"
EVENT_SERVER_CLOSED = "conntrace.connection.server_closed"

# --- why a new connection was opened -------------------------------------------------
REASON_FIRST = "first"
REASON_NEW_POOL = "new_pool"
REASON_POOL_BUSY = "pool_busy"
REASON_POOL_DISCARDED = "pool_discarded"
REASON_SERVER_CLOSED = "server_closed"
REASON_STALE = "stale"
REASON_ERROR = "error"

REASONS = (
    REASON_FIRST,
    REASON_NEW_POOL,
    REASON_POOL_BUSY,
    REASON_POOL_DISCARDED,
    REASON_SERVER_CLOSED,
    REASON_STALE,
    REASON_ERROR,
)
