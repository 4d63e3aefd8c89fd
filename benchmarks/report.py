#!/usr/bin/env python3
"""Turns the stampede benchmark JSON (Google Benchmark --benchmark_out) into tables and plots.

Usage:
  python3 benchmarks/report.py --out bench-out/summary.md [--plots docs] [--doc docs/performance.md] \
      bench-out/inprocess.json [bench-out/redis.json]

Writes a Markdown summary (figures, ratios from the same run, targets of issue 4) and, with
--plots DIR, gnuplot data files next to the summary and PNG plots into DIR; with --doc FILE, the
summary also replaces the generated section of FILE. Only the standard
library is used; gnuplot must be on PATH for --plots.
"""

import argparse
import json
import os
import re
import subprocess
import sys

STRATEGIES = ["none", "seed_lock_poll", "stampede_blocking", "stampede_swr"]
NS = [1, 8, 64, 256, 1024]
DS = [5, 50]


def load(paths):
    runs, context = [], {}
    for path in paths:
        with open(path) as f:
            doc = json.load(f)
        context.update(doc.get("context", {}))
        for b in doc.get("benchmarks", []):
            if b.get("error_occurred"):
                continue
            if b.get("run_type", "iteration") == "aggregate":
                # Repeated benchmarks report aggregates only: keep the median under the plain name.
                if b.get("aggregate_name") != "median":
                    continue
                b["name"] = b["run_name"]
            b["_file"] = os.path.basename(path)
            runs.append(b)
    return runs, context


def args_of(name):
    """'BM_Wave_none/N:64/D_ms:5/...' -> {'N': 64, 'D_ms': 5}."""
    out = {}
    for part in name.split("/")[1:]:
        m = re.fullmatch(r"(\w+):(\d+)", part)
        if m:
            out[m.group(1)] = int(m.group(2))
    return out


def base(name):
    return name.split("/")[0]


def fmt(x, digits=3):
    if x is None:
        return "n/a"
    if isinstance(x, str):
        return x
    if x == 0:
        return "0"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


CLIENT_COMMANDS = {"evalsha", "eval", "hgetall", "psubscribe", "subscribe"}


def breakdown(counters, case):
    """'leader_miss' -> 'evalsha 3, hgetall 2, ...' from counters named 'leader_miss:<command>'."""
    items = sorted((k.split(":", 1)[1], v) for k, v in counters.items() if k.startswith(case + ":"))
    return ", ".join(f"{cmd} {fmt(v)}" for cmd, v in items)


def round_trips(counters, case):
    return sum(v for k, v in counters.items()
               if k.startswith(case + ":") and k.split(":", 1)[1] in CLIENT_COMMANDS)


def verdict(ok):
    if ok is None:
        return "n/a"
    return "met" if ok else "**missed**"


