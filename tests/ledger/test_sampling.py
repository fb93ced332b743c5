"""The ledger does not depend on the sampler: the same program reports the same counts
under ``always_on``, ``traceidratio`` at 1% and ``always_off``, and they are the servers'
counts. The report says how it was made."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ..servers import LocalServer
from .running import Traced, traced
from .truth import InFlight, WSGIServer

SAMPLERS: list[tuple[str, str | None]] = [
    ("always_on", None),
    ("traceidratio", "0.01"),
    ("always_off", None),
]


def counts(host: dict[str, Any]) -> dict[str, Any]:
    """A host entry without its durations (``*_ms``, ``*_s``), which differ run to run."""
    return {key: value for key, value in host.items() if not key.endswith(("_ms", "_s"))}


def by_server(run: Traced) -> dict[tuple[str, int], dict[str, Any]]:
    return {(h["server_address"], h["server_port"]): counts(h) for h in run.report["hosts"]}


def test_the_same_counts_under_every_sampler(
    server: Callable[..., LocalServer], moto_server: Callable[..., WSGIServer], tmp_path: Path
):
    # Answers slow enough that opening a connection (DNS and TCP on 127.0.0.1) is never a
    # large share of a request's time: connection_setup_share, a rule on durations, stays
    # quiet in every run however loaded the machine, and the finding ids can be compared.
    dynamodb = moto_server(delay=0.005)
    web = server(respond=InFlight(delay=0.02))
    runs: dict[str, Traced] = {}
    truth: dict[str, dict[int, tuple[int, int]]] = {}
    for sampler, argument in SAMPLERS:
        before = (dynamodb.accepted, dynamodb.requests, len(web.connections), len(web.requests))
        env = {"OTEL_TRACES_SAMPLER": sampler}
        if argument is not None:
            env["OTEL_TRACES_SAMPLER_ARG"] = argument
        runs[sampler] = traced(
            "mixed.py",
            [dynamodb.url, web.url, f"ledger-{sampler}"],
            tmp_path / f"{sampler}.json",
            env=env,
        )
        truth[sampler] = {
            dynamodb.port: (dynamodb.accepted - before[0], dynamodb.requests - before[1]),
            web.port: (len(web.connections) - before[2], len(web.requests) - before[3]),
        }

    # CreateTable, 40 PutItem, 40 GetItem, 15 ListTables on 15 clients; 15 GETs.
    assert truth["always_on"] == {dynamodb.port: (16, 96), web.port: (6, 15)}
    reference = runs["always_on"]
    for sampler, _ in SAMPLERS[1:]:
        run = runs[sampler]
        assert run.report["totals"] == reference.report["totals"], sampler
        assert by_server(run) == by_server(reference), sampler
        assert run.finding_ids() == reference.finding_ids(), sampler
    for sampler, argument in SAMPLERS:
        run = runs[sampler]
        for port, (connections, requests) in truth[sampler].items():
            host = run.host(port)
            assert (sum(host["connections_opened"].values()), host["requests"]) == (
                connections,
                requests,
            ), f"{sampler}: 127.0.0.1:{port}"
        totals = run.report["totals"]
        assert totals["connections_opened"] == sum(c for c, _ in truth[sampler].values())
        assert totals["requests"] == sum(r for _, r in truth[sampler].values())
        made_with = run.report.get("made_with")
        assert isinstance(made_with, dict), f"no made_with in the report: {sorted(run.report)}"
        assert made_with.get("sampler") == sampler, made_with
        assert "sampler_arg" in made_with, made_with
        if argument is not None:
            assert float(made_with["sampler_arg"]) == float(argument), made_with
    assert "client_recreated" in reference.finding_ids()
    assert "connection_setup_share" not in reference.finding_ids()
