#!/usr/bin/env python3
"""Turns the JSON lines of scripts/bench into docs/benchmarks.md and the plot data.

Each figure is the median over the rounds of one run, on one machine, against one
etcd; the ratios compare figures measured in that same run.
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
from collections import defaultdict


def load(path):
    runs = defaultdict(list)
    with open(path) as lines:
        for line in lines:
            line = line.strip()
            if not line:
                continue
            run = json.loads(line)
            who = "ours" if run.get("implementation") == "etcdlock" else "go"
            mode = run["mode"]
            if run.get("metrics") is False:
                mode += "/metrics-off"
            if run.get("abseil_deadlock_detection") is False:
                mode += "/abseil-off"
            runs[(who, mode, run.get("clients", 1))].append(run)
    return runs


def median(runs, key, stat=None):
    values = []
    for run in runs:
        value = run.get(key)
        if stat is not None:
            value = value.get(stat) if isinstance(value, dict) else None
        if value is not None:
            values.append(value)
    return statistics.median(values) if values else None


def multilock_section(runs):
    """The multi-lock against two locks taken in order (lockbench --mode multilock)."""
    rounds = runs.get(("ours", "multilock", 8), [])
    if not rounds:
        return []

    def of(variant, key):
        return median([run[variant] for run in rounds], key)

    multi, ordered = of("multi_lock", "ops_per_s"), of("two_locks_in_order", "ops_per_s")
    multi_writes, ordered_writes = of("multi_lock", "writes_per_acquisition"), of("two_locks_in_order",
                                                                                  "writes_per_acquisition")
    has_async = all("async_multi_lock" in run for run in rounds)

    def of_async(key, digits=1):
        return fmt(of("async_multi_lock", key), digits) if has_async else "n/a"

    correct = all(run.get("correct") for run in rounds)
    out = ["## Two names at once: MultiLock against two Locks taken in order\n",
           "8 managers, each taking two of three names per turn, named in ascending order by half of them and "
           f"descending by the others; medians of {len(rounds)} rounds. Writes are etcd's committed proposals "
           "per acquisition; one Lock's acquisition costs 2. The asynchronous column runs the same MultiLocks "
           "as one chain of `async_lock()` per manager (each handler takes its turn and asks again).\n",
           "| measure | MultiLock | MultiLock, asynchronous | two Locks in order | target |",
           "|---|---:|---:|---:|---|",
           f"| acquisitions/s | {fmt(multi)} | {of_async('ops_per_s')} | {fmt(ordered)} | at least as fast: "
           f"{verdict(multi is not None and ordered is not None and multi >= ordered)} "
           f"({fmt(multi / ordered if multi and ordered else None, 2)}×) |",
           f"| writes per acquisition | {fmt(multi_writes, 2)} | {of_async('writes_per_acquisition', 2)} | "
           f"{fmt(ordered_writes, 2)} | as one Lock (2): "
           f"{verdict(multi_writes is not None and multi_writes <= 2.05)} |",
           f"| Txn requests per acquisition | {fmt(of('multi_lock', 'txn_per_acquisition'), 2)} | "
           f"{of_async('txn_per_acquisition', 2)} | {fmt(of('two_locks_in_order', 'txn_per_acquisition'), 2)} | |",
           f"| Range requests per acquisition | {fmt(of('multi_lock', 'range_per_acquisition'), 2)} | "
           f"{of_async('range_per_acquisition', 2)} | {fmt(of('two_locks_in_order', 'range_per_acquisition'), 2)} | |",
           f"| overlaps, errors, deadlocks | {'none' if correct else '**some**'} | | | none |",
           ""]
    return out


def async_section(runs):
    """The asynchronous API: pending waiters (asyncwait) and a contended run of handler chains."""
    waits = runs.get(("ours", "asyncwait", 1), [])
    chains = runs.get(("ours", "asynccontended", 8), [])
    threads = runs.get(("ours", "contended", 8), [])
    if not waits and not chains:
        return []
    out = ["## The asynchronous API\n"]
    if waits:
        run = waits[0]
        out += [f"{run['pending']:,} asynchronous acquisitions pending at once on one manager, behind holders that a "
                "raw lease keeps; then that lease is revoked and every waiter served (each releases at once).\n",
                "| measure | on as many names | on one name | target |",
                "|---|---:|---:|---|"]
        names, one = run.get("names", {}), run.get("one_name", {})

        def row(label, key, target="", digits=0):
            out.append(f"| {label} | {fmt(names.get(key), digits)} | {fmt(one.get(key), digits)} | {target} |")

        row("threads of the process before", "threads_before")
        row("threads while they wait", "threads_while_pending", "no growth with the waiters")
        row("heap per pending waiter (malloc's bytes in use ÷ waiters)", "heap_bytes_per_pending_waiter")
        row("RSS growth per pending waiter (bytes; the second phase reuses the first's memory)",
            "rss_bytes_per_pending_waiter")
        row("time to queue them all (s)", "queue_s", digits=2)
        row("time to serve them all once the holders go (s)", "serve_all_s", digits=2)
        row("served per second", "served_per_s")
        out.append("")
    if chains:
        sync = median(threads, "ops_per_s") if threads else None
        asynchronous = median(chains, "ops_per_s")
        out += ["8 managers on one name, each a chain of asynchronous acquisitions (each handler checks the "
                "critical section, releases and asks again), beside the blocking contended run of 8 "
                f"(medians of {len(chains)} rounds):\n",
                "| measure | asynchronous | blocking |",
                "|---|---:|---:|",
                f"| acquisitions/s | {fmt(asynchronous)} | {fmt(sync)} |",
                f"| client CPU per acquisition (ms) | {fmt(median(chains, 'client_cpu_ms_per_op'), 3)} | "
                f"{fmt(median(threads, 'client_cpu_ms_per_op'), 3) if threads else 'n/a'} |",
                f"| etcd CPU per acquisition (ms) | {fmt(median(chains, 'server_cpu_ms_per_op'), 3)} | "
                f"{fmt(median(threads, 'server_cpu_ms_per_op'), 3) if threads else 'n/a'} |",
                f"| overlaps, lost updates | {'none' if all(r.get('correct') for r in chains) else '**some**'} | |",
                ""]
    return out


def machine():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    def version(command):
        try:
            return subprocess.run(command, capture_output=True, text=True, check=False).stdout.strip().splitlines()[0]
        except (OSError, IndexError):
            return "unknown"
    return {
        "cpu": f"{os.cpu_count()} cores, {cpu}",
        "memory": f"{memory:.0f} GiB",
        "kernel": platform.release(),
        "grpc": version(["dpkg-query", "-W", "-f=${Version}", "libgrpc++-dev"]),
        "go": version(["go", "version"]),
    }


def fmt(value, digits=1):
    if value is None:
        return "n/a"
    if isinstance(value, float) and value >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def verdict(ok):
    return "met" if ok else "**not met**"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("results")
    parser.add_argument("markdown")
    parser.add_argument("plot_data")
    parser.add_argument("--etcd", default="etcd")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    runs = load(args.results)

    def get(who, mode, clients=1, key="ops_per_s", stat=None):
        return median(runs.get((who, mode, clients), []), key, stat)

    raw = get("ours", "raw")
    putdel = get("go", "putdel")
    ours_unc = get("ours", "uncontended")
    go_unc = get("go", "uncontended")
    raw_write_ms = get("ours", "raw", key="unlock_ms", stat="p50")  # one DeleteRange: one raft write
    rows = []
    rows.append(("raw floor: Txn + DeleteRange, our client (cycles/s)", raw, None, None, ""))
    rows.append(("raw Put + Delete, Go client (cycles/s)", None, putdel, None, ""))
    unc_vs_raw = ours_unc / raw if ours_unc and raw else None
    unc_vs_go = ours_unc / go_unc if ours_unc and go_unc else None
    rows.append(("uncontended lock+unlock (cycles/s)", ours_unc, go_unc, unc_vs_go,
                 f"≥ 1.0× Go: {verdict(unc_vs_go is not None and unc_vs_go >= 1.0)}; "
                 f"{fmt(unc_vs_raw, 2)}× our raw floor (target ≥ 0.95×): "
                 f"{verdict(unc_vs_raw is not None and unc_vs_raw >= 0.95)}"))
    plot = []
    eight = get("ours", "contended", 8)
    for clients in (2, 4, 8, 16, 32, 64, 128):
        ours = get("ours", "contended", clients)
        go = get("go", "contended", clients)
        plot.append((clients, ours, go))
        ratio = ours / go if ours and go else None
        target = ""
        if clients == 8:
            target = f"≥ 10× Go: {verdict(ratio is not None and ratio >= 10)}"
        elif clients == 64:
            flat = ours / eight if ours and eight else None
            target = (f"≥ 1.5× Go: {verdict(ratio is not None and ratio >= 1.5)}; {fmt(flat, 2)}× our 8-process "
                      f"figure (target ≥ 0.8×): {verdict(flat is not None and flat >= 0.8)}")
        elif clients in (2, 32, 128):
            target = f"ahead of Go: {verdict(ratio is not None and ratio > 1)}"
        rows.append((f"contended, one name, {clients} processes (acquisitions/s)", ours, go, ratio, target))
    for clients in (8, 64):
        ours_events = get("ours", "contended", clients, "server_events_per_acquisition")
        go_events = get("go", "contended", clients, "server_events_per_acquisition")
        rows.append((f"contended, {clients} processes: watch events etcd sent per acquisition", ours_events, go_events,
                     None, f"≤ 2 whatever the number of waiters: {verdict(ours_events is not None and ours_events <= 2)}"))
    ours_wait = get("ours", "contended", 8, "lock_ms", "p50")
    go_wait = get("go", "contended", 8, "lock_ms", "p50")
    rows.append(("contended, 8 processes: wait p50 (ms)", ours_wait, go_wait,
                 go_wait / ours_wait if ours_wait and go_wait else None, "lower is better; ratio is Go ÷ ours"))
    handoff = get("ours", "contended", 8, "handoff_ms", "p50")
    go_handoff = get("go", "contended", 8, "handoff_ms", "p50")
    rows.append(("contended, 8 processes: hand-over p50 (ms)", handoff, go_handoff, None,
                 f"≤ 3× one raw write ({fmt(raw_write_ms, 3)} ms): "
                 f"{verdict(handoff is not None and raw_write_ms is not None and handoff <= 3 * raw_write_ms)}"))
    rows.append(("hand-over between 2 processes, p50 (ms)", get("ours", "handoff", 2, "handoff_ms", "p50"), None, None, ""))
    ours_many = get("ours", "manykeys", 32)
    go_many = get("go", "manykeys", 32)
    many_ratio = ours_many / go_many if ours_many and go_many else None
    rows.append(("manykeys, 32 threads, one manager / shared session (cycles/s)", ours_many, go_many, many_ratio,
                 f"≥ 1.2× Go: {verdict(many_ratio is not None and many_ratio >= 1.2)}"))
    for mode, clients, what in (("uncontended", 1, "uncontended lock+unlock"),
                                ("manykeys", 32, "manykeys, 32 threads")):
        on = get("ours", mode, clients)
        off = get("ours", mode + "/metrics-off", clients)
        cost = 1 - on / off if on and off else None
        rows.append((f"{what}, metrics off (cycles/s)", off, None, None,
                     f"metrics on cost {fmt(cost * 100 if cost is not None else None, 1)}% "
                     f"(target < 2%): {verdict(cost is not None and cost < 0.02)}"))
    rows.append(("semaphore, 8 processes, 2 permits (acquisitions/s)", get("ours", "semaphore", 8), None, None, ""))
    rows.append(("read-write lock, 8 processes, 20% writers (turns/s)", get("ours", "rwlock", 8), None, None, ""))
    reentrant = get("ours", "reentrant")
    rows.append(("reentrant relock+unlock (per s)", reentrant, None, None,
                 f"≥ 1,000,000/s: {verdict(reentrant is not None and reentrant >= 1e6)}"))

    # What one operation costs, on both sides (scripts/bench_measure.py): the
    # same figures, taken from outside, for both programs.
    cost_modes = [("raw floor (ours: Txn + DeleteRange; Go: Put + Delete)", ("raw", "putdel"), 1),
                  ("uncontended", ("uncontended", "uncontended"), 1)]
    cost_modes += [(f"contended, {n}", ("contended", "contended"), n) for n in (8, 64)]
    cost_modes += [("manykeys, 32 threads", ("manykeys", "manykeys"), 32)]
    cost_rows = []
    for what, (our_mode, go_mode), clients in cost_modes:
        def cost(who, mode, key):
            return get(who, mode, clients, key)
        def requests(who, mode):
            merged = defaultdict(list)
            for run in runs.get((who, mode, clients), []):
                for method, count in (run.get("server_requests_per_op") or {}).items():
                    merged[method].append(count)
            return ", ".join(f"{method} {statistics.median(counts):.2f}" for method, counts in sorted(merged.items())
                             if statistics.median(counts) >= 0.01) or "n/a"
        cost_rows.append((what,
                          [cost("ours", our_mode, "client_cpu_ms_per_op"), cost("ours", our_mode, "server_cpu_ms_per_op"),
                           cost("go", go_mode, "client_cpu_ms_per_op"), cost("go", go_mode, "server_cpu_ms_per_op"),
                           cost("ours", our_mode, "client_switches_per_op"),
                           cost("go", go_mode, "client_switches_per_op")],
                          requests("ours", our_mode), requests("go", go_mode)))

    # Issue 22's CPU targets: an acquisition against the raw floor's cycle,
    # both ours, over the timed window alone (no managers' setup or close).
    window_rows = []
    floor_client = get("ours", "raw", 1, "window_client_cpu_ms_per_op")
    floor_etcd = get("ours", "raw", 1, "window_server_cpu_ms_per_op")
    for what, mode, clients in (("uncontended", "uncontended", 1), ("contended, 8", "contended", 8),
                                ("contended, 64", "contended", 64), ("manykeys, 32 threads", "manykeys", 32),
                                ("contended, 8, abseil's deadlock detection off", "contended/abseil-off", 8),
                                ("manykeys, 32 threads, abseil's deadlock detection off", "manykeys/abseil-off", 32)):
        client = get("ours", mode, clients, "window_client_cpu_ms_per_op")
        etcd = get("ours", mode, clients, "window_server_cpu_ms_per_op")
        client_ratio = client / floor_client if client and floor_client else None
        etcd_ratio = etcd / floor_etcd if etcd and floor_etcd else None
        target = ""
        if mode.startswith("contended"):
            target = (f"client ≤ 1.2×: {verdict(client_ratio is not None and client_ratio <= 1.2)}; "
                      f"etcd ≤ 1.15×: {verdict(etcd_ratio is not None and etcd_ratio <= 1.15)}")
        window_rows.append((what, client, client_ratio, etcd, etcd_ratio, target))

    scale_runs = runs.get(("ours", "scale", 1), [])
    scale = scale_runs[0] if scale_runs else None

    info = machine()
    out = []
    out.append("# Benchmarks: etcdlock against etcd's own Go lock\n")
    out.append("Generated by `scripts/bench` on "
               f"{datetime.date.today().isoformat()}: both benchmarks ran in alternation against one fresh "
               f"single-member etcd (fsync on) on loopback; each figure is the median of {args.repeats} "
               "rounds of one run. Absolute numbers drift from machine to machine and run to run; the "
               "ratios, measured in one run, are what compares.\n")
    out.append(f"- Machine: {info['cpu']}, {info['memory']}, Linux {info['kernel']}")
    out.append(f"- etcd: {args.etcd}; etcdlock over gRPC {info['grpc']}; the peer built with {info['go']}")
    out.append("- Peer: `../shared/peers/go-mutex-bench`, etcd 3.4's `clientv3/concurrency.Mutex`\n")
    out.append("| measure | etcdlock | Go Mutex | ratio | target |")
    out.append("|---|---:|---:|---:|---|")
    for name, ours, go, ratio, target in rows:
        out.append(f"| {name} | {fmt(ours, 3 if isinstance(ours, float) and ours < 100 else 1)} | "
                   f"{fmt(go, 3 if isinstance(go, float) and go < 100 else 1)} | "
                   f"{fmt(ratio, 2) + '×' if ratio else ''} | {target} |")
    out.append("\n![acquisitions per second against contenders](contended.png)\n")
    out.append("## What one operation costs, client and etcd\n")
    out.append("CPU (user + system) and context switches per operation (an acquisition, or a raw "
               "cycle), measured from outside both programs alike (`scripts/bench_measure.py`): the "
               "program's rusage and etcd's `/proc` counters over the run, divided by the operations it "
               "reports; requests are the gRPC messages etcd received per operation, by method.\n")
    out.append("| work | etcdlock client CPU (ms) | etcdlock's etcd CPU (ms) | Go client CPU (ms) | "
               "Go's etcd CPU (ms) | etcdlock client switches | Go client switches | etcdlock requests | "
               "Go requests |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---|---|")
    for what, figures, ours_requests, go_requests in cost_rows:
        cells = " | ".join(fmt(value, 3) for value in figures)
        out.append(f"| {what} | {cells} | {ours_requests} | {go_requests} |")
    out.append("")
    out.append("### Over the timed window alone, against the raw floor\n")
    out.append("The same CPU, taken between the marks that lockbench prints as its timed window begins "
               "and ends, so without the managers' setup, warm-up and close (with 64 managers these cost "
               "as much as a third of the timed acquisitions). The Go peer marks no window, so these "
               "figures compare etcdlock with its own raw floor, the cycle of two writes that any FIFO "
               "lock on etcd needs, as issue 22's targets do.\n")
    out.append("| work | client CPU (ms) | × the floor's | etcd CPU (ms) | × the floor's | target |")
    out.append("|---|---:|---:|---:|---:|---|")
    out.append(f"| raw floor: Txn + DeleteRange | {fmt(floor_client, 3)} | 1.00× | {fmt(floor_etcd, 3)} | 1.00× | |")
    for what, client, client_ratio, etcd, etcd_ratio, target in window_rows:
        out.append(f"| {what} | {fmt(client, 3)} | {fmt(client_ratio, 2)}× | {fmt(etcd, 3)} | "
                   f"{fmt(etcd_ratio, 2)}× | {target} |")
    out.append("")
    if scale:
        tenths = scale.get("acquire_ms_by_tenth", [])
        growth = tenths[-1] / tenths[0] if len(tenths) >= 2 and tenths[0] else None
        per_lock = scale.get("rss_bytes_per_held_lock")
        out.append(f"## One manager holding {scale['held_locks']:,} locks\n")
        out.append("| measure | value | target |")
        out.append("|---|---:|---|")
        out.append(f"| leases of the held locks (from their keys) | {scale['distinct_leases_of_held_locks']} | 1 |")
        out.append(f"| leases granted (etcd's count) | {fmt(scale['server_leases_granted'], 0)} | 1 |")
        out.append(f"| keepalive streams open (etcd's count; one per renewal, closed after it) | {fmt(scale['server_open_keepalive_streams'], 0)} | at most 1 |")
        out.append(f"| watch streams open (etcd's count) | {fmt(scale['server_open_watch_streams'], 0)} | 1 |")
        out.append(f"| watchers on that stream (etcd's count) | {fmt(scale['server_watchers'], 0)} | one per lock name |")
        out.append(f"| mean acquire time, first and last tenth (ms) | {fmt(tenths[0], 3) if tenths else 'n/a'} → "
                   f"{fmt(tenths[-1], 3) if tenths else 'n/a'} ({fmt(growth, 2)}×) | does not grow with K |")
        out.append(f"| client memory per held lock (RSS growth ÷ K) | {per_lock:,} bytes | ≤ 2,048 bytes: "
                   f"{verdict(per_lock is not None and per_lock <= 2048)} |")
        heap = scale.get("heap_bytes_per_held_lock")
        if heap is not None:
            out.append(f"| heap per held lock (malloc's bytes in use ÷ K) | {heap:,} bytes | |")
        out.append("")
    out.extend(multilock_section(runs))
    out.extend(async_section(runs))
    notes = os.path.join(os.path.dirname(args.markdown), "benchmarks-notes.md")
    if os.path.exists(notes):
        with open(notes) as text:
            out.append(text.read())
    with open(args.markdown, "w") as markdown:
        markdown.write("\n".join(out) + "\n")
    with open(args.plot_data, "w") as data:
        data.write("# contenders etcdlock go\n")
        for clients, ours, go in plot:
            data.write(f"{clients} {ours or 0} {go or 0}\n")


if __name__ == "__main__":
    main()
