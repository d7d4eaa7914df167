"""`yipanqi demo`: a whole local federation, sample migrants, moves, a conflict, live status."""

from __future__ import annotations

import datetime as dt
import json
import random
import shutil
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import click
import grpc
from rich.console import Console
from rich.live import Live
from rich.table import Table

from cli.federation import parse_provinces
from cli.output import plain, text
from core.identity import Identity
from core.provinces import DEFAULT_REGIONS, province_name
from core.samples import sample_person
from yipanqi.v2 import admin_pb2 as pb
from yipanqi.v2 import admin_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from tests.support.launcher import Federation

console = Console()
REGION_OF = {p: r for r, ps in DEFAULT_REGIONS.items() for p in ps}


class Demo:
    def __init__(self, fed: Federation) -> None:
        self.fed = fed
        self.stubs = {i: pb_grpc.AdminStub(fed.channel(i)) for i in fed.configs}

    def write(self, province: str, op: str, fields: dict, record_id: str = "") -> dict:
        reply = self.stubs[str(Identity.for_province(province))].Write(
            pb.WriteRequest(kind="person", op=op, record_id=record_id, fields_json=json.dumps(fields)), timeout=30)
        return json.loads(reply.json)

    def write_kind(self, province: str, kind: str, op: str, fields: dict, record_id: str = "") -> dict:
        reply = self.stubs[str(Identity.for_province(province))].Write(
            pb.WriteRequest(kind=kind, op=op, record_id=record_id, fields_json=json.dumps(fields, ensure_ascii=False)),
            timeout=30)
        return json.loads(reply.json)

    def get(self, identity: str, record_id: str) -> dict | None:
        try:
            return json.loads(self.stubs[identity].Get(pb.RecordRef(kind="person", record_id=record_id), timeout=10).json)
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise

    def status(self, identity: str) -> dict | None:
        try:
            return json.loads(self.stubs[identity].Status(pb.Empty(), timeout=5).json)
        except grpc.RpcError:
            return None


def _table(demo: Demo, provinces: list[str], started: float) -> Table:
    t = Table(title=f"yipanqi demo federation: {len(provinces)} nodes, live for {time.time() - started:.0f}s "
              "(Ctrl-C to stop)")
    for col in ("province", "hub", "records", "written", "acked", "backlog", "conflicts", "quarantined"):
        t.add_column(col)
    for code in provinces:
        s = demo.status(str(Identity.for_province(code)))
        if s is None:
            t.add_row(f"{code} {_short(code)}", "[red]down[/]", *["-"] * 6)
            continue
        hub = s["hub"]
        # What the nodes report is data: escaped Text, never markup (cli.output).
        link = (text(hub["hub"], style="green") + text(" (fallback)" if hub["fallback"] else "")
                if hub["connected"] else text("down", style="red"))
        t.add_row(f"{code} {_short(code)}", link, text(s["records"]), text(s["last_seq"]), text(s["acked_seq"]),
                  text(s["outbox"]["changes"]), text(s["conflicts"]), text(s["quarantined"]))
    national = demo.status("hub-national")
    if national:
        t.caption = text(f"national database: {national.get('records', 0)} cross-province records, "
                         f"{national.get('conflicts', 0)} open conflicts, log at {national['log_lsn']}")
    return t


def _launcher() -> type[Federation]:
    """The demo starts its processes with the test launcher, tests/support/launcher.py.

    An installed wheel has no tests/, so the demo runs from a checkout: the one this package was
    installed from in editable mode (``./scripts/bootstrap``), found beside cli/.
    """
    try:
        from tests.support.launcher import Federation
    except ModuleNotFoundError as err:
        if err.name not in ("tests", "tests.support", "tests.support.launcher"):
            raise
        checkout = Path(__file__).resolve().parents[1]
        if not (checkout / "tests" / "support" / "launcher.py").is_file():
            raise click.ClickException("yipanqi demo runs from a checkout of the repository (it starts its "
                                       "processes with tests/support/launcher.py): run ./scripts/demo there") from None
        sys.path.insert(0, str(checkout))
        from tests.support.launcher import Federation
    return Federation


@click.command("demo")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=Path("demo"),
              show_default=True, help="Work directory (recreated on every run).")
