"""An in-memory federation: real replicas, a simulated network, an injected clock.

How this works. Every member (province node, regional hub, national hub) is a
real ``runtime.replica.Replica`` over a real ``Store`` on SQLite in a temp dir,
trusting the test PKI (tests/support/pki.py); province nodes write with
``Store.write_local`` and their real signing keys. What gRPC would carry is
carried by ``Flow``s, one per stream the processes open:

  * node -> regional hub Push and regional hub -> national hub Push, reading
    what runtime.link reads (``outbox_page``; ``read_log(not_via=upstream)``);
  * regional hub -> node Pull and national hub -> regional hub Pull, reading
    what hub.federation reads (``read_log`` with ``Topology.subscription``).

Each session of a flow pairs a ``core.session.Sender`` on the sending member
with a ``core.session.Receiver`` on the other, exactly as runtime.link and
hub.federation use them; batches are built by ``runtime.wire.batch``, travel as
serialised protobuf bytes, and are checked and stored by
``Replica.ingest_batch`` (signature verification, intake, the store). A session
starts at the durable acknowledged cursor, as the real ones do.

The network runs on a virtual clock (``Net``): each message is delivered after
a random delay, in order within its stream (HTTP/2 keeps a stream's order).
Faults: a stream breaks (what was on the wire is lost, except that a prefix of
it may still be processed late, after the next session's messages, as an old
servicer thread finishing its work would); a partition cuts two members apart
until it heals (streams break, reconnects wait); a member crashes (its streams
break, the acks its store noted but had not yet written are lost, and it starts
again on its database file); reconnects back off. So a
receiver sees batches twice (resent after a break), out of session order (a
late old batch), and a sender sees acks it must ignore (their stream is gone).

What is not here: gRPC, TLS and certificate checks on the transport, the
link's fallback hubs and backoff timing, the regional hub's fair share of its
upstream stream, reports, and the stores' own clocks (they stamp real time;
only the network runs on the virtual clock).
"""

from __future__ import annotations

import heapq
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from core.routing import NATIONAL, Filter, Topology
from core.session import Receiver, Sender
from runtime import wire
from runtime.replica import Replica, now_ms
from store.changelog import LogEntry
from store.store import Store
from tests.support.pki import PKI
from yipanqi.v2 import federation_pb2 as pb

WINDOW = 4
BATCH = 3  # small batches, so a few dozen writes make many batches and acks
MAX_IN_FLIGHT = 4 * 1024  # a hub's byte window, scaled down like the batches


class Net:
    """Events on a virtual clock (ms), run in time order."""

    def __init__(self, rng: random.Random, max_delay: int = 50) -> None:
        self.rng = rng
        self.now = 0
        self.max_delay = max_delay
        self._events: list[tuple[int, int, Callable[[], None]]] = []
        self._seq = 0
        self._cut: dict[frozenset[str], int] = {}  # pair of members -> partitioned until (ms)

    def at(self, when: int, fn: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self._events, (max(when, self.now), self._seq, fn))

    def delay(self) -> int:
        return self.rng.randint(1, self.max_delay)

    def partition(self, a: str, b: str, until: int) -> None:
        self._cut[frozenset((a, b))] = max(until, self._cut.get(frozenset((a, b)), 0))

    def cut_until(self, a: str, b: str) -> int:
        """When ``a`` and ``b`` can reach each other again (now or earlier: they can)."""
        return self._cut.get(frozenset((a, b)), 0)

    def heal(self) -> None:
        self._cut.clear()

    def run_until(self, t: int) -> None:
        while self._events and self._events[0][0] <= t:
            when, _, fn = heapq.heappop(self._events)
            self.now = when
            fn()
        self.now = max(self.now, t)

    def run_all(self, limit: int = 200_000) -> None:
        """Run until nothing is scheduled."""
        for _ in range(limit):
            if not self._events:
                return
            when, _, fn = heapq.heappop(self._events)
            self.now = when
            fn()
        raise AssertionError("the network never went quiet")

    @property
    def pending(self) -> int:
        return len(self._events)


