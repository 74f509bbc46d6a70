#!/usr/bin/env python3
"""Prints one metric from an etcd member's /metrics page: etcd_metric.py HOST:PORT NAME"""
import sys
import urllib.request

endpoint, name = sys.argv[1], sys.argv[2]
with urllib.request.urlopen(f"http://{endpoint}/metrics", timeout=5) as page:
    for line in page.read().decode().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            print(line.rsplit(" ", 1)[1])
            break
    else:
        print(0)