class Report:
    def __init__(self, runs, context, machine=None):
        self.runs = runs
        self.context = context
        self.machine = machine or {}
        self.lines = []

    def find(self, prefix, **args):
        for r in self.runs:
            if base(r["name"]) != prefix:
                continue
            a = args_of(r["name"])
            if all(a.get(k) == v for k, v in args.items()):
                return r
        return None

    def out(self, s=""):
        self.lines.append(s)

    # ---- item 1: waves -------------------------------------------------------------------------
    def waves(self):
        if not any(base(r["name"]).startswith("BM_Wave_") for r in self.runs):
            return
        self.out("### DB hits under concurrent misses (one cold key, N callers released at once)")
        self.out()
        self.out("Per wave: `db_hits` = loader calls (mean, max over waves); caller latency from each "
                 "caller's start to its return; wake-up = loader return -> coalesced caller's return.")
        self.out()
        for d in DS:
            self.out(f"**D = {d} ms**")
            self.out()
            self.out("| strategy | N | db_hits mean | db_hits max | latency p50 ms | p99 ms | max ms "
                     "| wake-up p50 us | wake-up p99 us |")
            self.out("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
            for s in STRATEGIES:
                for n in NS:
                    r = self.find("BM_Wave_" + s, N=n, D_ms=d)
                    if not r:
                        continue
                    ms = lambda k: r[k] / 1000 if k in r else None
                    self.out(f"| {s} | {n} | {fmt(r.get('db_hits'))} | {fmt(r.get('db_hits_max'))} "
                             f"| {fmt(ms('lat_p50_us'))} | {fmt(ms('lat_p99_us'))} | {fmt(ms('lat_max_us'))} "
                             f"| {fmt(r.get('wake_p50_us'))} | {fmt(r.get('wake_p99_us'))} |")
            self.out()

    # ---- item 2: hit path ----------------------------------------------------------------------
    def hit_ops(self, impl, case, typ, threads):
        for r in self.runs:
            if base(r["name"]) == f"BM_HitPath_{impl}_{case}_{typ}" and r.get("threads") == threads:
                return r.get("items_per_second")
        return None

    def hit_path(self):
        if not any(base(r["name"]).startswith("BM_HitPath_") for r in self.runs):
            return
        keys = self.context.get("spread_keys", "?")
        self.out("### Hit path (warm keys, value copied out; million hits per second, all threads)")
        self.out()
        reps = self.context.get("repetitions", "1")
        self.out(f"`spread` draws keys at random from {keys} warm keys"
                 + (" (reduced from 1M by the profile)" if keys != "1000000" else "") + "."
                 + (f" Each figure is the median of {reps} repetitions." if reps != "1" else ""))
        self.out()
        self.out("| case | T | threads | stampede | shared_mutex map | mutex map | unsync map (ceiling) "
                 "| stampede / shared_mutex | stampede / ceiling |")
        self.out("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for typ in ["string", "kib"]:
            for case in ["hot", "spread"]:
                for t in [1, 2]:
                    st = self.hit_ops("stampede", case, typ, t)
                    sh = self.hit_ops("shared_mutex_map", case, typ, t)
                    mu = self.hit_ops("mutex_map", case, typ, t)
                    un = self.hit_ops("unsync_map", case, typ, 1)
                    if st is None:
                        continue
                    m = lambda x: None if x is None else x / 1e6
                    self.out(f"| {case} | {'string (12 B)' if typ == 'string' else '1 KiB struct'} | {t} "
                             f"| {fmt(m(st))} | {fmt(m(sh))} | {fmt(m(mu))} | {fmt(m(un))} "
                             f"| {fmt(ratio(st, sh))}x | {fmt(ratio(st, un))}x |")
        self.out()

    # ---- item 4: SWR ---------------------------------------------------------------------------
    def swr(self):
        fresh = self.find("BM_SWR_HitLatency_fresh")
        stale = self.find("BM_SWR_HitLatency_stale")
        if fresh and stale:
            self.out("### Stale-while-revalidate")
            self.out()
            self.out("| hit | p50 us | p99 us | p99.9 us | max us |")
            self.out("|---|---:|---:|---:|---:|")
            for label, r in [("fresh", fresh), ("stale (refresh in flight)", stale)]:
                self.out(f"| {label} | {fmt(r.get('lat_p50_us'))} | {fmt(r.get('lat_p99_us'))} "
                         f"| {fmt(r.get('lat_p999_us'))} | {fmt(r.get('lat_max_us'))} |")
            self.out()
        refresh = [r for r in self.runs if base(r["name"]) == "BM_SWR_RefreshesPerSoftExpiry"]
        if refresh:
            self.out("| readers | soft expiries | loader calls per expiry | stored refreshes per expiry "
                     "| stale hits per expiry | dropped |")
            self.out("|---:|---:|---:|---:|---:|---:|")
            for r in refresh:
                self.out(f"| {fmt(r.get('readers'))} | {r.get('iterations')} "
                         f"| {fmt(r.get('refreshes_per_expiry'))} | {fmt(r.get('stored_refreshes_per_expiry'))} "
                         f"| {fmt(r.get('stale_hits_per_expiry'))} | {fmt(r.get('refreshes_dropped'))} |")
            self.out()

    # ---- item 3: Redis -------------------------------------------------------------------------
    def redis(self):
        rr = [r for r in self.runs if base(r["name"]).startswith("BM_Redis_")]
        if not rr:
            return
        self.out("### Redis (real redis-server on loopback)")
        self.out()
        waves = [r for r in rr if base(r["name"]) == "BM_Redis_Wave_clients"]
        if waves:
            self.out("M Cache + Client instances in one process, each with its own connections and "
                     "flights (no in-process coalescing between them), miss one key together.")
            self.out()
            self.out("| M clients | wake-up | db_hits mean | db_hits max | latency p50 ms | p99 ms "
                     "| wake-up p50 us | wake-up p99 us |")
            self.out("|---:|---|---:|---:|---:|---:|---:|---:|")
            for r in waves:
                a = args_of(r["name"])
                mode = "pub/sub" if a.get("pubsub", 1) else "poll only"
                ms = lambda k: r[k] / 1000 if k in r else None
                self.out(f"| {a.get('M')} | {mode} | {fmt(r.get('db_hits'))} | {fmt(r.get('db_hits_max'))} "
                         f"| {fmt(ms('lat_p50_us'))} | {fmt(ms('lat_p99_us'))} "
                         f"| {fmt(r.get('wake_p50_us'))} | {fmt(r.get('wake_p99_us'))} |")
            self.out()
        hits = [r for r in rr if base(r["name"]).startswith("BM_Redis_HitPath_")]
        if hits:
            self.out("| hit path | connections (threads) | hits/s | p50 us | p99 us |")
            self.out("|---|---:|---:|---:|---:|")
            for r in hits:
                self.out(f"| {base(r['name'])[len('BM_Redis_HitPath_'):]} | {r.get('threads')} "
                         f"| {fmt(r.get('items_per_second'))} | {fmt(r.get('lat_p50_us'))} "
                         f"| {fmt(r.get('lat_p99_us'))} |")
            self.out()
        cmds = self.find("BM_Redis_CommandsPerCall")
        if cmds:
            self.out("Redis commands per call (`INFO commandstats` deltas). Redis also counts the commands "
                     "that run inside a Lua script; round trips are the commands the client sends "
                     "(EVALSHA/EVAL, HGETALL, (P)SUBSCRIBE), the rest ran inside those scripts.")
            self.out()
            self.out("| call | round trips | commands incl. inside scripts | breakdown |")
            self.out("|---|---:|---:|---|")
            for k in ["hit", "leader_miss", "waiter_miss"]:
                self.out(f"| {k.replace('_', ' ')} | {fmt(round_trips(cmds, k))} | {fmt(cmds.get('cmds_' + k))} "
                         f"| {breakdown(cmds, k)} |")
            self.out()

    # ---- targets -------------------------------------------------------------------------------
    def targets(self):
        rows = []
        blocking = [self.find("BM_Wave_stampede_blocking", N=n, D_ms=d) for n in NS for d in DS]
        blocking = [r for r in blocking if r]
        if blocking:
            worst = max(r.get("db_hits_max", 0) for r in blocking)
            rows.append(("db_hits per wave, stampede_blocking, every N and D", "= 1",
                         f"max {fmt(worst)}", verdict(worst == 1)))
        nones = [(n, self.find("BM_Wave_none", N=n, D_ms=d)) for n in NS for d in DS]
        nones = [(n, r) for n, r in nones if r]
        if nones:
            off = [f"N={n}: {fmt(r['db_hits'])}" for n, r in nones if r.get("db_hits") != n]
            rows.append(("db_hits per wave, none", "= N", "= N" if not off else "; ".join(off),
                         verdict(not off)))
        seed = [self.find("BM_Wave_seed_lock_poll", N=n, D_ms=d) for n in NS for d in DS]
        seed = [r for r in seed if r]
        if seed:
            rows.append(("db_hits per wave, seed_lock_poll", "report",
                         f"max {fmt(max(r.get('db_hits_max', 0) for r in seed))}", "reported"))
        for d in DS:
            r = self.find("BM_Wave_stampede_blocking", N=64, D_ms=d)
            if r and "wake_p50_us" in r:
                rows.append((f"in-process wake-up p50, N=64, D={d} ms", "<= 100 us",
                             f"{fmt(r['wake_p50_us'])} us", verdict(r["wake_p50_us"] <= 100)))
                rows.append((f"in-process wake-up p99, N=64, D={d} ms", "<= 1 ms",
                             f"{fmt(r['wake_p99_us'])} us", verdict(r["wake_p99_us"] <= 1000)))
            s = self.find("BM_Wave_seed_lock_poll", N=64, D_ms=d)
            if s and "wake_p50_us" in s:
                rows.append((f"(seed_lock_poll wake-up p50, N=64, D={d} ms)", "for comparison",
                             f"{fmt(s['wake_p50_us'] / 1000)} ms", "reported"))
        for typ in ["string", "kib"]:
            st1 = self.hit_ops("stampede", "hot", typ, 1)
            sh1 = self.hit_ops("shared_mutex_map", "hot", typ, 1)
            st2 = self.hit_ops("stampede", "hot", typ, 2)
            sh2 = self.hit_ops("shared_mutex_map", "hot", typ, 2)
            un = self.hit_ops("unsync_map", "hot", typ, 1)
            if st1 and sh1:
                r1 = ratio(st1, sh1)
                rows.append((f"hit path vs shared_mutex map, 1 thread, hot key, {typ}", ">= 1.0x",
                             f"{fmt(r1)}x", verdict(r1 >= 1.0)))
            if st2 and sh2:
                r2 = ratio(st2, sh2)
                rows.append((f"hit path vs shared_mutex map, 2 threads, hot key, {typ}", ">= 1.5x",
                             f"{fmt(r2)}x", verdict(r2 >= 1.5)))
            if st1 and un:
                rows.append((f"hit path vs unsync ceiling, 1 thread, hot key, {typ}", "report",
                             f"{fmt(ratio(st1, un))}x", "reported"))
        fresh = self.find("BM_SWR_HitLatency_fresh")
        stale = self.find("BM_SWR_HitLatency_stale")
        if fresh and stale:
            r = ratio(stale.get("lat_p99_us"), fresh.get("lat_p99_us"))
            rows.append(("stale hit p99 / fresh hit p99", "<= 1.2x", f"{fmt(r)}x", verdict(r <= 1.2)))
        refresh = [r for r in self.runs if base(r["name"]) == "BM_SWR_RefreshesPerSoftExpiry"]
        if refresh:
            vals = [r.get("refreshes_per_expiry") for r in refresh]
            rows.append(("refreshes per soft expiry under stale traffic", "= 1",
                         ", ".join(fmt(v) for v in vals), verdict(all(v == 1 for v in vals))))
        rw = [r for r in self.runs if base(r["name"]) == "BM_Redis_Wave_clients"]
        if rw:
            pub = [r for r in rw if args_of(r["name"]).get("pubsub", 1)]
            worst = max((r.get("db_hits_max", 0) for r in pub), default=None)
            if worst is not None:
                rows.append(("db_hits per wave across M Redis clients", "= 1", f"max {fmt(worst)}",
                             verdict(worst == 1)))
            for r in pub:
                if "wake_p50_us" in r:
                    m = args_of(r["name"]).get("M")
                    rows.append((f"cross-client wake-up p50 via Redis pub/sub, M={m}", "<= 1 ms",
                                 f"{fmt(r['wake_p50_us'])} us", verdict(r["wake_p50_us"] <= 1000)))
            for r in rw:
                if not args_of(r["name"]).get("pubsub", 1) and "wake_p50_us" in r:
                    m = args_of(r["name"]).get("M")
                    rows.append((f"(poll-only wake-up p50, M={m})", "for comparison",
                                 f"{fmt(r['wake_p50_us'] / 1000)} ms", "reported"))
        conns = sorted({r.get("threads") for r in self.runs
                        if base(r["name"]) == "BM_Redis_HitPath_stampede"})
        for t in conns:
            st = next((r for r in self.runs if base(r["name"]) == "BM_Redis_HitPath_stampede"
                       and r.get("threads") == t), None)
            raw = next((r for r in self.runs if base(r["name"]) == "BM_Redis_HitPath_raw_hiredis_get"
                        and r.get("threads") == t), None)
            if st and raw:
                rr = ratio(st.get("items_per_second"), raw.get("items_per_second"))
                rows.append((f"Redis hit path vs raw hiredis GET, {t} connection(s)", ">= 0.9x",
                             f"{fmt(rr)}x", verdict(rr >= 0.9)))
            hg = next((r for r in self.runs if base(r["name"]) == "BM_Redis_HitPath_raw_hiredis_hgetall"
                       and r.get("threads") == t), None)
            if st and hg:
                rows.append((f"(Redis hit path vs raw HGETALL of the same hash, {t} connection(s))",
                             "for comparison",
                             f"{fmt(ratio(st.get('items_per_second'), hg.get('items_per_second')))}x",
                             "reported"))
        cmds = self.find("BM_Redis_CommandsPerCall")
        if cmds and "cmds_hit" in cmds:
            rt = round_trips(cmds, "hit")
            rows.append(("Redis round trips per hit", "= 1", f"{fmt(rt)} ({breakdown(cmds, 'hit')})",
                         verdict(rt <= 1)))
        if not rows:
            return
        self.out("### Targets of issue 4")
        self.out()
        self.out("| target | goal | measured | |")
        self.out("|---|---|---|---|")
        for t, goal, got, v in rows:
            self.out(f"| {t} | {goal} | {got} | {v} |")
        self.out()

    def text(self):
        m = self.machine
        load = self.context.get("load_avg")
        load = ", ".join(f"{x:.2f}" for x in load) if isinstance(load, list) else "?"
        self.out(f"Profile `{self.context.get('stampede_profile', '?')}`, run {m.get('date_utc', self.context.get('date', '?'))}; "
                 f"commit {m.get('commit', '?')}; "
                 f"`nproc` = {m.get('nproc', self.context.get('num_cpus', '?'))}, CPU: {m.get('cpu', '?')} "
                 f"at {self.context.get('mhz_per_cpu', '?')} MHz; {m.get('compiler', '')}; kernel {m.get('kernel', '?')}. "
                 f"Load average (1/5/15 min) before the run: {m.get('loadavg_before', '?')}, "
                 f"after: {m.get('loadavg_after', '?')}; when the in-process suite started: {load}.")
        self.out()
        self.targets()
        self.waves()
        self.hit_path()
        self.swr()
        self.redis()
        return "\n".join(self.lines) + "\n"

    # ---- plots ---------------------------------------------------------------------------------
    def plots(self, data_dir, png_dir):
        waves = [r for r in self.runs if base(r["name"]).startswith("BM_Wave_")]
        if not waves:
            return []
        labels = {"none": "none (cache-aside)", "seed_lock_poll": "seed lock + 100 ms poll",
                  "stampede_blocking": "stampede blocking", "stampede_swr": "stampede SWR (stale key)"}
        short = {"none": "none", "seed_lock_poll": "seed poll",
                 "stampede_blocking": "blocking", "stampede_swr": "SWR"}
        hits_dat = os.path.join(data_dir, "plot_db_hits.dat")
        with open(hits_dat, "w") as f:
            for d in DS:
                for s in STRATEGIES:
                    f.write(f'"{labels[s]}"\n')
                    for n in NS:
                        r = self.find("BM_Wave_" + s, N=n, D_ms=d)
                        if r:
                            f.write(f"{n} {r['db_hits']} {r['db_hits_max']}\n")
                    f.write("\n\n")
        lat_dat = os.path.join(data_dir, "plot_latency.dat")
        with open(lat_dat, "w") as f:
            for d in DS:
                f.write(f"# D = {d} ms, N = 256\n")
                for s in STRATEGIES:
                    r = self.find("BM_Wave_" + s, N=256, D_ms=d) or {}
                    vals = [max(r.get(k, 0) / 1000, 1e-4) for k in ("lat_p50_us", "lat_p99_us", "lat_max_us")]
                    f.write(f'"{short[s]}" {vals[0]} {vals[1]} {vals[2]}\n')
                f.write("\n\n")
        wake_dat = os.path.join(data_dir, "plot_wakeup.dat")
        with open(wake_dat, "w") as f:
            for s in ["seed_lock_poll", "stampede_blocking"]:
                for d in DS:
                    f.write(f'"{labels[s]}, D = {d} ms"\n')
                    for n in NS[1:]:
                        r = self.find("BM_Wave_" + s, N=n, D_ms=d)
                        if r and "wake_p50_us" in r:
                            f.write(f"{n} {r['wake_p50_us']} {r['wake_p99_us']}\n")
                    f.write("\n\n")
        outs = [os.path.join(png_dir, x) for x in
                ("bench-db-hits.png", "bench-caller-latency.png", "bench-wakeup.png")]
        profile = self.context.get("stampede_profile", "?")
        script = f"""
set terminal pngcairo size 1200,460 font "DejaVu Sans,11"
set output "{outs[0]}"
set multiplot layout 1,2 title "DB hits per wave: N callers miss one key at once (profile {profile}, mean of waves)"
set logscale xy
set xrange [0.8:1300]
set yrange [0.8:1300]
set xtics (1, 8, 64, 256, 1024)
set ytics (1, 8, 64, 256, 1024)
set xlabel "N concurrent callers" font ",11"
set ylabel "loader calls (DB hits) per wave"
set grid
set key top left
set label 1 "seed lock + poll, stampede blocking and\\nstampede SWR overlap at 1 hit per wave" at graph 0.30, graph 0.16 font ",9"
do for [d=0:1] {{
  set title sprintf("loader D = %d ms", d == 0 ? 5 : 50)
  plot for [s=0:3] "{hits_dat}" index (d*4+s) using 1:2 with linespoints lw 2 pt (s+5) title columnheader(1)
}}
unset multiplot
unset label 1

set output "{outs[1]}"
set multiplot layout 1,2 title "Caller latency by strategy, N = 256 callers on one cold (or stale) key (log scale)"
unset logscale x
set logscale y
set xrange [*:*]
set yrange [0.0001:1000]
set ytics ("0.1 us" 0.0001, "1 us" 0.001, "10 us" 0.01, "0.1 ms" 0.1, "1 ms" 1, "10 ms" 10, "100 ms" 100, "1 s" 1000)
set xtics norotate
set xlabel "none = cache-aside, seed poll = seed lock + 100 ms poll, blocking / SWR = stampede" font ",9"
set ylabel "caller latency"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set key top right
do for [d=0:1] {{
  set title sprintf("loader D = %d ms", d == 0 ? 5 : 50)
  plot "{lat_dat}" index d using 2:xtic(1) title "p50", "" index d using 3 title "p99", "" index d using 4 title "max"
}}
unset multiplot

set terminal pngcairo size 800,460 font "DejaVu Sans,11"
set output "{outs[2]}"
set bmargin 3
set title "Wake-up latency of coalesced callers (loader return -> caller return), in process"
unset style
set style data linespoints
set logscale xy
set xrange [6:1300]
set yrange [10:200000]
set xtics (8, 64, 256, 1024) norotate
set ytics ("10 us" 10, "100 us" 100, "1 ms" 1000, "10 ms" 10000, "100 ms" 100000)
set xlabel "N concurrent callers" font ",11"
set ylabel "wake-up p50 (solid) / p99 (dashed)"
set key bottom right font ",9"
plot for [i=0:3] "{wake_dat}" index i using 1:2 with linespoints lw 2 lc (i+1) pt 7 title columnheader(1), \\
     for [i=0:3] "{wake_dat}" index i using 1:3 with lines lw 1 dt 2 lc (i+1) notitle
"""
        redis_waves = [r for r in self.runs if base(r["name"]) == "BM_Redis_Wave_clients"]
        if redis_waves:
            redis_dat = os.path.join(data_dir, "plot_redis_wakeup.dat")
            with open(redis_dat, "w") as f:
                for r in sorted(redis_waves, key=lambda r: args_of(r["name"]).get("M", 0)):
                    if not args_of(r["name"]).get("pubsub", 1):
                        continue
                    m = args_of(r["name"]).get("M")
                    poll = next((q for q in redis_waves if args_of(q["name"]).get("M") == m
                                 and not args_of(q["name"]).get("pubsub", 1)), {})
                    f.write(f'"M = {m}" {r.get("wake_p50_us", 0)} {r.get("wake_p99_us", 0)} '
                            f'{poll.get("wake_p50_us", 0)} {poll.get("wake_p99_us", 0)}\n')
            outs.append(os.path.join(png_dir, "bench-redis-wakeup.png"))
            script += f"""
set terminal pngcairo size 800,460 font "DejaVu Sans,11"
set output "{outs[3]}"
set title "Redis: M Cache+Client instances miss one key; wake-up of the M-1 waiters"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
unset logscale x
set logscale y
set xrange [*:*]
set yrange [50:200000]
set xtics norotate
set ytics ("100 us" 100, "1 ms" 1000, "10 ms" 10000, "100 ms" 100000)
set xlabel "M instances (one process, separate connections and flights)" font ",11"
set ylabel "loader return -> waiter return"
set key top left font ",10"
plot "{redis_dat}" using 2:xtic(1) title "pub/sub p50", "" using 3 title "pub/sub p99", \\
     "" using 4 title "poll only p50", "" using 5 title "poll only p99"
"""
        gp = os.path.join(data_dir, "plots.gp")
        with open(gp, "w") as f:
            f.write(script)
        subprocess.run(["gnuplot", gp], check=True)
        return outs


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("json", nargs="+")
    p.add_argument("--out", required=True, help="Markdown summary to write")
    p.add_argument("--plots", help="directory for the PNG plots (needs gnuplot)")
    p.add_argument("--machine", help="key: value lines describing the machine (scripts/bench.sh writes them)")
    p.add_argument("--doc", help="Markdown file whose text between <!-- bench:begin --> and "
                                 "<!-- bench:end --> is replaced by the summary")
    a = p.parse_args()
    runs, context = load([j for j in a.json if os.path.exists(j)])
    machine = {}
    if a.machine and os.path.exists(a.machine):
        with open(a.machine) as f:
            for line in f:
                if ":" in line:
                    k, v = line.split(":", 1)
                    machine[k.strip()] = v.strip()
    rep = Report(runs, context, machine)
    text = rep.text()
    with open(a.out, "w") as f:
        f.write(text)
    if a.doc:
        begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
        with open(a.doc) as f:
            doc = f.read()
        if begin not in doc or end not in doc:
            print(f"{a.doc}: markers {begin} / {end} not found; left unchanged", file=sys.stderr)
        else:
            head, rest = doc.split(begin, 1)
            _, tail = rest.split(end, 1)
            # Demote the summary's headings by one level to nest under the doc's section.
            body = re.sub(r"^###", "####", text, flags=re.M)
            with open(a.doc, "w") as f:
                f.write(head + begin + "\n" + body + end + tail)
            print(f"updated {a.doc}")
    if a.plots:
        for png in rep.plots(os.path.dirname(os.path.abspath(a.out)), a.plots):
            print(f"wrote {png}")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
