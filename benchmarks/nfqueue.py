"""Hold back the TCP handshake of connections to one local port, for a set time.

A server cannot delay a client's ``connect()`` by accepting late: the kernel answers the
SYN before ``accept`` is called. So the client's SYN is handed to this process through
netfilter's NFQUEUE (an iptables rule matching the port), held for the delay, and then
let through. That needs CAP_NET_ADMIN; ``run.py`` runs it in a network namespace of its
own (``unshare --net``), so the rule never touches the machine's other traffic. The rule
has ``--queue-bypass``: if this process dies, SYNs pass undelayed.

The netlink messages are built by hand (a few structs from
``linux/netfilter/nfnetlink_queue.h``) so no compiled binding is needed.
"""

from __future__ import annotations

import socket
import struct
import subprocess
import threading
import time
from types import TracebackType

_NETLINK_NETFILTER = 12
_SUBSYS_QUEUE = 3
_MSG_PACKET, _MSG_VERDICT, _MSG_CONFIG = 0, 1, 2
_NLM_F_REQUEST, _NLM_F_ACK = 1, 4
_NLMSG_ERROR = 2
_CFG_CMD, _CFG_PARAMS = 1, 2
_CMD_BIND = 1
_COPY_META = 1
_ATTR_PACKET_HDR = 1
_ATTR_VERDICT_HDR = 2
_NF_ACCEPT = 1


def _attribute(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def _message(kind: int, queue: int, attributes: list[bytes], flags: int = _NLM_F_REQUEST) -> bytes:
    body = struct.pack("!BBH", socket.AF_UNSPEC, 0, queue) + b"".join(attributes)
    header = struct.pack("=IHHII", 16 + len(body), (_SUBSYS_QUEUE << 8) | kind, flags, 0, 0)
    return header + body


class SynDelay:
    """While open, every SYN sent to 127.0.0.1:``port`` waits ``delay`` seconds."""

    def __init__(self, port: int, delay: float) -> None:
        self.port = port
        self.delay = delay
        self.queue = port  # NFQUEUE numbers are 16 bits, like ports: one queue per port.
        self.held = 0
        self._rule = [
            "OUTPUT", "-o", "lo", "-p", "tcp", "--dport", str(port),
            "--tcp-flags", "SYN,ACK,RST,FIN", "SYN",
            "-j", "NFQUEUE", "--queue-num", str(self.queue), "--queue-bypass",
        ]  # fmt: skip
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_NETFILTER)

    def __enter__(self) -> SynDelay:
        self._sock.bind((0, 0))
        self._configure(_CFG_CMD, struct.pack("!BxH", _CMD_BIND, 0))
        self._configure(_CFG_PARAMS, struct.pack("!IB", 0, _COPY_META))
        subprocess.run(["iptables", "-A", *self._rule], check=True)
        threading.Thread(target=self._hold_loop, name="syn-delay", daemon=True).start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        subprocess.run(["iptables", "-D", *self._rule], check=False)
        self._sock.close()

    def _configure(self, kind: int, payload: bytes) -> None:
        flags = _NLM_F_REQUEST | _NLM_F_ACK
        self._sock.send(_message(_MSG_CONFIG, self.queue, [_attribute(kind, payload)], flags))
        answer = self._sock.recv(4096)
        _length, kind_back = struct.unpack_from("=IH", answer)
        if kind_back == _NLMSG_ERROR:
            (error,) = struct.unpack_from("=i", answer, 16)
            if error:
                raise OSError(-error, "NFQUEUE configuration refused")

    def _hold_loop(self) -> None:
        while True:
            try:
                data = self._sock.recv(65536)
            except OSError:
                return
            for packet_id in _packet_ids(data):
                time.sleep(self.delay)
                self.held += 1
                verdict = struct.pack("!II", _NF_ACCEPT, packet_id)
                self._sock.send(
                    _message(_MSG_VERDICT, self.queue, [_attribute(_ATTR_VERDICT_HDR, verdict)])
                )


def _packet_ids(data: bytes) -> list[int]:
    ids = []
    offset = 0
    while offset + 16 <= len(data):
        length, kind = struct.unpack_from("=IH", data, offset)
        if kind == (_SUBSYS_QUEUE << 8) | _MSG_PACKET:
            attribute = offset + 20  # past nlmsghdr and nfgenmsg
            end = offset + length
            while attribute + 4 <= end:
                size, attribute_kind = struct.unpack_from("=HH", data, attribute)
                if attribute_kind & 0x7FFF == _ATTR_PACKET_HDR:
                    ids.append(struct.unpack_from("!I", data, attribute + 4)[0])
                attribute += max(4, (size + 3) & ~3)
        offset += max(16, (length + 3) & ~3)
    return ids