@dataclass
class Member:
    identity: str
    store: Store
    replica: Replica
    province: str | None = None  # a province node's code
    hold_records: bool = True
    index_routes: bool = False
    path: Path | None = None
    up: bool = True  # False between a crash and its restart
    life: int = 0  # how many times its process started

    def log(self) -> list[LogEntry]:
        entries, _ = self.store.read_log(0, limit=1_000_000)
        return entries

    def held(self) -> set[tuple[str, int]]:
        """(origin, seq) of every change in this member's log."""
        return {(e.origin, e.seq) for e in self.log()}


@dataclass
class Session:
    epoch: int
    sender: Sender
    receiver: Receiver
    sent_keys: set[str] = field(default_factory=set)
    out: int = 0  # batches put on the wire
    arrived: int = 0  # of those, how many reached the receiver while the stream was up
    acks_out: int = 0  # acks put on the wire
    late_batches: int = -1  # once broken: batches with an index below this are still processed
    due: dict[str, int] = field(default_factory=dict)  # "batch"/"ack" -> when the last one sent arrives
    dst_life: int = 0  # the receiving process's life this session was opened with
    dead: bool = False


@dataclass
class Flow:
    """One stream between two members, re-opened after every break."""

    name: str
    src: Member
    dst: Member
    read: Callable[[int, int], tuple[list[LogEntry], int]]
    start: Callable[[], int]  # the durable acknowledged cursor a new session starts at
    note_ack: Callable[[int], None]  # the sender persists an ack
    via: str
    may_forward: bool
    for_province: str | None
    cursor_name: str
    max_bytes: int | None = None
    session: Session | None = None
    epochs: int = 0
    acked_checks: list[Callable[[int], None]] = field(default_factory=list)