@click.option("--provinces", help="Comma-separated province codes (default: the whole country).")
@click.option("--people", type=click.IntRange(1, 100_000), default=300, show_default=True)
@click.option("--duration", type=float, help="Stop after this many seconds instead of waiting for Ctrl-C.")
@click.option("--seed", type=int, default=2010, show_default=True)
def demo(directory: Path, provinces: str | None, people: int, duration: float | None, seed: int) -> None:
    """Run a local federation (each hub and node its own process) and show it syncing."""
    Federation = _launcher()
    codes = parse_provinces(provinces)
    if len({REGION_OF[c] for c in codes}) < 2:
        raise click.BadParameter("pick provinces from at least two regions", param_hint="--provinces")
    rng = random.Random(seed)
    today = dt.date.today()
    if directory.exists():
        shutil.rmtree(directory)
    with console.status("creating the federation CA, certificates and configs"):
        fed = Federation.create(directory, codes, timing=None)  # production's timing, as a user runs it
    try:
        with console.status(f"starting {len(fed.configs)} processes (5 hubs at most, {len(codes)} nodes)"):
            fed.start_all()
        console.print(f"[green]federation up[/]: logs in {directory / 'logs'}")
        d = Demo(fed)
        ids = _load(d, codes, people, rng, today)
        _moves(d, codes, ids, rng, today)
        try:
            _certificates_and_services(d, directory, ids, rng, today)
        except grpc.RpcError as err:  # the story goes on without it
            console.print(f"[red]certificates and services: {err.code().name}: {err.details()}[/]")
        _conflict(d, fed, codes, rng, today)
        _requests(d, ids, rng)
        started = time.time()
        with Live(_table(d, codes, started), console=console, refresh_per_second=1) as live:
            while duration is None or time.time() - started < duration:
                time.sleep(1)
                live.update(_table(d, codes, started))
    except KeyboardInterrupt:
        pass
    finally:
        try:
            if fed.running("hub-national"):
                _assessment(fed)
        except (grpc.RpcError, KeyboardInterrupt) as err:
            console.print(f"[yellow]no assessment table[/]: {err}")
        with console.status("stopping every process"):
            fed.stop_all()
    console.print("stopped; the stores stay in", directory)


def _load(d: Demo, codes: list[str], n: int, rng: random.Random, today: dt.date) -> list[tuple[str, str]]:
    """Sample migrants, each registered by the province they now live in."""
    jobs = []
    for _ in range(n):
        household = rng.choice(codes)
        residence = household if rng.random() < 0.2 else rng.choice(codes)
        jobs.append((residence, sample_person(rng, household=household, residence=residence, today=today)))
    with console.status(f"registering {n} sample migrants at their residence provinces"):
        # One writer per node at a time: a node serves at most 4 Write calls per identity at once
        # (fair share, issue 11), and the demo writes every province as the same operator.
        by_node: dict[str, list[int]] = {}
        for i, (code, _) in enumerate(jobs):
            by_node.setdefault(code, []).append(i)
        ids: list[tuple[str, str]] = [("", "")] * len(jobs)

        def register(indices: list[int]) -> None:
            for i in indices:
                code, fields = jobs[i]
                ids[i] = (code, d.write(code, "create", fields)["person_id"])

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(register, by_node.values()))
    console.print(f"registered {n} migrants ({sum(1 for j in jobs if j[1]['household_province'] != j[0])} cross-province)")
    return ids


def _moves(d: Demo, codes: list[str], ids: list[tuple[str, str]], rng: random.Random, today: dt.date) -> None:
    for residence, pid in rng.sample(ids, min(3, len(ids))):
        targets = [c for c in codes if REGION_OF[c] != REGION_OF[residence]]
        target = rng.choice(targets)
        d.write(residence, "update", {"residence_province": target, "residence_city": None,
                                      "moved_in_on": today.isoformat()}, pid)
        for _ in range(100):
            if d.get(str(Identity.for_province(target)), pid):
                break
            time.sleep(0.1)
        console.print(f"moved {pid[:8]} from {province_name(residence)} to {province_name(target)}: "
                      f"{'delivered' if d.get(str(Identity.for_province(target)), pid) else 'on its way'} to the new province")


def _wait(check: Callable[[], object], tries: int = 100) -> bool:
    for _ in range(tries):
        try:
            if check():
                return True
        except grpc.RpcError:
            pass
        time.sleep(0.1)
    return False


def _certificates_and_services(d: Demo, directory: Path, ids: list[tuple[str, str]], rng: random.Random,
                               today: dt.date) -> None:
    """The household province issues 婚育证明; the residence province checks them and records services."""
    from cli.certificate import write_private
    from core.service import TYPE_NAMES

    out = directory / "certificates"
    out.mkdir(parents=True, exist_ok=True)
    shown = 0
    for registered, pid in rng.sample(ids, len(ids)):
        if shown == 3:
            break
        record = d.get(str(Identity.for_province(registered)), pid)
        if not record or record["household_province"] == record["residence_province"]:
            continue
        household, residence = record["household_province"], record["residence_province"]
        if not _wait(lambda: d.get(str(Identity.for_province(household)), pid) and d.get(str(Identity.for_province(residence)), pid)):
            continue  # a move still on its way
        shown += 1
        home, here = d.stubs[str(Identity.for_province(household))], d.stubs[str(Identity.for_province(residence))]
        issued = home.IssueCertificate(pb.IssueCertificateRequest(person_id=pid, valid_years=3), timeout=30)
        path = out / f"{issued.cert_no}.json"
        write_private(path, bytes(issued.document))
        kinds = rng.sample(["pregnancy_check", "contraceptive_service", "reproductive_health"], 2)
        for i, kind in enumerate(kinds):
            here.AddService(pb.AddServiceRequest(person_id=pid, type=kind, on=(today - dt.timedelta(days=30 - i * 10))
                                                 .isoformat(), result="正常"), timeout=30)
        # The residence province checks the certificate against its replica once the record has arrived.
        check: dict = {}

        def checked() -> bool:
            check.update(json.loads(here.CheckCertificate(pb.CheckCertificateRequest(document=issued.document),
                                                          timeout=30).json))
            return check.get("status") == "issued"

        _wait(checked)
        seen = _wait(lambda: len(json.loads(home.ListServices(pb.RecordRef(kind="service", record_id=pid),
                                                               timeout=10).json)) >= 3)
        console.print(f"{province_name(household)} issued 婚育证明 {issued.cert_no[:8]} to {pid[:8]}; "
                      f"{province_name(residence)} checked it ({check.get('status', check.get('refused'))}) and "
                      f"recorded {', '.join(TYPE_NAMES[k] for k in kinds)}; the household province "
                      f"{'sees' if seen else 'is about to see'} all three services")
        if shown == 1:
            try:
                from cli import certpage

                page = out / f"{issued.cert_no}.png"
                write_private(page, certpage.render(bytes(issued.document), "png"))
                console.print(f"  printable page with its QR code: {page}")
            except certpage.NoFont as err:
                console.print(f"  (no page rendered: {err})")
            console.print(f"  try: yipanqi certificate verify {path} --ca {directory / 'ca' / 'ca.crt'}")


