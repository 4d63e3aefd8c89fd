#!/usr/bin/env python3
"""Turns the stampede benchmark JSON (Google Benchmark --benchmark_out) into tables and plots.

Usage:
  python3 benchmarks/report.py --out bench-out/summary.md [--plots docs] [--doc docs/performance.md] \
      bench-out/inprocess.json [bench-out/redis.json] [bench-out/peers-*.json]

Writes a Markdown summary (figures, ratios from the same run, the targets) and, with
--plots DIR, gnuplot data files next to the summary and PNG plots into DIR; with --doc FILE, the
summary also replaces the generated section of FILE. The targets are data (benchmarks/targets.json,
or --targets FILE); each plot is one gnuplot script in benchmarks/plots/ that reads a data file
written here. Only the standard library is used; gnuplot must be on PATH for --plots.
"""

import argparse
import json
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
STRATEGIES = ["none", "seed_lock_poll", "stampede_blocking", "stampede_swr", "singleflight_floor", "async"]
NS = [1, 8, 64, 256, 1024]
TABLE_NS = NS + [10000]  # BM_Wave_async also runs N = 10,000
DS = [5, 50, 500]
# The plots show the strategies and delays every profile runs at every N.
PLOT_STRATEGIES = STRATEGIES[:4]
PLOT_DS = [5, 50]


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


def expand(x, env):
    """Fills {VAR} from env into a string; a string that is exactly "{VAR}" becomes env[VAR] itself."""
    if not isinstance(x, str):
        return x
    m = re.fullmatch(r"\{(\w+)\}", x)
    if m and m.group(1) in env:
        return env[m.group(1)]
    return x.format(**env) if env else x