class Federation:
    """Province nodes, their regional hubs and the national hub, joined by flows over ``Net``."""

    def __init__(self, pki: PKI, root: Path, regions: dict[str, frozenset[str]], rng: random.Random,
                 templates: dict[str, Path] | None = None) -> None:
        self.pki = pki
        self.root = root
        self.rng = rng
        self.net = Net(rng)
        self.topology = Topology.of(regions)
        self.templates = templates if templates is not None else {}
        self.members: dict[str, Member] = {}
        self.flows: list[Flow] = []
        self.late = 0  # batches processed after their session ended
        self.breaks = 0
        self.crashes = 0
        self.duplicates = 0  # changes received again (resent after a break, or a late batch)
        national = self._member(f"hub-{NATIONAL}", hold_records=True, index_routes=True)
        for region, provinces in self.topology.regions.items():
            hub = self._member(f"hub-{region}", hold_records=False, index_routes=True)
            self._push(hub, national, lambda after, limit, hub=hub: hub.store.read_log(
                after, not_via=national.identity, limit=limit))
            self._pull(national, hub, self.topology.subscription(NATIONAL, hub.identity), None)
            for p in sorted(provinces):
                node = self._member(f"province-{p}", province=p)
                self._push(node, hub, lambda after, limit, node=node: node.store.outbox_page(after, limit),
                           by_seq=True)
                self._pull(hub, node, self.topology.subscription(region, node.identity), p)
        for flow in self.flows:
            self._connect(flow)

    # -- building ------------------------------------------------------------------
    def _member(self, identity: str, *, province: str | None = None, hold_records: bool = True,
                index_routes: bool = False) -> Member:
        path = self.root / f"{identity}.db"
        template = self.templates.get(identity)
        if template is None:  # migrating a store takes ~0.4 s: do it once per identity, then copy the file
            template = self.root.parent / f"template-{identity}.db"
            if not template.exists():
                Store.open(f"sqlite:///{template}", owner=identity).close()
            self.templates[identity] = template
        shutil.copy(template, path)
        member = Member(identity, *self._start(identity, path, hold_records, index_routes), province=province,
                        hold_records=hold_records, index_routes=index_routes, path=path)
        self.members[identity] = member
        return member

    def _start(self, identity: str, path: Path, hold_records: bool, index_routes: bool) -> tuple[Store, Replica]:
        store = Store.open(f"sqlite:///{path}", owner=identity, hold_records=hold_records, index_routes=index_routes)
        return store, Replica(identity, store, self.pki.keyring())

    def _restart(self, member: Member) -> None:
        assert member.path is not None
        member.store, member.replica = self._start(member.identity, member.path, member.hold_records,
                                                   member.index_routes)
        member.up = True
        member.life += 1

    def crash(self, identity: str, down: int) -> None:
        """``identity``'s process dies: its streams break, the acks it noted but had not yet written
        are lost (runtime.acks batches them), and after ``down`` ms it starts again on its file."""
        member = self.members[identity]
        if not member.up:
            return
        member.up = False
        book = member.replica.acks
        with book._lock:  # what a SIGKILL loses; Replica.close() would have written them
            book._noted.clear()
        book._closed.set()  # its flush thread stops without writing
        member.store.close()
        self.crashes += 1
        for flow in self.flows:
            if member in (flow.src, flow.dst):
                self.break_flow(flow, reconnect_after=down + self.net.delay())
        self.net.at(self.net.now + down, lambda: self._restart(member))

    def _push(self, src: Member, dst: Member, read: Callable[[int, int], tuple[list[LogEntry], int]],
              by_seq: bool = False) -> None:
        flow = Flow(f"push {src.identity}->{dst.identity}", src, dst, read,
                    start=lambda: src.replica.acks.cursor("push"),
                    note_ack=lambda c: src.replica.acks.note("push", c, 0),
                    via=src.identity, may_forward=src.identity.startswith("hub-"), for_province=None,
                    cursor_name=f"in:{src.identity}")
        # Nothing acknowledged is lost: what the ack covers is in the receiver's log already.
        flow.acked_checks.append(lambda c: _covered(src, dst, read, c, by_seq))
        self.flows.append(flow)

    def _pull(self, src: Member, dst: Member, flt: Filter | None, province: str | None) -> None:
        assert flt is not None
        name = f"pull:{src.identity}"
        read = lambda after, limit: src.store.read_log(after, flt=flt, limit=limit)  # noqa: E731
        flow = Flow(f"pull {src.identity}->{dst.identity}", src, dst, read,
                    start=lambda: dst.store.cursor(name),  # the subscriber's durable cursor (Subscribe)
                    note_ack=lambda c: src.replica.acks.note(f"out:{dst.identity}", c, 0),
                    via=src.identity, may_forward=True, for_province=province, cursor_name=name,
                    max_bytes=MAX_IN_FLIGHT)
        flow.acked_checks.append(lambda c: _covered(src, dst, read, c, False))
        self.flows.append(flow)

    # -- sessions ------------------------------------------------------------------
    def _connect(self, flow: Flow) -> None:
        until = self.net.cut_until(flow.src.identity, flow.dst.identity)
        if until > self.net.now:  # partitioned: try again once it heals
            self.net.at(until + self.net.delay(), lambda: self._connect(flow))
            return
        if not (flow.src.up and flow.dst.up):  # a process is down: try again later
            self.net.at(self.net.now + self.net.delay() * 4, lambda: self._connect(flow))
            return
        flow.epochs += 1
        start = flow.start()
        flow.session = Session(flow.epochs, Sender(start, WINDOW, max_bytes=flow.max_bytes),
                               Receiver(start, WINDOW), dst_life=flow.dst.life)
        self._pump(flow)

    def break_flow(self, flow: Flow, reconnect_after: int | None = None, *, late_all: bool = False) -> None:
        """The stream breaks: a prefix of what is on the wire may still be processed (all of it with
        ``late_all``), the rest is lost."""
        s = flow.session
        if s is None or s.dead:
            return
        self.breaks += 1
        s.dead = True
        s.late_batches = s.out if late_all else self.rng.randint(s.arrived, s.out)  # a prefix of the wire
        flow.session = None
        self.net.at(self.net.now + (reconnect_after if reconnect_after is not None else self.net.delay() * 4),
                    lambda: self._connect(flow))

    def partition(self, a: str, b: str, duration: int) -> None:
        self.net.partition(a, b, self.net.now + duration)
        for flow in self.flows:
            if {flow.src.identity, flow.dst.identity} == {a, b}:
                self.break_flow(flow)

    def _pump(self, flow: Flow) -> None:
        """The sender sends what its window allows (hub.federation Pull / runtime.link Push)."""
        s = flow.session
        if s is None:
            return
        sender = s.sender
        while sender.has_room():
            entries, pos = flow.read(sender.position, BATCH)
            fits = wire.cut(entries, sender.budget(wire.BATCH_BYTES))
            if fits < len(entries):  # big changes: read fewer (positions are the source's own)
                entries, pos = flow.read(sender.position, fits)
            if not entries:
                if pos > sender.position and sender.skip(pos):
                    self._acked(flow, pos)  # nothing in flight: the peer is owed nothing up to here
                return
            sender.send(pos, sum(len(e.body) for e in entries))
            batch = wire.batch(pos, entries, flow.src.replica.certificates_for(entries, s.sent_keys))
            index, data = s.out, batch.SerializeToString()
            s.out += 1
            self._send(s, "batch", lambda i=index, d=data: self._deliver(flow, s, i, d))  # type: ignore[misc]

    def _send(self, s: Session, way: str, fn: Callable[[], None]) -> None:
        """Deliver after a random delay, but never before what went ahead on the same stream."""
        due = max(self.net.now + self.net.delay(), s.due.get(way, 0))
        s.due[way] = due
        self.net.at(due, fn)

    def _deliver(self, flow: Flow, s: Session, index: int, data: bytes) -> None:
        if s.dead and index >= s.late_batches:
            return  # lost with its stream
        if not flow.dst.up or flow.dst.life != s.dst_life:
            return  # the process it was sent to has died since
        if not s.dead:
            s.arrived += 1
        batch = pb.Batch.FromString(data)
        if not s.receiver.takes(batch.caught_up):
            return
        result = flow.dst.replica.ingest_batch(batch, via=flow.via, peer_may_forward=flow.may_forward,
                                               for_province=flow.for_province, cursor_name=flow.cursor_name)
        assert not result.quarantined, f"{flow.name}: an honest change was quarantined"
        self.duplicates += result.duplicates
        cursor = s.receiver.stored(batch.cursor)
        if s.dead:
            self.late += 1  # processed by the old stream's servicer: its ack has nowhere to go
        else:
            self._send(s, "ack", lambda: self._ack(flow, s, cursor))
        self._changed(flow.dst)

    def _ack(self, flow: Flow, s: Session, cursor: int) -> None:
        if s.dead:
            return  # the stream it was sent on is gone
        acked = s.sender.ack(cursor)
        assert acked is not None, f"{flow.name}: an in-order ack released nothing"
        self._acked(flow, acked)
        self._pump(flow)

    def _acked(self, flow: Flow, cursor: int) -> None:
        """The sender's acknowledged cursor moves to ``cursor``: check nothing it covers is missing, persist it."""
        for check in flow.acked_checks:
            check(cursor)
        flow.note_ack(cursor)

    def _changed(self, member: Member) -> None:
        """``member``'s log grew: its outgoing flows may have more to send."""
        for flow in self.flows:
            if flow.src is member:
                self._pump(flow)

    # -- what tests do -------------------------------------------------------------
    def write(self, province: str, kind: str, record_id: str, edit) -> None:  # type: ignore[no-untyped-def]
        node = self.members[f"province-{province}"]
        node.store.write_local(kind, record_id, edit, operator=None, now_ms=now_ms(),  # stores stamp real time
                               seal=self.pki.sealer(node.identity))
        self._changed(node)

    def heal(self) -> None:
        """End every partition and let every flow run until the network is quiet."""
        self.net.heal()
        self.net.run_all()
        for flow in self.flows:  # nothing left scheduled: every flow has a live session again
            assert flow.session is not None and not flow.session.dead, flow.name

    def close(self) -> None:
        for m in self.members.values():
            m.store.close()


def _covered(src: Member, dst: Member, read: Callable[[int, int], tuple[list[LogEntry], int]], acked: int,
             by_seq: bool) -> None:
    """Everything ``src`` sends ``dst`` up to ``acked`` is in ``dst``'s log. Positions are a node's own
    seqs on its push (runtime.link reads its outbox), lsns of the sender's log elsewhere."""
    entries, _ = read(0, 1_000_000)
    owed = {(e.origin, e.seq) for e in entries if (e.seq if by_seq else e.lsn) <= acked}
    missing = owed - dst.held()
    assert not missing, f"{dst.identity} acknowledged {acked} to {src.identity} but lacks {sorted(missing)[:5]}"
