#!/usr/bin/env python3
"""Runs one benchmark program and adds what one operation cost, on both sides.

    bench_measure.py --etcd-pid PID --endpoint HOST:PORT -- PROGRAM ARGS...

The program prints one JSON object (its last line) with "ops", the operations it
completed. The same figures are taken from outside for etcdlock's lockbench and
for the Go peer, so that they compare:
  client_cpu_ms_per_op        the program's user + system CPU (its rusage)
  client_switches_per_op      its context switches, voluntary and not: each is
                              a thread that slept and was woken, or was preempted
  server_cpu_ms_per_op        etcd's user + system CPU over the run (/proc/PID/stat)
  server_switches_per_op      etcd's context switches, summed over its threads
  server_requests_per_op      gRPC messages etcd received, by method
                              (grpc_server_msg_received_total; a stream's
                              messages, e.g. LeaseKeepAlive, count one by one)
  server_events_per_op        watch events etcd sent
The program's own start and setup are included on both sides. A program that
marks its timed window on stderr (lockbench: "lockbench: timed window begins"
and "... ends") also gets the same CPU figures over the window alone:
  window_client_cpu_ms_per_op  the program's CPU between the marks (/proc/PID/stat)
  window_server_cpu_ms_per_op  etcd's CPU between the marks
With 64 managers, their setup, warm-up and close cost as much CPU as a third of
the timed acquisitions; the Go peer marks nothing, so only the whole-run
figures compare across the two programs.
"""
import argparse
import glob
import json
import os
import re
import subprocess
import sys
import threading
import urllib.request

TICKS_PER_S = os.sysconf("SC_CLK_TCK")
WINDOW_MARK = "lockbench: timed window "


def cpu_s(pid):
    """User + system CPU of a process and all its threads, live or ended."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    # After the command's ")": field 3 is the state, so utime and stime
    # (fields 14 and 15 of proc(5)) are at 11 and 12.
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S


def etcd_switches(pid):
    total = 0
    for status in glob.glob(f"/proc/{pid}/task/*/status"):
        try:
            with open(status) as lines:
                for line in lines:
                    if "ctxt_switches:" in line:  # voluntary_ and nonvoluntary_
                        total += int(line.split()[-1])
        except FileNotFoundError:
            pass  # a thread that ended meanwhile
    return total


def etcd_metrics(endpoint):
    received = {}
    events = 0.0
    with urllib.request.urlopen(f"http://{endpoint}/metrics", timeout=5) as page:
        for line in page.read().decode().splitlines():
            if line.startswith("grpc_server_msg_received_total{"):
                method = re.search(r'grpc_method="([^"]+)"', line).group(1)
                received[method] = received.get(method, 0.0) + float(line.rsplit(" ", 1)[1])
            elif line.startswith("etcd_debugging_mvcc_events_total "):
                events = float(line.rsplit(" ", 1)[1])
    return received, events


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--etcd-pid", type=int, required=True)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command

    cpu_before = cpu_s(args.etcd_pid)
    switches_before = etcd_switches(args.etcd_pid)
    received_before, events_before = etcd_metrics(args.endpoint)
    program = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # (program CPU, etcd CPU) at each mark of the timed window, sampled as the
    # mark is read; the program's other lines on stderr are not kept.
    marks = {}

    def read_marks():
        for raw in program.stderr:
            line = raw.decode(errors="replace").strip()
            if line.startswith(WINDOW_MARK):
                try:
                    marks[line[len(WINDOW_MARK):]] = (cpu_s(program.pid), cpu_s(args.etcd_pid))
                except FileNotFoundError:
                    pass  # the program ended meanwhile: no window figures

    reader = threading.Thread(target=read_marks, daemon=True)
    reader.start()
    output = program.stdout.read().decode()
    reader.join()
    _, status, usage = os.wait4(program.pid, 0)
    cpu_after = cpu_s(args.etcd_pid)
    switches_after = etcd_switches(args.etcd_pid)
    received_after, events_after = etcd_metrics(args.endpoint)

    lines = [line for line in output.splitlines() if line.startswith("{")]
    if not lines:
        print(f"bench_measure: no result from {command[0]} (exit status {status >> 8})", file=sys.stderr)
        sys.exit(1)
    run = json.loads(lines[-1])
    ops = run.get("ops") or 0
    if ops:
        run["client_cpu_ms_per_op"] = round((usage.ru_utime + usage.ru_stime) * 1000 / ops, 4)
        run["client_switches_per_op"] = round((usage.ru_nvcsw + usage.ru_nivcsw) / ops, 3)
        run["server_cpu_ms_per_op"] = round((cpu_after - cpu_before) * 1000 / ops, 4)
        run["server_switches_per_op"] = round((switches_after - switches_before) / ops, 3)
        run["server_events_per_op"] = round((events_after - events_before) / ops, 3)
        run.setdefault("server_events_per_acquisition", run["server_events_per_op"])
        requests = {method: round((count - received_before.get(method, 0.0)) / ops, 3)
                    for method, count in received_after.items()}
        run["server_requests_per_op"] = {method: n for method, n in sorted(requests.items()) if n > 0}
        if "begins" in marks and "ends" in marks:
            (client_begin, etcd_begin), (client_end, etcd_end) = marks["begins"], marks["ends"]
            run["window_client_cpu_ms_per_op"] = round((client_end - client_begin) * 1000 / ops, 4)
            run["window_server_cpu_ms_per_op"] = round((etcd_end - etcd_begin) * 1000 / ops, 4)
    print(json.dumps(run))
    sys.exit(status >> 8 if os.WIFEXITED(status) else 1)


if __name__ == "__main__":
    main()
