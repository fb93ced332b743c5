"""``conntrace-run`` on a program that talks through a proxy with credentials: not one byte
that conntrace writes (OTLP spans and metrics, the console view, the report, its log) holds
them, while the program's requests carry them to the proxy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from conntrace import attributes as A

from ..otlp_receiver import OtlpReceiver
from .test_through_a_proxy import PASSWORD, USER, assert_no_credentials

CONNTRACE_RUN = str(Path(sys.executable).with_name("conntrace-run"))

APP = textwrap.dedent(
    """
    import logging
    import sys

    import requests

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("conntrace").setLevel(logging.DEBUG)
    https_url, http_url, proxy, ca_file = sys.argv[1:5]
    session = requests.Session()
    session.proxies = {"https": proxy, "http": proxy}
    for _ in range(2):
        session.get(https_url + "/item?key=value", verify=ca_file).raise_for_status()
        session.get(http_url + "/item", verify=ca_file).raise_for_status()
    wrong = proxy.replace(":" + sys.argv[5] + "@", ":wrong@")
    try:
        requests.get(https_url, proxies={"https": wrong}, verify=ca_file)
    except requests.exceptions.ProxyError as error:
        print("refused:", type(error).__name__)
    """
)


def test_proxy_credentials_are_in_nothing_conntrace_writes(
    tls_server, server, proxy, ca, tmp_path: Path
):
    target, plain = tls_server(), server()
    through = proxy(credentials=(USER, PASSWORD))
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    app = tmp_path / "app.py"
    app.write_text(APP)
    report_path = tmp_path / "report.json"
    with OtlpReceiver(protocol="http") as receiver:
        environ = {
            **os.environ,
            **receiver.environ(),
            "OTEL_SERVICE_NAME": "proxy-credentials",
            "CONNTRACE_CONSOLE": "true",
            "CONNTRACE_REPORT": str(report_path),
        }
        done = subprocess.run(
            [
                CONNTRACE_RUN,
                sys.executable,
                str(app),
                target.url,
                plain.url,
                through.url(USER, PASSWORD),
                str(ca_file),
                PASSWORD,
            ],
            env=environ,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        spans = receiver.wait_for_spans(
            lambda got: sum(span.name.startswith(A.SPAN_PROXY) for span in got) == 2, timeout=10
        )
        metrics = receiver.metrics()

    assert done.stdout == "refused: ProxyError\n"
    # The credentials went to the proxy: the program's requests are untouched.
    assert len(through.authorizations) >= 3
    assert through.connect_statuses == [200, 407]
    assert len(through.forwarded) == 2
    report = report_path.read_text()
    [proxied] = [h for h in json.loads(report)["hosts"] if h["server_port"] == target.port]
    assert (proxied["requests"], proxied["proxy_port"]) == (3, through.port)
    assert f"localhost:{target.port} via proxy 127.0.0.1:{through.port}" in done.stderr
    tunnels = [span for span in spans if span.name.startswith(A.SPAN_PROXY)]
    assert sorted(span.attributes[A.HTTP_RESPONSE_STATUS_CODE] for span in tunnels) == [200, 407]
    for text in (repr(spans), repr(metrics), done.stderr, done.stdout, report):
        assert_no_credentials(text)
