"""The benchmark server speaks HTTP/1.1 as the clients under test need it to."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from benchmarks.server import CLOSE_RESPONSE, KEEP_ALIVE_RESPONSE, SAMPLE_REQUEST, FastServer


@pytest.fixture
def server() -> Iterator[FastServer]:
    running = FastServer().start()
    yield running
    running.stop()


def _read(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_requests_split_and_pipelined_get_one_answer_each(server: FastServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        # The first request arrives in two pieces, cut inside its body; the next two
        # arrive in one write.
        sock.sendall(SAMPLE_REQUEST[:-10])
        sock.sendall(SAMPLE_REQUEST[-10:] + SAMPLE_REQUEST + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        answers = _read(sock, 3 * len(KEEP_ALIVE_RESPONSE))
    assert answers == KEEP_ALIVE_RESPONSE * 3
    assert server.connections == 1


def test_connection_close_is_answered_and_honoured(server: FastServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = _read(sock, len(CLOSE_RESPONSE) + 1)
    assert answer == CLOSE_RESPONSE
    assert b"\r\nConnection: close\r\n" in answer


def test_botocore_reads_the_answer_as_a_get_item_response(server: FastServer) -> None:
    import boto3

    client = boto3.client(
        "dynamodb",
        endpoint_url=f"http://127.0.0.1:{server.port}",
        region_name="us-east-1",
        aws_access_key_id="benchmark",
        aws_secret_access_key="benchmark",
    )
    item = client.get_item(TableName="benchmark", Key={"id": {"S": "1"}})
    assert item["Item"]["id"] == {"S": "1"}
    assert item["ResponseMetadata"]["HTTPStatusCode"] == 200
