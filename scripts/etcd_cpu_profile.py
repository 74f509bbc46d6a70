#!/usr/bin/env python3
"""Where etcd's CPU goes per operation of a benchmark program, by stage.

    etcd_cpu_profile.py --endpoint HOST:PORT [--seconds 12] [--delay 4] -- PROGRAM ARGS...

etcd must run with --enable-pprof (scripts/bench's etcd does not). The program
runs against it and prints one JSON object (its last line) with "ops_per_s";
`--delay` seconds after it starts, etcd's CPU profile is taken for `--seconds`
(the program must still be in its timed loop then). Each sample's stack is put
in the first stage below that it passes through, and each stage's samples are
divided by the operations of the profile's window (ops_per_s times its length,
so the rate must be steady; a run shorter than delay + seconds is refused).
Needs `go tool pprof` (golang-go); Debian's etcd binary keeps Go's symbol tables.
Prints a Markdown row per stage, in microseconds of etcd CPU per operation.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request

# First match wins, looked for anywhere in the stack. The order matters: the
# apply loop runs inside raft's goroutines, the handlers inside gRPC's.
STAGES = [
    ("WAL: write and fsync", ["wal.(*WAL).Save", "wal.(*WAL).sync"]),
    ("raft: proposals, ReadIndex, ready loop", ["etcdserver.(*raftNode).start", "go.etcd.io/etcd/raft."]),
    ("backend commit (bbolt)", ["backend.(*backend).run", "go.etcd.io/bbolt."]),
    ("apply: Txn", ["applierV3backend).Txn"]),
    ("apply: the rest", ["EtcdServer).applyAll", "EtcdServer).apply"]),
    ("Range handler (linearizable read)", ["_KV_Range_Handler", "linearizableReadLoop", "EtcdServer).Range"]),
    ("write handlers (propose, wait)", ["_KV_Txn_Handler", "_KV_DeleteRange_Handler", "_KV_Put_Handler"]),
    ("watch", ["mvcc.(*watchableStore)", "v3rpc.(*serverWatchStream)", "_Watch_Handler"]),
    ("lease", ["go.etcd.io/etcd/lease.", "_Lease_"]),
    ("gRPC: read and dispatch", ["http2Server).HandleStreams", "http2.(*Framer)", "serveStreams", "handleStream"]),
    ("gRPC: write", ["loopyWriter", "http2Server).Write", "bufWriter"]),
    ("garbage collection", ["gcBgMarkWorker", "gcDrain", "runtime.bgsweep", "runtime.bgscavenge"]),
    ("Go scheduler, idle spinning", ["runtime.schedule", "runtime.findRunnable", "runtime.mcall", "runtime.sysmon"]),
]
UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6}


def by_stage(traces):
    """Seconds of CPU per stage, from `go tool pprof -traces` output."""
    seconds = {}
    for block in traces.split("-----------+-------------------------------------------------------")[1:]:
        lines = [line.strip() for line in block.strip().splitlines() if line.strip()]
        head = re.match(r"([\d.]+)(s|ms|us|µs)\s+(.*)", lines[0]) if lines else None
        if not head:
            continue
        stack = [head.group(3)] + lines[1:]
        stage = next((name for name, marks in STAGES if any(m in f for f in stack for m in marks)), "other")
        seconds[stage] = seconds.get(stage, 0.0) + float(head.group(1)) * UNITS[head.group(2)]
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--seconds", type=int, default=12)
    parser.add_argument("--delay", type=float, default=4)
    parser.add_argument("--etcd-binary", default="/usr/bin/etcd")
    parser.add_argument("program", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    program = args.program[1:] if args.program[:1] == ["--"] else args.program
    if not program:
        parser.error("no program to run")

    run = subprocess.Popen(program, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    output = []
    reader = threading.Thread(target=lambda: output.append(run.stdout.read()))
    reader.start()
    time.sleep(args.delay)
    url = f"http://{args.endpoint}/debug/pprof/profile?seconds={args.seconds}"
    with urllib.request.urlopen(url, timeout=args.seconds + 30) as reply:
        profile = reply.read()
    ended_during_profile = run.poll() is not None
    reader.join()
    if run.wait() != 0:
        sys.exit(f"etcd_cpu_profile: {program[0]} exited with {run.returncode}")
    if ended_during_profile:
        sys.exit("etcd_cpu_profile: the program ended before the profile did; give it more operations")
    result = json.loads(output[0].strip().splitlines()[-1])
    ops = result["ops_per_s"] * args.seconds
    path = "/tmp/etcd_cpu_profile.%d.pprof" % run.pid
    with open(path, "wb") as file:
        file.write(profile)
    try:
        traces = subprocess.run(["go", "tool", "pprof", "-traces", args.etcd_binary, path], check=True,
                                capture_output=True, text=True).stdout
    finally:
        os.unlink(path)
    seconds = by_stage(traces)
    print(json.dumps({"ops_per_s": result["ops_per_s"], "profile_s": args.seconds,
                      "us_per_op": {stage: round(value / ops * 1e6, 1) for stage, value in seconds.items()},
                      "all_us_per_op": round(sum(seconds.values()) / ops * 1e6, 1)}))


if __name__ == "__main__":
    main()
