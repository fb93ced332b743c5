"""Puts one object of SIZE bytes in a new bucket on a local S3, then downloads it with
``download_file`` in CHUNK-byte ranged GETs, CONCURRENCY at a time, on one client (pool of
10); writes urllib3's "pool is full" warning count to OUT.

argv: ENDPOINT BUCKET SIZE CHUNK CONCURRENCY DESTINATION OUT
"""

from __future__ import annotations

import hashlib
import sys

import boto3
import pool_warnings
from boto3.s3.transfer import TransferConfig
from botocore.config import Config


def main() -> int:
    endpoint, bucket = sys.argv[1], sys.argv[2]
    size, chunk, concurrency = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    destination, out = sys.argv[6], sys.argv[7]
    warnings = pool_warnings.install()
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        # Path style: the bucket's name never becomes a host name to look up.
        config=Config(s3={"addressing_style": "path"}),
    )
    s3.create_bucket(Bucket=bucket)
    data = bytes(range(256)) * (size // 256)
    s3.put_object(Bucket=bucket, Key="object", Body=data)
    transfer = TransferConfig(
        multipart_threshold=chunk, multipart_chunksize=chunk, max_concurrency=concurrency
    )
    s3.download_file(bucket, "object", destination, Config=transfer)
    with open(destination, "rb") as file:
        downloaded = hashlib.sha256(file.read()).hexdigest()
    assert downloaded == hashlib.sha256(data).hexdigest(), "the download differs"
    pool_warnings.write(warnings, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