def _conflict(d: Demo, fed: Federation, codes: list[str], rng: random.Random, today: dt.date) -> None:
    """Two provinces edit one field while one region's hub is frozen (SIGSTOP): a real concurrent edit."""
    a = codes[0]
    others = [c for c in codes if REGION_OF[c] != REGION_OF[a]]
    b = rng.choice(others)
    pid = d.write(b, "create", sample_person(rng, household=a, residence=b, today=today))["person_id"]
    for _ in range(100):
        if d.get(str(Identity.for_province(a)), pid):
            break
        time.sleep(0.1)
    hub = fed.procs[str(Identity.for_hub(REGION_OF[a]))]
    hub.send_signal(signal.SIGSTOP)
    try:
        d.write(a, "update", {"contraception": "IUD (recorded at household province)"}, pid)
        d.write(b, "update", {"contraception": "implant (recorded at residence province)"}, pid)
    finally:
        hub.send_signal(signal.SIGCONT)
    for _ in range(100):
        ra, rb = d.get(str(Identity.for_province(a)), pid), d.get(str(Identity.for_province(b)), pid)
        if ra and rb and ra["_meta"]["conflicts"] and ra == rb:
            break
        time.sleep(0.1)
    console.print(f"concurrent edit of {pid[:8]} at {province_name(a)} and {province_name(b)}: "
                  f"open conflict on {', '.join(ra['_meta']['conflicts']) or 'nothing'}; "  # type: ignore[index]  # held by now
                  f"both provinces show {plain(repr(ra['contraception']))}", markup=False)  # type: ignore[index]  # as above


def _short(code: str) -> str:
    return province_name(code).rsplit(" ", 1)[-1]


def _requests(d: Demo, ids: list[tuple[str, str]], rng: random.Random) -> None:
    """A few requests (协查): residence provinces ask household provinces about migrants, and household
    provinces ask residence provinces to follow one up; most are answered, one stays open."""
    cross = []
    for residence, pid in ids:
        record = d.get(str(Identity.for_province(residence)), pid)
        if record and record.get("residence_province") == residence and record.get("household_province") != residence:
            cross.append((residence, record["household_province"], pid))
        if len(cross) >= 4:
            break
    for i, (residence, household, pid) in enumerate(cross):
        # Even: the residence province asks the household province; odd: the other way round.
        sender, receiver = (household, residence) if i % 2 else (residence, household)
        subject, reply = ("请协助随访", "已随访") if i % 2 else ("核实婚姻状况", "已核实：已婚")
        rid = d.write_kind(sender, "request", "create", {"to_province": receiver, "person_id": pid,
                                                        "subject": subject, "due_days": 15})["request_id"]
        for _ in range(100):
            try:
                d.stubs[str(Identity.for_province(receiver))].Get(pb.RecordRef(kind="request", record_id=rid), timeout=5)
                break
            except grpc.RpcError:
                time.sleep(0.1)
        answered = i < len(cross) - 1
        if answered:
            d.write_kind(receiver, "request", "update", {"state": "answered", "answer": reply}, rid)
        console.print(f"request {rid[:8]} from {_short(sender)} to {_short(receiver)} ({subject}): "
                      f"{'answered' if answered else 'open'}")


def _assessment(fed: Federation) -> None:
    """The closing output: the national assessment (双向考核), as `yipanqi assess` shows it."""
    from cli.assess import load_weights, table, weights_file
    from core.assess import ranked

    config = str(fed.configs["hub-national"])
    stub = pb_grpc.AdminStub(fed.channel("hub-national"))
    doc = json.loads(stub.Assess(pb.PeriodRequest(), timeout=30).json)
    rows = [r for r in ranked(doc["provinces"], load_weights(weights_file(config, None))) if r["score"] is not None]
    console.print()
    Console(width=max(console.width, 160)).print(table(doc, rows))
    console.print(f"(`yipanqi assess -c {config}` shows it again; provinces with nothing to assess are left out here)")
