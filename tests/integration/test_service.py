"""What a running node or hub offers to standard tooling: gRPC health checking
and server reflection answered to the stock clients, Prometheus metrics,
clean logs, and a clean stop on SIGTERM.

All against a real federation of OS processes (``federation`` fixture); the
tests that disturb it restore it, and the one that stops processes runs last.
"""

from __future__ import annotations

import random
import re
import signal
import time
import tomllib
import urllib.request

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import NODES, Fed, eventually, person

SERVICES = ("yipanqi.v1.Federation", "yipanqi.v1.Admin", "grpc.health.v1.Health")


# -- helpers --------------------------------------------------------------------------

def metrics_port(fed: Fed, identity: str) -> int:
    doc = tomllib.loads(fed.fed.configs[identity].read_text())
    port = doc["hub" if identity.startswith("hub-") else "node"]["metrics_port"]
    assert isinstance(port, int)
    return port


def scrape(fed: Fed, identity: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a process's /metrics: (name, sorted labels) -> value."""
    url = f"http://127.0.0.1:{metrics_port(fed, identity)}/metrics"
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers.get_content_type() == "text/plain"
        text = resp.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def sample(samples: dict, name: str, **labels: str) -> float:
    """A sample's value; 0 for a labelled counter child that was never bumped."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


# -- health -----------------------------------------------------------------------

@pytest.mark.parametrize("identity", ["province-44", "hub-pearl", "hub-national"])
def test_standard_health_check_reports_serving(federation: Fed, identity: str) -> None:
    with federation.fed.channel(identity) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "yipanqi.v1.Federation", "yipanqi.v1.Admin"):
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, service
        with pytest.raises(grpc.RpcError) as info:
            stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=10)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_health_needs_a_federation_certificate(federation: Fed) -> None:
    """mTLS all the way: a client without a certificate never gets an answer."""
    from cli.config import load_any

    cfg = load_any(federation.fed.configs["province-44"])
    creds = grpc.ssl_channel_credentials(root_certificates=cfg.tls.ca.read_bytes())
    with grpc.secure_channel(cfg.listen, creds) as ch:
        with pytest.raises(grpc.RpcError) as info:
            health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert info.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


# -- reflection ---------------------------------------------------------------------

def _reflect(channel: grpc.Channel, *requests: reflection_pb2.ServerReflectionRequest) -> list:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    return list(stub.ServerReflectionInfo(iter(requests), timeout=10))


@pytest.mark.parametrize("identity", ["province-44", "hub-pearl"])
def test_server_reflection_lists_services_and_serves_descriptors(federation: Fed, identity: str) -> None:
    with federation.fed.channel(identity) as channel:
        (listing,) = _reflect(channel, reflection_pb2.ServerReflectionRequest(list_services=""))
        names = {s.name for s in listing.list_services_response.service}
        assert set(SERVICES) <= names, names

        replies = _reflect(channel,
                           reflection_pb2.ServerReflectionRequest(file_containing_symbol="yipanqi.v1.Admin"),
                           reflection_pb2.ServerReflectionRequest(file_containing_symbol="yipanqi.v1.Federation"))
        assert len(replies) == 2
        for reply, service in zip(replies, ("Admin", "Federation")):
            assert reply.WhichOneof("message_response") == "file_descriptor_response", reply
            files = [descriptor_pb2.FileDescriptorProto.FromString(b)
                     for b in reply.file_descriptor_response.file_descriptor_proto]
            assert files, f"no descriptor for yipanqi.v1.{service}"
            owner = [f for f in files if any(s.name == service for s in f.service)]
            assert owner and owner[0].package == "yipanqi.v1"
        admin = [descriptor_pb2.FileDescriptorProto.FromString(b)
                 for b in replies[0].file_descriptor_response.file_descriptor_proto]
        methods = {m.name for f in admin for s in f.service if s.name == "Admin" for m in s.method}
        assert {"Write", "Get", "List", "History", "Status", "Import", "Stats"} <= methods

        (missing,) = _reflect(channel, reflection_pb2.ServerReflectionRequest(file_containing_symbol="no.Such"))
        assert missing.WhichOneof("message_response") == "error_response"
        assert missing.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]


# -- metrics ----------------------------------------------------------------------

def test_metrics_count_writes_and_arrivals(federation: Fed, rng: random.Random) -> None:
    fed = federation
    fed.quiet()
    before44, before45 = scrape(fed, "province-44"), scrape(fed, "province-45")
    creates, updates = 6, 4
    ids = [fed.write("province-44", "create", person(rng, household="45", residence="44"))["person_id"]
           for _ in range(creates)]
    for pid in ids[:updates]:
        fed.write("province-44", "update", {"children": 3}, pid)
    last = fed.get("province-44", ids[0])
    fed.arrives("province-45", ids[0], last)
    fed.quiet()

    after44 = scrape(fed, "province-44")
    assert sample(after44, "yipanqi_local_writes_total", op="create") - \
        sample(before44, "yipanqi_local_writes_total", op="create") == creates
    assert sample(after44, "yipanqi_local_writes_total", op="update") - \
        sample(before44, "yipanqi_local_writes_total", op="update") == updates
    # 44 sent them all to its home hub; nothing waits in its outbox.
    assert sample(after44, "yipanqi_changes_out_total", peer="hub-pearl") - \
        sample(before44, "yipanqi_changes_out_total", peer="hub-pearl") == creates + updates
    assert sample(after44, "yipanqi_outbox_changes") == 0
    assert sample(after44, "yipanqi_hub_connected") == 1
    assert sample(after44, "yipanqi_records") == fed.status("province-44")["records"]

    def arrived() -> bool:
        now45 = scrape(fed, "province-45")
        return (sample(now45, "yipanqi_changes_in_total", peer="hub-pearl")
                - sample(before45, "yipanqi_changes_in_total", peer="hub-pearl")) == creates + updates

    eventually(arrived, 30, message="province-45's yipanqi_changes_in_total did not grow by the changes written")
    after45 = scrape(fed, "province-45")
    assert sample(after45, "yipanqi_local_writes_total", op="create") == \
        sample(before45, "yipanqi_local_writes_total", op="create")
    assert sample(after45, "yipanqi_records") == fed.status("province-45")["records"]
    assert ("yipanqi_lag_seconds", (("origin", "province-44"),)) in after45


def test_metrics_show_a_hub_queue_for_a_node_that_is_down(federation: Fed, rng: random.Random) -> None:
    fed = federation
    fed.quiet()
    base = scrape(fed, "hub-pearl")
    assert sample(base, "yipanqi_queue_changes", peer="province-45") == 0
    fed.stop("province-45")
    try:
        n = 7
        for _ in range(n):
            fed.write("province-44", "create", person(rng, household="44", residence="45"))

        def queued() -> dict:
            # (The counter is bumped just after the commit the gauge reads: wait for both.)
            samples = scrape(fed, "hub-pearl")
            arrived = sample(samples, "yipanqi_changes_in_total", peer="province-44") - \
                sample(base, "yipanqi_changes_in_total", peer="province-44")
            return samples if sample(samples, "yipanqi_queue_changes", peer="province-45") == n == arrived else {}

        samples = eventually(queued, 30, message=lambda: "hub-pearl yipanqi_queue_changes{peer=province-45}: "
                             f"{sample(scrape(fed, 'hub-pearl'), 'yipanqi_queue_changes', peer='province-45')}")
        assert sample(samples, "yipanqi_queue_oldest_seconds", peer="province-45") > 0
        # Records not routed to 45 are not queued for it; 44's own queue stays empty.
        assert sample(samples, "yipanqi_queue_changes", peer="province-44") == 0
    finally:
        fed.start("province-45")
    eventually(lambda: sample(scrape(fed, "hub-pearl"), "yipanqi_queue_changes", peer="province-45") == 0, 45,
               message="hub-pearl's queue for province-45 did not drain")
    fed.wait_linked()


# -- logs -------------------------------------------------------------------------

# gRPC's C core writes its own diagnostics straight to stderr in glog form ("I1129 08:36:04.989278
# 32193 ssl_transport_security.cc:2563] Handshake failed ..."), e.g. when a client without a
# certificate is turned away (test_health_needs_a_federation_certificate). Python's logging never
# sees them, so they cannot carry the identity; everything the process itself logs must.
GRPC_CORE_LINE = re.compile(r"[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ [\w.]+:\d+\] ")
PYTHON_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) \S+ \S+: ")


def test_every_log_line_names_its_process_and_no_key_material(federation: Fed) -> None:
    fed = federation
    checked = 0
    for identity in fed.fed.configs:
        path = fed.fed.log_path(identity)
        if not path.exists():
            continue
        text = path.read_text(errors="replace")
        lines = [line for line in text.splitlines() if line.strip()]
        for key in fed.fed.configs[identity].parent.glob("*.key"):  # its TLS and signing keys
            body = [k for k in key.read_text().splitlines() if k and not k.startswith("-----")]
            assert body and not any(k in text for k in body), f"{path} contains {key.name}"
        if identity in NODES:
            assert lines, f"{identity} wrote no log"
            assert any(" serving" in line for line in lines)
        for n, line in enumerate(lines, 1):
            assert "PRIVATE KEY" not in line, f"{path}:{n} leaks key material"
            if GRPC_CORE_LINE.match(line):
                continue
            # "<date> <time> <LEVEL> <identity> <logger>: <message>", one line per record.
            assert PYTHON_LINE.match(line) and line.split()[3] == identity, \
                f"{path}:{n} does not name {identity}: {line!r}"
            checked += 1
    assert checked > 0


# -- stopping (last: it leaves processes stopped) --------------------------------------------

@pytest.mark.parametrize("identity", ["province-44", "hub-pearl"])  # the hub still serves 45's streams
def test_sigterm_stops_cleanly_with_exit_code_0(federation: Fed, identity: str) -> None:
    fed = federation
    assert fed.fed.running(identity)
    fed.status(identity)  # it answers, and the operator channel is open while it stops
    proc = fed.fed.procs[identity]
    log = fed.fed.log_path(identity)
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=10)
    elapsed = time.monotonic() - start
    fed.kill(identity)  # forget it (already exited)
    assert code == 0, f"{identity} exited with {code}"
    assert elapsed < 10
    lines = log.read_text(errors="replace").splitlines()
    last_start = max(i for i, line in enumerate(lines) if line.endswith("yipanqi.serve: serving"))
    since = lines[last_start:]
    assert any(line.endswith("received SIGTERM, stopping") for line in since), since
    assert since[-1].endswith("yipanqi.serve: stopped"), since
    assert not any("Traceback" in line for line in log.read_text(errors="replace").splitlines())
