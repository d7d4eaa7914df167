"""The node's link keeps its push window with core.session, over real mTLS gRPC: a hub that
acknowledges a cursor it was never sent moves nothing (a hostile hub cannot make a node skip
its own changes), and the honest ack that follows moves the durable cursor to the batch's."""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from certs.revocation import RevocationList
from core.samples import sample_person
from runtime import wire
from runtime.config import HubAddress, TLSPaths
from runtime.link import Link
from runtime.replica import Replica
from runtime.transport import server_credentials
from store.store import Store
from tests.support.pki import PKI, build_pki
from yipanqi.v2 import federation_pb2 as pb
from yipanqi.v2 import federation_pb2_grpc as pb_grpc

BOGUS = 1_000_000


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return build_pki(tmp_path_factory.mktemp("pki"))


class StrayAcks(pb_grpc.FederationServicer):
    """hub-pearl, acknowledging every pushed batch twice: first a cursor far beyond it, then its own."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.stop = threading.Event()
        self.go = threading.Event()

    def Push(self, request_iterator, context) -> Iterator[pb.PushResponse]:  # type: ignore[no-untyped-def]
        for req in request_iterator:
            if req.WhichOneof("msg") == "hello":
                yield pb.PushResponse(hello=wire.hello("hub-pearl"))
            elif req.WhichOneof("msg") == "batch":
                self.batches.append(req.batch.cursor)
                yield pb.PushResponse(ack=pb.Ack(cursor=req.batch.cursor + BOGUS, accepted=99))
                self.go.wait(15)  # the test has seen what the stray ack did
                yield pb.PushResponse(ack=pb.Ack(cursor=req.batch.cursor, accepted=len(req.batch.changes)))

    def Pull(self, request_iterator, context) -> Iterator[pb.PullResponse]:  # type: ignore[no-untyped-def]
        next(request_iterator, None)
        yield pb.PullResponse(hello=wire.hello("hub-pearl"))
        while context.is_active() and not self.stop.is_set():
            self.stop.wait(0.1)


@pytest.fixture
def hub(pki: PKI) -> Iterator[tuple[str, StrayAcks]]:
    servicer = StrayAcks()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_FederationServicer_to_server(servicer, server)
    paths = pki.issued["hub-pearl"]
    port = server.add_secure_port("127.0.0.1:0", server_credentials(paths.ca_cert, paths.tls_cert, paths.tls_key))
    server.start()
    yield f"127.0.0.1:{port}", servicer
    servicer.stop.set()
    servicer.go.set()
    server.stop(None)


def _wait(condition, seconds: float = 15.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_a_stray_ack_moves_nothing_and_the_honest_one_moves_the_cursor(pki: PKI, hub: tuple[str, StrayAcks],
                                                                       tmp_path: Path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    address, servicer = hub
    store = Store.open(f"sqlite:///{tmp_path / 'n44.db'}", owner="province-44")
    rng = random.Random(3)
    for _ in range(3):
        person = sample_person(rng, household="44", residence="11", today=dt.date.today())
        store.write_local("person", str(uuid.uuid4()), lambda cur, p=person: ("create", p), operator=None,
                          now_ms=1, seal=pki.sealer("province-44"))
    node = pki.issued["province-44"]
    stop = threading.Event()
    link = Link(Replica("province-44", store, pki.keyring(), RevocationList(None)), [HubAddress("pearl", address)],
                TLSPaths(node.ca_cert, node.tls_cert, node.tls_key), source=store.outbox_page, push_cursor="push",
                for_province="44", stop=stop)
    try:
        with caplog.at_level("WARNING", logger="yipanqi.link"):
            link.start()
            assert _wait(lambda: servicer.batches), "the node never pushed"
            sent = servicer.batches[0]
            assert sent == 3
            assert _wait(lambda: f"acknowledged cursor {sent + BOGUS}, which is not in flight" in caplog.text)
            assert store.cursor("push") == 0 and link.state.pushed == 0
            servicer.go.set()  # now the honest ack
            assert _wait(lambda: store.cursor("push") == sent)
        assert link.state.pushed == 3  # the honest ack's count, not the stray one's
        assert servicer.batches == [sent]  # one batch, sent once
    finally:
        stop.set()
        link.join(timeout=10)
        store.close()
