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
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import NODES, ROOT, Fed, eventually, person

SERVICES = ("yipanqi.v2.Federation", "yipanqi.v2.Admin", "grpc.health.v1.Health")


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
        for service in ("", "yipanqi.v2.Federation", "yipanqi.v2.Admin"):
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, service
        with pytest.raises(grpc.RpcError) as info:
            stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=10)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_health_needs_a_federation_certificate(federation: Fed) -> None:
    """mTLS all the way: a client without a certificate never gets an answer."""
    from runtime.config import load_any

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
                           reflection_pb2.ServerReflectionRequest(file_containing_symbol="yipanqi.v2.Admin"),
                           reflection_pb2.ServerReflectionRequest(file_containing_symbol="yipanqi.v2.Federation"))
        assert len(replies) == 2
        for reply, service in zip(replies, ("Admin", "Federation")):
            assert reply.WhichOneof("message_response") == "file_descriptor_response", reply
            files = [descriptor_pb2.FileDescriptorProto.FromString(b)
                     for b in reply.file_descriptor_response.file_descriptor_proto]
            assert files, f"no descriptor for yipanqi.v2.{service}"
            owner = [f for f in files if any(s.name == service for s in f.service)]
            assert owner and owner[0].package == "yipanqi.v2"
        admin = [descriptor_pb2.FileDescriptorProto.FromString(b)
                 for b in replies[0].file_descriptor_response.file_descriptor_proto]
        methods = {m.name for f in admin for s in f.service if s.name == "Admin" for m in s.method}
        assert {"Write", "Get", "List", "History", "Status", "Import", "Stats"} <= methods

        (missing,) = _reflect(channel, reflection_pb2.ServerReflectionRequest(file_containing_symbol="no.Such"))
        assert missing.WhichOneof("message_response") == "error_response"
        assert missing.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]


# A v1-only reflection client, as grpcurl, grpc-js or Postman are: the messages come from the
# upstream grpc/reflection/v1/reflection.proto (written out here, compiled with protoc into a
# descriptor pool of its own), not from anything yipanqi or grpcio-reflection ships.
REFLECTION_V1_PROTO = """
syntax = "proto3";
package grpc.reflection.v1;
service ServerReflection {
  rpc ServerReflectionInfo(stream ServerReflectionRequest) returns (stream ServerReflectionResponse);
}
message ServerReflectionRequest {
  string host = 1;
  oneof message_request {
    string file_by_filename = 3;
    string file_containing_symbol = 4;
    ExtensionRequest file_containing_extension = 5;
    string all_extension_numbers_of_type = 6;
    string list_services = 7;
  }
}
message ExtensionRequest { string containing_type = 1; int32 extension_number = 2; }
message ServerReflectionResponse {
  string valid_host = 1;
  ServerReflectionRequest original_request = 2;
  oneof message_response {
    FileDescriptorResponse file_descriptor_response = 4;
    ExtensionNumberResponse all_extension_numbers_response = 5;
    ListServiceResponse list_services_response = 6;
    ErrorResponse error_response = 7;
  }
}
message FileDescriptorResponse { repeated bytes file_descriptor_proto = 1; }
message ExtensionNumberResponse { string base_type_name = 1; repeated int32 extension_number = 2; }
message ListServiceResponse { repeated ServiceResponse service = 1; }
message ServiceResponse { string name = 1; }
message ErrorResponse { int32 error_code = 1; string error_message = 2; }
"""


def _v1_messages(tmp: Path) -> tuple[type, type]:
    from grpc_tools import protoc

    src = tmp / "grpc" / "reflection" / "v1"
    src.mkdir(parents=True)
    (src / "reflection.proto").write_text(REFLECTION_V1_PROTO)
    out = tmp / "v1.desc"
    assert protoc.main(["protoc", f"-I{tmp}", f"--descriptor_set_out={out}",
                        "grpc/reflection/v1/reflection.proto"]) == 0
    pool = descriptor_pool.DescriptorPool()
    for fd in descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file:
        pool.Add(fd)
    return (message_factory.GetMessageClass(pool.FindMessageTypeByName("grpc.reflection.v1.ServerReflectionRequest")),
            message_factory.GetMessageClass(pool.FindMessageTypeByName("grpc.reflection.v1.ServerReflectionResponse")))