CHECKS = {"<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b, "==": lambda a, b: a == b}


def passes(check, value, args):
    """Applies a targets.json check ('<= 100', '== arg:N') to a figure; False without a figure."""
    op, rhs = check.split()
    bound = args.get(rhs[4:]) if rhs.startswith("arg:") else float(rhs)
    if value is None or bound is None:
        return False
    return CHECKS[op](value, bound)


def verdict(ok):
    if ok is None:
        return "n/a"
    return "met" if ok else "**missed**"


class Report:
    def __init__(self, runs, context, machine=None, spec=None):
        self.spec = spec or {"targets": []}
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
        if any(base(r["name"]) == "BM_Wave_singleflight_floor" for r in self.runs):
            self.out("`singleflight_floor`: no cache, one atomic word, waiters in `std::atomic::wait` until the "
                     "leader's `notify_all`: the wake-up floor on OS threads.")
        if any(base(r["name"]) == "BM_Wave_async" for r in self.runs):
            self.out("`async`: `stampede::asio::async_get_or_compute` from N coroutines on an `io_context` run by "
                     "2 threads (the loader on the Cache's blocking threads); a caller returns when its "
                     "coroutine resumes.")
        self.out()
        for d in DS:
            rows = [(s, n, self.find("BM_Wave_" + s, N=n, D_ms=d)) for s in STRATEGIES for n in TABLE_NS]
            rows = [(s, n, r) for s, n, r in rows if r]
            if not rows:
                continue
            self.out(f"**D = {d} ms**")
            self.out()
            self.out("| strategy | N | db_hits mean | db_hits max | latency p50 ms | p99 ms | max ms "
                     "| wake-up p50 us | wake-up p99 us |")
            self.out("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
            for s, n, r in rows:
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
        self.out("| case | T | threads | stampede | stampede visit | shared_mutex map | mutex map "
                 "| unsync map (ceiling) | stampede / shared_mutex | stampede / ceiling |")
        self.out("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for typ in ["string", "kib"]:
            for case in ["hot", "spread"]:
                for t in [1, 2]:
                    st = self.hit_ops("stampede", case, typ, t)
                    vi = self.hit_ops("stampede_visit", case, typ, t)
                    sh = self.hit_ops("shared_mutex_map", case, typ, t)
                    mu = self.hit_ops("mutex_map", case, typ, t)
                    un = self.hit_ops("unsync_map", case, typ, 1)
                    if st is None:
                        continue
                    m = lambda x: None if x is None else x / 1e6
                    self.out(f"| {case} | {'string (12 B)' if typ == 'string' else '1 KiB struct'} | {t} "
                             f"| {fmt(m(st))} | {fmt(m(vi))} | {fmt(m(sh))} | {fmt(m(mu))} | {fmt(m(un))} "
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

    # ---- targets (benchmarks/targets.json) -----------------------------------------------------
    def select(self, of, env):
        """The runs that `of` ({bench, args, threads}) names, in the order of its argument lists."""
        bench = expand(of["bench"], env)
        threads = expand(of.get("threads"), env)
        args = {k: expand(v, env) for k, v in of.get("args", {}).items()}
        combos = [{}]
        for k, v in args.items():
            combos = [dict(c, **{k: x}) for c in combos for x in (v if isinstance(v, list) else [v])]
        out = []
        for combo in combos:
            for r in self.runs:
                if base(r["name"]) != bench or (threads is not None and r.get("threads") != threads):
                    continue
                a = args_of(r["name"])
                if all(a.get(k) == v for k, v in combo.items()) and r not in out:
                    out.append(r)
        return out

    def loop_values(self, spec):
        if isinstance(spec, list):
            return spec
        if "threads_of" in spec:
            return sorted({r.get("threads") for r in self.runs if base(r["name"]) == spec["threads_of"]})
        return sorted({args_of(r["name"]).get(spec["arg_values"]) for r in self.runs
                       if base(r["name"]) == spec["bench"]} - {None})

    def leaves(self, spec, env):
        """(row, variables) for each row of a targets.json entry, its groups expanded."""
        if "rows" not in spec:
            yield spec, env
            return
        (var, values), = spec["for"].items()
        for x in self.loop_values(values):
            for row in spec["rows"]:
                yield from self.leaves(row, dict(env, **{var: x}))

    def target_rows(self, spec, env):
        for row, env in self.leaves(spec, env):
            got = self.measure(row, env)
            if got is None:
                continue
            _, shown, ok = got
            yield expand(row["target"], env), row["goal"], shown, verdict(ok) if "check" in row else "reported"

    def measure(self, spec, env):
        """(figure, measured cell, check passed) for one target row, or None without data."""
        runs = self.select(spec["of"], env)
        field = spec.get("field", "items_per_second")
        metric = spec["metric"]
        div = spec.get("divide_by")
        scaled = (lambda x: x) if div is None else (lambda x: None if x is None else x / div)
        check = spec.get("check")
        extra = {}
        if metric == "each":
            if not runs:
                return None
            values = [(r, scaled(r.get(field))) for r in runs]
            failing = [(r, x) for r, x in values if check and not passes(check, x, args_of(r["name"]))]
            if failing and "show_failing" in spec:
                shown = "; ".join(spec["show_failing"].format(v=fmt(x), **args_of(r["name"])) for r, x in failing)
            else:
                shown = spec["show"].format(values=", ".join(fmt(x) for _, x in values))
            return [x for _, x in values], shown, not failing
        if metric == "value":
            if not runs or field not in runs[0]:
                return None
            value = scaled(runs[0][field])
        elif metric == "max":
            if not runs:
                return None
            value = scaled(max(r.get(field, 0) for r in runs))
        elif metric == "ratio":
            over = self.select(spec["over"], env)
            if not runs or not over:
                return None
            value = ratio(runs[0].get(field), over[0].get(field))
            if value is None or not runs[0].get(field):
                return None
        elif metric == "round_trips":
            case = spec["case"]
            if not runs or "cmds_" + case not in runs[0]:
                return None
            value = round_trips(runs[0], case)
            extra["breakdown"] = breakdown(runs[0], case)
        else:
            raise ValueError(f"targets.json: unknown metric '{metric}'")
        ok = passes(check, value, {}) if check else None
        return value, spec["show"].format(v=fmt(value), **extra), ok

    def targets(self):
        rows = [row for spec in self.spec["targets"] for row in self.target_rows(spec, {})]
        if not rows:
            return
        self.out("### Targets")
        self.out()
        self.out("| target | goal | measured | |")
        self.out("|---|---|---|---|")
        for t, goal, got, v in rows:
            self.out(f"| {t} | {goal} | {got} | {v} |")
        self.out()

    # ---- peers: other libraries and floors, same run (benchmarks/targets.json "peers") ----------
    def figure(self, of, field, env, div):
        runs = self.select(of, env)
        if not runs or runs[0].get(field) is None:
            return None
        return runs[0][field] / div

    def peers(self):
        rows = []
        for spec in self.spec.get("peers", []):
            for row, env in self.leaves(spec, {}):
                field = expand(row.get("field", "items_per_second"), env)
                div = row.get("divide_by", 1)
                ours = self.figure(row["ours"], field, env, div)
                if ours is None:
                    continue
                for peer in row["peers"]:
                    theirs = self.figure(peer["of"], expand(peer.get("field", field), env), env, div)
                    if theirs is None:
                        continue
                    r = ratio(ours, theirs)
                    ahead = None if r is None or r == 1 else (r > 1) == (row["better"] == "higher")
                    rows.append((expand(row["case"], env), row["unit"], peer["peer"], ours, theirs, r,
                                 {None: "even", True: "ours", False: "peer"}[ahead]))
        if not rows:
            return
        self.out("### Peers and floors (same run)")
        self.out()
        notes = []
        c = self.context
        if "peer_go_version" in c:
            notes.append(f"Go: {c['peer_go_version']} (`sync.Map` hits with GOMAXPROCS = threads; "
                         f"`singleflight` with GOMAXPROCS = {c.get('peer_go_numcpu', '?')}).")
        if "peer_java_version" in c:
            notes.append(f"Java: {c['peer_java_version']}, {c.get('peer_java_gc', '?')}, max heap "
                         f"{c.get('peer_java_max_heap_mib', '?')} MiB, {c.get('peer_caffeine_jar', '?')} "
                         "(`get(key, loader)`, expireAfterWrite 24 h).")
        notes.append(f"Spread keys: {c.get('spread_keys', '?')} warm keys on every side. Bytes per entry: "
                     "stampede and `std::unordered_map`: growth of malloc's bytes in use (mallinfo2); "
                     "Go: HeapAlloc growth after runtime.GC; Java: heap used after System.gc() "
                     "(keys and values counted on every side). Ours copies the value out on a hit; "
                     "Go and Java return a reference.")
        self.out(" ".join(notes))
        self.out()
        self.out("| case | unit | peer | stampede | peer | stampede / peer | ahead |")
        self.out("|---|---|---|---:|---:|---:|---|")
        for case, unit, peer, ours, theirs, r, ahead in rows:
            self.out(f"| {case} | {unit} | {peer} | {fmt(ours)} | {fmt(theirs)} | {fmt(r)}x | {ahead} |")
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
        self.peers()
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
            for d in PLOT_DS:
                for s in PLOT_STRATEGIES:
                    f.write(f'"{labels[s]}"\n')
                    for n in NS:
                        r = self.find("BM_Wave_" + s, N=n, D_ms=d)
                        if r:
                            f.write(f"{n} {r['db_hits']} {r['db_hits_max']}\n")
                    f.write("\n\n")
        lat_dat = os.path.join(data_dir, "plot_latency.dat")
        with open(lat_dat, "w") as f:
            for d in PLOT_DS:
                f.write(f"# D = {d} ms, N = 256\n")
                for s in PLOT_STRATEGIES:
                    r = self.find("BM_Wave_" + s, N=256, D_ms=d) or {}
                    vals = [max(r.get(k, 0) / 1000, 1e-4) for k in ("lat_p50_us", "lat_p99_us", "lat_max_us")]
                    f.write(f'"{short[s]}" {vals[0]} {vals[1]} {vals[2]}\n')
                f.write("\n\n")
        wake_dat = os.path.join(data_dir, "plot_wakeup.dat")
        with open(wake_dat, "w") as f:
            for s in ["seed_lock_poll", "stampede_blocking"]:
                for d in PLOT_DS:
                    f.write(f'"{labels[s]}, D = {d} ms"\n')
                    for n in NS[1:]:
                        r = self.find("BM_Wave_" + s, N=n, D_ms=d)
                        if r and "wake_p50_us" in r:
                            f.write(f"{n} {r['wake_p50_us']} {r['wake_p99_us']}\n")
                    f.write("\n\n")
        profile = self.context.get("stampede_profile", "?")
        outs = [gnuplot("db_hits.gp", hits_dat, os.path.join(png_dir, "bench-db-hits.png"), profile=profile),
                gnuplot("caller_latency.gp", lat_dat, os.path.join(png_dir, "bench-caller-latency.png")),
                gnuplot("wakeup.gp", wake_dat, os.path.join(png_dir, "bench-wakeup.png"))]
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
            outs.append(gnuplot("redis_wakeup.gp", redis_dat, os.path.join(png_dir, "bench-redis-wakeup.png")))
        return outs


def gnuplot(script, datafile, outfile, **params):
    """Renders benchmarks/plots/<script> with its datafile, outfile and string params set."""
    quote = lambda x: "'" + str(x).replace("'", "''") + "'"
    params = dict(params, datafile=datafile, outfile=outfile)
    assign = "; ".join(f"{k}={quote(v)}" for k, v in params.items())
    subprocess.run(["gnuplot", "-e", assign, os.path.join(HERE, "plots", script)], check=True)
    return outfile


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("json", nargs="+")
    p.add_argument("--out", required=True, help="Markdown summary to write")
    p.add_argument("--plots", help="directory for the PNG plots (needs gnuplot)")
    p.add_argument("--targets", default=os.path.join(HERE, "targets.json"),
                   help="the targets and peer comparisons as data (default: targets.json beside this script)")
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
    with open(a.targets) as f:
        spec = json.load(f)
    rep = Report(runs, context, machine, spec)
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
