"""yipanqi benchmark: one command, a table of figures against their targets.

    .venv/bin/python -m bench.run [--smoke] [--duration S] [--backlog N] [--national-records N]
                                  [--pg-url URL] [--out FILE.json] [--profile DIR] [--keep]

See bench/README.md for what each number means and how it is measured.
Exit status: 0 when every measurement ran (whether or not it met its target;
``--strict`` makes a missed target exit 3), 1 when the bench itself failed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

from bench import limits as physical
from bench.harness import (DEST, HOPS, ROLE, Bench, Writer, chunks_of, people_pool, pg_url, say,
                           start_profilers, summarise_profile)
from yipanqi.v2 import admin_pb2 as apb

TARGETS = {
    "cross_region_per_s": 10_000,
    "latency_p50_ms": 50,
    "latency_p99_ms": 250,
    "catchup_per_s": 10_000,
    "peak_rss_mb": 250,
    "scale_ratio": 0.5,  # national throughput at scale / empty: within 2x
    "status_ms": 200,
    "get_ms": 200,
}
LATENCY_RATE = 1000  # changes/s offered in the latency phase
LATENCY_CHUNK = 50  # ... as 50 every 50 ms
POOL = 1000  # distinct sample people cycled by the writers
MIN_WINDOW_CHANGES = 1000  # every hop applies at least this many in a throughput window


LOAD_AT_LEAST = 1_000


def percentile(sorted_values: list[int], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = (len(sorted_values) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def batch_rate(arrivals: list[tuple[int, int]]) -> float | None:
    """Changes/s between the first and the last applied batch (free of batch-size quantisation)."""
    if len(arrivals) < 2 or arrivals[-1][0] <= arrivals[0][0]:
        return None
    return sum(n for _, n in arrivals[1:]) / ((arrivals[-1][0] - arrivals[0][0]) / 1000)


class Run:
    def __init__(self, args: argparse.Namespace, bench: Bench) -> None:
        self.args = args
        self.b = bench
        self.pool44 = people_pool(POOL, "44", seed=44)
        self.pool13 = people_pool(POOL, "13", seed=13)
        self.ids: list[str] = []

    # -- writers --------------------------------------------------------------------
    def writers(self, pool: list[str], *, total: int | None, stop: threading.Event, hold=None,  # type: ignore[no-untyped-def]
                n: int | None = None) -> list[Writer]:
        n = n or self.args.writers
        out = []
        for w in range(n):
            share = None if total is None else total // n + (1 if w < total % n else 0)
            if share == 0:
                continue
            out.append(Writer(self.b.channel("province-11"), chunks_of(pool, 500, 4, offset=w * 257), total=share,
                              stop=stop, hold=hold, seed=w))
        for w in out:
            w.start()
        return out

    def finish(self, writers: list[Writer], stop: threading.Event | None = None, timeout: float = 600) -> int:
        if stop is not None:
            stop.set()
        for w in writers:
            w.join(timeout)
            if w.is_alive():
                raise TimeoutError("an Import stream did not finish")
            if w.error is not None:
                raise RuntimeError(f"Import stream failed: {w.error}")
            if w.stats.errors:
                raise RuntimeError(f"{w.stats.errors} rows refused, e.g. {w.stats.first_error}")
            self.ids.extend(w.stats.ids)
        return sum(w.stats.rows for w in writers)

    def ahead_of(self, identity: str):  # type: ignore[no-untyped-def]
        """Back-pressure: hold the writers while 11 is more than --max-ahead changes ahead of ``identity``.

        Progress is max(seq) of origin 11 at ``identity``; changes written before now may not
        all be routed there, so until the first new one arrives the lag counts from here.
        """
        limit = self.args.max_ahead
        base = self.b.seqs()["province-11"]

        def hold() -> bool:
            p = self.b.progress
            return p.get("province-11", 0) - max(p.get(identity, 0), base) > limit

        return hold

    def drain_timeout(self, changes: int) -> float:
        return max(120.0, changes / 100)

    # -- 1. cross-region throughput -------------------------------------------------
    def throughput(self, label: str) -> dict:
        b, args = self.b, self.args
        say(f"{label}: writing at 11 as fast as it can ({args.writers} Import streams), measuring at 44")
        start = b.seqs()
        stop = threading.Event()
        writers = self.writers(self.pool44, total=None, stop=stop, hold=self.ahead_of(DEST))
        try:
            b.wait_for(DEST, start[DEST] + 1, 120, "first change at 44")
            time.sleep(min(2.0, 0.2 * args.duration))
            profilers = start_profilers(b.pids(), Path(args.profile) / label, args.duration) if args.profile else []
            t0, s0, c0 = time.perf_counter(), b.seqs(), b.cpu()
            # The window lasts --duration, and longer (up to 2x, at least 30 s more) until every hop
            # has applied MIN_WINDOW_CHANGES: a rate from fewer than two 500-change batches is noise.
            limit = t0 + args.duration + max(30.0, args.duration)
            while True:
                time.sleep(min(0.5, args.duration / 4))
                b.check_alive()
                now = time.perf_counter()
                if now - t0 >= args.duration:
                    p = b.seqs()
                    if all(p[h] - s0[h] >= MIN_WINDOW_CHANGES for h in HOPS) or now >= limit:
                        break
            t1, s1, c1 = time.perf_counter(), b.seqs(), b.cpu()
        finally:
            self.finish(writers, stop)
        elapsed = t1 - t0
        snapshot_rates = {h: (s1[h] - s0[h]) / elapsed for h in HOPS}
        hop_rates = {h: batch_rate(b.probe(h).arrivals(s0[h], s1[h])) or snapshot_rates[h] for h in HOPS}
        applied = s1[DEST] - s0[DEST]
        last = b.seqs()["province-11"]
        say(f"{label}: {hop_rates[DEST]:,.0f} changes/s at 44; draining to seq {last}")
        t_stop = time.perf_counter()
        b.wait_for(DEST, last, self.drain_timeout(last - s1[DEST]), "throughput drain")
        drained = time.perf_counter() - t_stop
        cpu = {k: c1.get(k, 0) - c0.get(k, 0) for k in c1}
        # CPU per change at each process, over the changes that process handled in the window
        # (the client's over the changes written at 11).
        handled = {k: max(s1[k if k in s1 else "province-11"] - s0[k if k in s0 else "province-11"], 1) for k in cpu}
        per_change = {k: cpu[k] / handled[k] for k in cpu}
        per_1000 = {k: round(v * 1e6, 1) for k, v in per_change.items()}  # CPU ms per 1,000 changes
        ncpu = os.cpu_count() or 1
        for p in profilers:
            p[2].wait(timeout=args.duration + 30)
        return {
            "changes_per_s": hop_rates[DEST],
            "snapshot_per_s": snapshot_rates[DEST],
            "window_s": elapsed,
            "changes_in_window": applied,
            "hop_rates_per_s": hop_rates,
            "cpu_ms_per_1000_changes": per_1000,
            "cpu_busy_cores": sum(cpu.values()) / elapsed,
            # If every change costs what it cost here at every process, all cores together allow:
            "cpu_bound_ceiling_per_s": ncpu / max(sum(v for k, v in per_change.items() if k in HOPS), 1e-9),
            "drain_after_stop_s": drained,
            "profiles": {i: summarise_profile(path) for i, path, _ in profilers},
        }

    # -- 2. latency at a steady offered rate -------------------------------------------
    def latency(self) -> dict:
        b, args = self.b, self.args
        say(f"latency: offering {LATENCY_RATE}/s at 11 ({LATENCY_CHUNK} every {LATENCY_CHUNK / LATENCY_RATE * 1000:.0f} ms) "
            f"for {args.duration:.0f}s")
        warm = min(2.0, 0.2 * args.duration)
        start = b.seqs()["province-11"]
        stop = threading.Event()
        w = Writer(b.channel("province-11"), chunks_of(self.pool44, LATENCY_CHUNK, 40), stop=stop,
                   pace=LATENCY_CHUNK / LATENCY_RATE, seed=99, window=40)
        w.start()
        time.sleep(warm)
        first = b.seqs()["province-11"]
        t0 = time.perf_counter()
        time.sleep(args.duration)
        stop.set()
        offered = (w.sent - (first - start)) / (time.perf_counter() - t0)
        self.finish([w])
        last = b.seqs()["province-11"]
        b.wait_for(DEST, last, self.drain_timeout(last - first), "latency drain")
        delays = sorted(b.probe(DEST).delays(first, last))
        if not delays:
            raise RuntimeError("latency: no changes measured at 44")
        # Where the delay accrues: received_ms at each hop for the same changes (one clock).
        seen = {h: b.probe(h).received(first, last) for h in HOPS}
        hops = {}
        for prev, cur in zip(HOPS, HOPS[1:]):
            ds = sorted(seen[cur][q][1] - seen[prev][q][1] for q in seen[DEST] if q in seen[prev] and q in seen[cur])
            hops[f"{prev} -> {cur}"] = {"p50_ms": percentile(ds, 0.5), "p99_ms": percentile(ds, 0.99)}
        return {
            "offered_per_s": offered,
            "changes": len(delays),
            "p50_ms": percentile(delays, 0.50),
            "p95_ms": percentile(delays, 0.95),
            "p99_ms": percentile(delays, 0.99),
            "max_ms": float(delays[-1]),
            "per_hop": hops,
            "body_bytes": b.probe(DEST).body_bytes(),
        }

    # -- 3. catch-up after downtime ---------------------------------------------------
    def catchup(self) -> dict:
        b, args = self.b, self.args
        base = b.seqs()
        b.wait_for(DEST, base["province-11"], 120, "44 settled before catch-up")
        say(f"catch-up: stopping 44, queueing {args.backlog:,} changes at the hubs")
        b.stop(DEST)
        stop = threading.Event()
        t = time.perf_counter()
        writers = self.writers(self.pool44, total=args.backlog, stop=stop)
        for w in writers:
            w.join()
        written = self.finish(writers)
        write_s = time.perf_counter() - t
        target = b.seqs()["province-11"]
        b.wait_for("hub-pearl", target, self.drain_timeout(written), "backlog queued at hub-pearl")
        queued_s = time.perf_counter() - t
        say(f"catch-up: {written:,} queued at hub-pearl in {queued_s:.1f}s; starting 44")
        before = b.probe(DEST).max_seq()
        t0 = time.perf_counter()
        b.restart(DEST)
        t_first = None
        deadline = time.monotonic() + self.drain_timeout(written) + 120
        while True:
            have = b.probe(DEST).max_seq()
            if t_first is None and have > before:
                t_first = time.perf_counter()
            if have >= target:
                break
            b.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"catch-up: 44 at {have} of {target}")
            time.sleep(0.05)
        t1 = time.perf_counter()
        b.fed.wait_healthy(DEST, timeout=60)
        total = target - before
        return {
            "backlog": total,
            "drain_per_s": total / (t1 - t0),
            "drain_after_first_per_s": total / max(t1 - (t_first or t0), 1e-9),
            "seconds": t1 - t0,
            "first_change_after_s": (t_first or t1) - t0,
            "local_write_per_s": written / write_s,
            "queued_in_s": queued_s,
        }

    # -- 4. memory -------------------------------------------------------------------
    def memory(self, peaks: dict[str, int]) -> dict:
        per_process = {i: v / 2**20 for i, v in sorted(peaks.items())}
        per_role: dict[str, float] = {}
        for i, mb in per_process.items():
            per_role[ROLE[i]] = max(per_role.get(ROLE[i], 0.0), mb)
        return {"peak_rss_mb": per_process, "peak_rss_mb_by_role": per_role, "max_mb": max(per_process.values())}

    # -- 5. scale -------------------------------------------------------------------
    def scale(self, empty: dict) -> dict:
        b, args = self.b, self.args
        have = b.probe("hub-national").records()
        # The earlier sections' records count towards --national-records; at least a few more are
        # loaded whatever they wrote, so the load path (and its rate) is always measured.
        to_load = max(LOAD_AT_LEAST, args.national_records - have)
        say(f"scale: national holds {have:,} records; loading {to_load:,} more through 11 -> bohai -> national "
            f"(household 11, residence 13), to {max(have, args.national_records):,}")
        t = time.perf_counter()
        load_rate = None
        if to_load:
            stop = threading.Event()
            writers = self.writers(self.pool13, total=to_load, stop=stop, hold=self.ahead_of("hub-national"))
            last_note = time.monotonic()
            while any(w.is_alive() for w in writers):
                time.sleep(0.5)
                b.check_alive()
                if time.monotonic() - last_note > 30:
                    last_note = time.monotonic()
                    done = sum(w.stats.rows for w in writers)
                    say(f"scale: loaded {done:,} of {to_load:,} ({done / (time.perf_counter() - t):,.0f}/s)")
            written = self.finish(writers)
            target = b.seqs()["province-11"]
            b.wait_for("hub-national", target, self.drain_timeout(written), "national load")
            load_rate = written / (time.perf_counter() - t)
        held = b.probe("hub-national").records()
        at_scale = self.throughput("throughput at scale")

        def timed(call, n: int = 20) -> dict:  # type: ignore[no-untyped-def]
            call()  # connect and warm up
            ts = []
            for _ in range(n):
                t = time.perf_counter()
                call()
                ts.append((time.perf_counter() - t) * 1000)
            return {"median_ms": statistics.median(ts), "max_ms": max(ts)}

        nat = b.admin("hub-national")
        say("scale: timing Status and Get on the national hub (20 calls each)")
        status = timed(lambda: nat.Status(apb.Empty(), timeout=120))
        ids = list(self.ids) or [""]
        pick = iter(ids * 21)
        get = timed(lambda: nat.Get(apb.RecordRef(kind="person", record_id=next(pick)), timeout=120))
        other_status = {i: timed(lambda i=i: b.admin(i).Status(apb.Empty(), timeout=120),
                                 3 if args.smoke else 5)["median_ms"]
                        for i in ("hub-bohai", "hub-pearl", "province-11", "province-44")}
        empty_nat = empty["hop_rates_per_s"]["hub-national"]
        scale_nat = at_scale["hop_rates_per_s"]["hub-national"]
        return {
            "national_records": held,
            "loaded": to_load,
            "load_per_s": load_rate,
            "empty_national_per_s": empty_nat,
            "scale_national_per_s": scale_nat,
            "ratio": scale_nat / empty_nat if empty_nat else 0.0,
            "scale_cross_region_per_s": at_scale["changes_per_s"],
            "status_median_ms": status["median_ms"],
            "status_max_ms": status["max_ms"],
            "get_median_ms": get["median_ms"],
            "get_max_ms": get["max_ms"],
            "status_median_ms_elsewhere": other_status,
            "throughput_at_scale": at_scale,
        }

    # -- all of it, on one backend -----------------------------------------------------
    def all(self) -> dict:
        b = self.b
        say(f"[{b.backend}] starting the federation in {b.root}")
        b.start()
        out: dict = {}
        out["throughput"] = self.throughput("throughput")
        out["latency"] = self.latency()
        out["catchup"] = self.catchup()
        out["memory"] = self.memory(b.memory.take())
        out["scale"] = self.scale(out["throughput"])
        out["memory_scale_phase"] = self.memory(b.memory.take())
        return out


# -- checks and the table ----------------------------------------------------------------
def ceilings(lim: dict, backend: str) -> dict[str, dict[str, float]]:
    """What the physical limits allow per change, for the stage that costs most.

    Per change, the national hub writes 3 rows (log, log_dest, records) and node 44 two
    (log, records); every receiver runs ~12 SHA-256 (leaf + ~9 Merkle proof nodes for a
    500-batch + 2 digests); one Ed25519 sign/verify covers a 500-change batch.
    """
    common = {"gRPC stream": lim["grpc_msgs_per_s"], "SHA-256": lim["sha256_per_s"] / 12,
              "Ed25519 verify": lim["verify_per_s"] * 500, "Ed25519 sign": lim["sign_per_s"] * 500}
    name, rows = ("SQLite insert", lim["sqlite_rows_per_s"])
    if backend == "postgresql":
        name, rows = ("PostgreSQL insert", lim.get("pg_rows_per_s", float("inf")))
    return {
        "pipeline": {name: rows / 3, **common},
        "last hop": {name: rows / 2, **common},
        "local write": {name: rows / 2},
    }


def vs_ceiling(value: float, ceil: dict[str, float]) -> str:
    name, limit = min(ceil.items(), key=lambda kv: kv[1])
    return f"{100 * value / limit:.0f}% of {name} ({limit:,.0f}/s)"


def checks(res: dict, lim: dict, backend: str = "sqlite") -> list[dict]:
    ceil = ceilings(lim, backend)
    commit = lim.get("pg_commit50_ms", lim["sqlite_commit50_ms"]) if backend == "postgresql" else lim["sqlite_commit50_ms"]
    floor = 5 * commit + 4 * lim["grpc_rtt50_ms"]
    t, la, c, m, s = res["throughput"], res["latency"], res["catchup"], res["memory"], res["scale"]
    rows = [
        ("1 cross-region", "changes/s applied at 44", t["changes_per_s"], f">= {TARGETS['cross_region_per_s']:,}",
         t["changes_per_s"] >= TARGETS["cross_region_per_s"], vs_ceiling(t["changes_per_s"], ceil["pipeline"]),
         f"{t['changes_per_s']:,.0f}"),
        ("1 cross-region", "CPU-bound ceiling here", t["cpu_bound_ceiling_per_s"], "info", None,
         f"{t['cpu_busy_cores']:.2f} of {os.cpu_count()} cores busy", f"{t['cpu_bound_ceiling_per_s']:,.0f}"),
        ("2 latency", f"p50 at {la['offered_per_s']:,.0f}/s offered", la["p50_ms"], f"< {TARGETS['latency_p50_ms']} ms",
         la["p50_ms"] < TARGETS["latency_p50_ms"], f"floor {floor:.1f} ms = {100 * floor / max(la['p50_ms'], 1e-9):.0f}% of it",
         f"{la['p50_ms']:.0f} ms"),
        ("2 latency", "p95", la["p95_ms"], "info", None, "", f"{la['p95_ms']:.0f} ms"),
        ("2 latency", "p99", la["p99_ms"], f"< {TARGETS['latency_p99_ms']} ms", la["p99_ms"] < TARGETS["latency_p99_ms"],
         "", f"{la['p99_ms']:.0f} ms"),
        ("3 catch-up", f"drain of {c['backlog']:,} (from restart)", c["drain_per_s"], f">= {TARGETS['catchup_per_s']:,}/s",
         c["drain_per_s"] >= TARGETS["catchup_per_s"], vs_ceiling(c["drain_per_s"], ceil["last hop"]),
         f"{c['drain_per_s']:,.0f}/s"),
        ("3 catch-up", "drain from first change", c["drain_after_first_per_s"], "info", None, "",
         f"{c['drain_after_first_per_s']:,.0f}/s"),
        ("3 catch-up", "local Import write rate at 11", c["local_write_per_s"], "info", None,
         vs_ceiling(c["local_write_per_s"], ceil["local write"]),
         f"{c['local_write_per_s']:,.0f}/s"),
    ]
    for role, mb in sorted(m["peak_rss_mb_by_role"].items()):
        rows.append(("4 memory", f"peak RSS, {role}", mb, f"< {TARGETS['peak_rss_mb']} MB", mb < TARGETS["peak_rss_mb"],
                     "", f"{mb:.0f} MB"))
    rows += [
        ("5 scale", f"national at {s['national_records']:,} records / empty", s["ratio"],
         f">= {TARGETS['scale_ratio']} (2x)", s["ratio"] >= TARGETS["scale_ratio"],
         f"{s['scale_national_per_s']:,.0f} vs {s['empty_national_per_s']:,.0f}/s", f"{s['ratio']:.2f}"),
        ("5 scale", "national Status (median of 20)", s["status_median_ms"], f"< {TARGETS['status_ms']} ms",
         s["status_median_ms"] < TARGETS["status_ms"], "", f"{s['status_median_ms']:.0f} ms"),
        ("5 scale", "national Get / person show (median of 20)", s["get_median_ms"], f"< {TARGETS['get_ms']} ms",
         s["get_median_ms"] < TARGETS["get_ms"], "", f"{s['get_median_ms']:.1f} ms"),
    ]
    if s.get("load_per_s"):
        rows.append(("5 scale", "load rate 11 -> national", s["load_per_s"], "info", None, "",
                     f"{s['load_per_s']:,.0f}/s"))
    keys = ("section", "metric", "value", "target", "pass", "vs_limit", "shown")
    return [dict(zip(keys, r)) for r in rows]


def limit_rows(lim: dict) -> list[tuple[str, str]]:
    return [
        ("Ed25519 sign (1 core)", f"{lim['sign_per_s']:,.0f}/s"),
        ("Ed25519 verify (1 core)", f"{lim['verify_per_s']:,.0f}/s"),
        ("SHA-256 of 400 B bodies", f"{lim['sha256_per_s']:,.0f}/s ({lim['sha256_mb_per_s']:,.0f} MB/s)"),
        ("SQLite executemany 500 x 1 KB, WAL, sync=FULL", f"{lim['sqlite_rows_per_s']:,.0f} rows/s"),
        ("SQLite commit of a 50-row batch", f"{lim['sqlite_commit50_ms']:.2f} ms"),
        ("gRPC bidi, mTLS loopback, batches of 500, window 4", f"{lim['grpc_msgs_per_s']:,.0f} msgs/s"),
        ("gRPC round trip of a 50-message batch", f"{lim['grpc_rtt50_ms']:.2f} ms"),
    ]


def print_table(doc: dict) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 160)
    lim = doc["limits"]
    t = Table(title=f"physical limits of this machine ({doc['machine']['cpus']} CPUs)")
    t.add_column("ceiling")
    t.add_column("measured", justify="right")
    for name, value in limit_rows(lim):
        t.add_row(name, value)
    if "pg_rows_per_s" in lim:
        t.add_row("PostgreSQL executemany 500 x 1 KB, commit per batch", f"{lim['pg_rows_per_s']:,.0f} rows/s")
        t.add_row("PostgreSQL commit of a 50-row batch", f"{lim['pg_commit50_ms']:.2f} ms")
    console.print(t)
    backends = list(doc["backends"])
    t = Table(title=f"yipanqi bench ({', '.join(backends)}; load before {doc['machine']['load_before']}, "
                    f"after {doc['machine']['load_after']})")
    for col in ("section", "figure", "target"):
        t.add_column(col)
    for be in backends:
        t.add_column(be, justify="right")
        t.add_column("", justify="center")
        t.add_column("vs physical limit")
    by_backend = {be: doc["backends"][be]["checks"] for be in backends}
    first = by_backend[backends[0]]
    for i, row in enumerate(first):
        cells = [row["section"], row["metric"], row["target"]]
        for be in backends:
            r = by_backend[be][i] if i < len(by_backend[be]) else {"shown": "-", "pass": None, "vs_limit": ""}
            mark = "" if r["pass"] is None else ("[green]pass[/]" if r["pass"] else "[red]miss[/]")
            cells += [r["shown"], mark, r["vs_limit"]]
        t.add_row(*cells)
    console.print(t)
    for be in backends:
        res = doc["backends"][be]
        tp = res["throughput"]
        t = Table(title=escape(f"[{be}]") + " where the time goes during the cross-region run "
                        f"({tp['window_s']:.1f}s, {tp['changes_in_window']:,} changes)")
        t.add_column("process")
        t.add_column("changes/s at this hop", justify="right")
        t.add_column("CPU ms per 1,000 changes", justify="right")
        t.add_column("peak RSS MB", justify="right")
        for ident, cpu in tp["cpu_ms_per_1000_changes"].items():
            rate = tp["hop_rates_per_s"].get(ident)
            mem = res["memory"]["peak_rss_mb"].get(ident)
            t.add_row(ident, "" if rate is None else f"{rate:,.0f}", f"{cpu:,.0f}", "" if mem is None else f"{mem:.0f}")
        console.print(t)
        hops = res["latency"].get("per_hop", {})
        if hops:
            console.print(escape(f"[{be}]") + f" latency by hop at {res['latency']['offered_per_s']:,.0f}/s (p50 / p99 ms): "
                          + "; ".join(f"{k.replace('province-', '').replace('hub-', '')} "
                                      f"{v['p50_ms']:.0f} / {v['p99_ms']:.0f}" for k, v in hops.items()))
        for ident, prof in tp.get("profiles", {}).items():
            if prof.get("busy_samples"):
                console.print(escape(f"[{be}] {ident}") + f" py-spy: {prof['busy_samples']} samples holding the GIL; "
                              f"busy in "
                              + ", ".join(f"{k} {v}%" for k, v in prof["inclusive"][:6]))


# -- main ----------------------------------------------------------------------------
def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes (duration 3s, backlog 2,000, national 5,000)")
    p.add_argument("--duration", type=float, help="steady-window length of the throughput and latency runs (60)")
    p.add_argument("--backlog", type=int, help="changes queued while 44 is down (1,000,000)")
    p.add_argument("--national-records", type=int, help="records the national hub holds for the scale run (5,000,000)")
    p.add_argument("--pg-url", help="PostgreSQL admin URL: also run everything with every store on this server")
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    p.add_argument("--writers", type=int, default=2, help="Import streams writing at 11 (2)")
    p.add_argument("--max-ahead", type=int,
                   help="hold the writers while 11 is this many changes ahead of the measured hop (10,000; smoke 2,000)")
    p.add_argument("--profile", help="py-spy every process during the throughput windows, raw stacks into DIR")
    p.add_argument("--workdir", type=Path, help="where the federations live (default: a temp dir, removed after)")
    p.add_argument("--keep", action="store_true", help="keep the work dir (stores, logs)")
    p.add_argument("--strict", action="store_true", help="exit 3 when a target is missed")
    a = p.parse_args(argv)
    defaults = (3.0, 2_000, 5_000) if a.smoke else (60.0, 1_000_000, 5_000_000)
    a.duration = a.duration if a.duration is not None else defaults[0]
    a.backlog = a.backlog if a.backlog is not None else defaults[1]
    a.national_records = a.national_records if a.national_records is not None else defaults[2]
    a.max_ahead = a.max_ahead if a.max_ahead is not None else (2_000 if a.smoke else 10_000)
    if a.duration <= 0 or a.backlog <= 0 or a.national_records < 0 or a.writers < 1:
        p.error("--duration and --backlog must be positive, --national-records >= 0, --writers >= 1")
    return a


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = args.workdir or Path(tempfile.mkdtemp(prefix="yipanqi-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    out_path = args.out.resolve() if args.out else None
    doc: dict = {
        "version": 1,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "pg_url"},
        "targets": TARGETS,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "load_before": [round(x, 2) for x in os.getloadavg()]},
        "backends": {},
    }
    started = time.perf_counter()
    try:
        say(f"physical limits ({'0.3' if args.smoke else '2'}s each)")
        doc["limits"] = physical.measure(work, 0.3 if args.smoke else 2.0, say=say,
                                         pg_url=pg_url(args.pg_url).render_as_string(hide_password=False)
                                         if args.pg_url else None)
        backends = [("sqlite", None)] + ([("postgresql", args.pg_url)] if args.pg_url else [])
        for name, pg in backends:
            bench = Bench(work / name, name, pg)
            try:
                res = Run(args, bench).all()
            finally:
                bench.close()
            res["checks"] = checks(res, doc["limits"], name)
            doc["backends"][name] = res
    except Exception:  # noqa: BLE001 - report, keep the work dir for the logs
        traceback.print_exc()
        say(f"bench failed; stores and logs kept in {work}")
        return 1
    doc["machine"]["load_after"] = [round(x, 2) for x in os.getloadavg()]
    doc["elapsed_s"] = time.perf_counter() - started
    print_table(doc)
    if out_path:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(doc, indent=2, ensure_ascii=False, default=str))
        say(f"results written to {out_path}")
    if not (args.keep or args.workdir):
        shutil.rmtree(work, ignore_errors=True)
    say(f"done in {doc['elapsed_s']:.0f}s")
    missed = [c for be in doc["backends"].values() for c in be["checks"] if c["pass"] is False]
    return 3 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