@pytest.mark.parametrize("identity", ["province-44", "hub-national"])
def test_server_reflection_v1_answers_a_v1_client(federation: Fed, identity: str, tmp_path: Path) -> None:
    request, response = _v1_messages(tmp_path)
    with federation.fed.channel(identity) as channel:
        info = channel.stream_stream("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                                     request_serializer=request.SerializeToString,
                                     response_deserializer=response.FromString)
        listing, admin, itself, missing = list(info(iter([
            request(list_services=""),
            request(file_containing_symbol="yipanqi.v2.Admin"),
            request(file_containing_symbol="grpc.reflection.v1.ServerReflection"),
            request(file_containing_symbol="no.Such"),
        ]), timeout=10))
    names = {s.name for s in listing.list_services_response.service}
    assert set(SERVICES) | {"grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"} <= names
    files = [descriptor_pb2.FileDescriptorProto.FromString(b) for b in admin.file_descriptor_response.file_descriptor_proto]
    methods = {m.name for f in files for sv in f.service if sv.name == "Admin" for m in sv.method}
    assert {"Write", "Get", "List", "History", "Status"} <= methods, files
    (v1,) = [descriptor_pb2.FileDescriptorProto.FromString(b)
             for b in itself.file_descriptor_response.file_descriptor_proto]
    assert v1.package == "grpc.reflection.v1" and [sv.name for sv in v1.service] == ["ServerReflection"]
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


def test_metrics_cover_every_link_and_queue(federation: Fed) -> None:
    """Every link has a yipanqi_link_connected series (a node's to its hub, a regional hub's up to
    the national hub, every hub's to what it serves), a regional hub's upstream queue is a queue
    like the others (peer hub-national), and an empty queue's age is 0, not a missing series."""
    fed = federation
    fed.quiet()
    node = scrape(fed, "province-44")
    assert sample(node, "yipanqi_link_connected", link="hub", peer="hub-pearl") == 1
    assert sample(node, "yipanqi_link_fallback", link="hub") == 0
    assert ("yipanqi_outbox_oldest_seconds", ()) in node and sample(node, "yipanqi_outbox_oldest_seconds") == 0
    assert sample(node, "yipanqi_store_up") == 1

    pearl = scrape(fed, "hub-pearl")
    assert sample(pearl, "yipanqi_link_connected", link="upstream", peer="hub-national") == 1
    assert sample(pearl, "yipanqi_hub_connected") == 1
    for peer in ("province-44", "province-45"):
        assert sample(pearl, "yipanqi_link_connected", link="downstream", peer=peer) == 1
    for peer in ("province-44", "province-45", "hub-national"):  # all empty once quiet
        assert ("yipanqi_queue_changes", (("peer", peer),)) in pearl, peer
        assert ("yipanqi_queue_oldest_seconds", (("peer", peer),)) in pearl, peer
        assert sample(pearl, "yipanqi_queue_changes", peer=peer) == 0
        assert sample(pearl, "yipanqi_queue_oldest_seconds", peer=peer) == 0

    national = scrape(fed, "hub-national")
    for region in ("bohai", "yangtze", "pearl"):
        assert sample(national, "yipanqi_link_connected", link="downstream", peer=f"hub-{region}") == 1
        assert ("yipanqi_queue_oldest_seconds", (("peer", f"hub-{region}"),)) in national
    assert not any(k[0] == "yipanqi_link_connected" and ("link", "upstream") in k[1] for k in national)


DOCUMENTED = re.compile(r"`(yipanqi_\w+)(?:\{([^}]*)\})?`")
SUFFIXES = ("_total", "_bucket", "_count", "_sum", "_created")


def test_every_metric_and_label_is_documented(federation: Fed) -> None:
    text = (ROOT / "docs" / "operations.md").read_text()
    documented: dict[str, set[str]] = {}
    for name, labels in DOCUMENTED.findall(text):
        documented.setdefault(name, set()).update(x.strip() for x in labels.split(",") if x.strip())
    seen: dict[str, set[str]] = {}
    for identity in ("province-44", "hub-pearl", "hub-national"):
        for name, labels in scrape(federation, identity):
            if not name.startswith("yipanqi_"):
                continue
            stripped = next((name[: -len(x)] for x in SUFFIXES if name.endswith(x)), name)
            family = next((c for c in (name, stripped, stripped + "_total") if c in documented), name)
            seen.setdefault(family, set()).update(k for k, _ in labels if k != "le")
    missing = {name: sorted(labels - documented.get(name, set())) for name, labels in seen.items()
               if name not in documented or labels - documented[name]}
    assert not missing, f"docs/operations.md does not document these metrics or labels: {missing}"


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
