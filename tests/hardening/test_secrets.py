"""Nothing secret leaves the process: every byte conntrace emits is scanned for secrets.

A program under ``conntrace-run`` uses access keys and a session token, sends an
``Authorization`` header, fetches a presigned S3 URL through urllib3 and sends bodies with
a marker in them. The OTLP export (decoded at the receiver), the terminal view, the JSON
report and the log output must hold none of those values.
"""

from __future__ import annotations

import json
import textwrap

from conntrace import attributes as A

from ..cli.running import conntrace_run
from ..otlp_receiver import OtlpReceiver

SECRETS = {
    "AWS_ACCESS_KEY_ID": "AKIASECRETMARKER0001",
    "AWS_SECRET_ACCESS_KEY": "secret-key-marker-0002",
    "AWS_SESSION_TOKEN": "session-token-marker-0003",
}
AUTHORIZATION = "Bearer authorization-marker-0004"
BODY = "request-body-marker-0005"

PROGRAM = textwrap.dedent(
    f"""
    import sys
    import boto3, urllib3
    from botocore.config import Config

    endpoint = sys.argv[1]
    session = boto3.session.Session(region_name="us-east-1")
    path_style = Config(s3={{"addressing_style": "path"}})
    s3 = session.client("s3", endpoint_url=endpoint, config=path_style)
    s3.create_bucket(Bucket="secrets")
    s3.put_object(Bucket="secrets", Key="object", Body=b"{BODY}")
    http = urllib3.PoolManager()
    # Presigned both ways: SigV4 (X-Amz-*) and the older query form (AWSAccessKeyId, ...).
    for version in ("s3v4", "s3"):
        signer = session.client(
            "s3", endpoint_url=endpoint,
            config=path_style.merge(Config(signature_version=version)),
        )
        url = signer.generate_presigned_url(
            "get_object", Params={{"Bucket": "secrets", "Key": "object"}}, ExpiresIn=60
        )
        assert "{SECRETS["AWS_SESSION_TOKEN"]}" in url, url
        assert http.request("GET", url).data == b"{BODY}"
    http.request("POST", endpoint + "/", body=b"{BODY}",
                 headers={{"Authorization": "{AUTHORIZATION}"}})

    dynamodb = session.client("dynamodb", endpoint_url=endpoint)
    dynamodb.create_table(
        TableName="secrets",
        KeySchema=[{{"AttributeName": "pk", "KeyType": "HASH"}}],
        AttributeDefinitions=[{{"AttributeName": "pk", "AttributeType": "S"}}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.put_item(TableName="secrets", Item={{"pk": {{"S": "{BODY}"}}}})
    print("done")
    """
)


def test_no_secret_in_anything_conntrace_emits(tmp_path, moto_endpoint):
    program = tmp_path / "secrets_app.py"
    program.write_text(PROGRAM)
    report = tmp_path / "report.json"
    with OtlpReceiver(protocol="http") as receiver:
        run = conntrace_run(
            [
                "--console",
                "--report",
                str(report),
                # Listing a signature's key does not keep its value.
                "--keep-query-values",
                "X-Amz-Expires,X-Amz-Signature,Signature",
                "python",
                str(program),
                moto_endpoint,
            ],
            env={**receiver.environ(), **SECRETS, "OTEL_METRICS_EXPORTER": "otlp"},
        )
        spans = receiver.wait_for_spans(lambda got: len(got) >= 10, timeout=10)
        metrics = receiver.metrics()

    assert run.returncode == 0, run.stderr
    assert run.stdout == "done\n"
    emitted = {
        "otlp spans": "\n".join(repr(span) for span in spans),
        "otlp metrics": "\n".join(repr(metric) for metric in metrics),
        "terminal view and logs": run.stderr,
        "report": report.read_text(),
    }
    secrets = [*SECRETS.values(), AUTHORIZATION, "authorization-marker", BODY]
    leaks = {
        where: [secret for secret in secrets if secret in text]
        for where, text in emitted.items()
        if any(secret in text for secret in secrets)
    }
    assert leaks == {}

    # The scan looked at real output: both presigned fetches are there, redacted.
    urls = [
        str(s.attributes[A.URL_FULL])
        for s in spans
        if s.attributes.get(A.HTTP_REQUEST_METHOD) == "GET" and "?" in str(s.attributes[A.URL_FULL])
    ]
    [v4] = [url for url in urls if "X-Amz-Signature" in url]
    for key in ("X-Amz-Signature", "X-Amz-Credential", "X-Amz-Security-Token"):
        assert f"{key}=REDACTED" in v4
    assert "X-Amz-Expires=60" in v4  # what is listed, and not secret, stays readable
    assert "X-Amz-Date=REDACTED" in v4  # what is not listed does not
    [v2] = [url for url in urls if "AWSAccessKeyId" in url]
    for key in ("AWSAccessKeyId", "Signature", "x-amz-security-token"):
        assert f"{key}=REDACTED" in v2
    assert json.loads(emitted["report"])["totals"]["requests"] >= 6
    assert "PutItem" in emitted["terminal view and logs"]
