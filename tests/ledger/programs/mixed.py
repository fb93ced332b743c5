"""A mixed program: DynamoDB calls on one client, a client per call, and plain GETs.

argv: DYNAMODB_ENDPOINT HTTP_URL TABLE
"""

from __future__ import annotations

import sys

import boto3
import requests


def client(endpoint: str):  # type: ignore[no-untyped-def]
    return boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")


def main() -> int:
    endpoint, url, table = sys.argv[1], sys.argv[2], sys.argv[3]
    shared = client(endpoint)
    shared.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    for n in range(40):
        shared.put_item(TableName=table, Item={"pk": {"S": f"item-{n}"}})
    for n in range(40):
        item = shared.get_item(TableName=table, Key={"pk": {"S": f"item-{n}"}})
        assert item["Item"]["pk"]["S"] == f"item-{n}"
    for _ in range(15):
        client(endpoint).list_tables()
    session = requests.Session()
    for _ in range(10):
        session.get(url, timeout=30).raise_for_status()
    for _ in range(5):
        requests.get(url, timeout=30).raise_for_status()
    return 0


if __name__ == "__main__":
    sys.exit(main())
