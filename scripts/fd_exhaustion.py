#!/usr/bin/env python3
"""Holds more TCP connections (DNS and metrics) than a proxy started with 1,024 descriptors can have,
then checks that it still resolves names it must ask the upstream for, and that it does not spin.

    fd_exhaustion.py --port 5053 --metrics-port 9153 --pid 1234

Opens 1,100 DNS connections from 80 loopback addresses (under the per-client cap) and 100 to the
metrics listener, waits two seconds, sends ten unique-name queries over UDP (cache misses), and
measures the proxy's CPU over three seconds. Prints one JSON object; exits 1 unless every query got
NOERROR and the CPU stayed under --max-cpu (a share of one core).
"""
import argparse
import json
import os
import resource
import socket
import struct
import sys
import time


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def udp_query(port, name):
    wire = b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\x00"
    message = struct.pack(">HHHHHH", 0x5151, 0x0100, 1, 0, 0, 0) + wire + b"\x00\x01\x00\x01"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(3)
        sock.sendto(message, ("127.0.0.1", port))
        try:
            return sock.recv(4096)[3] & 0x0F
        except socket.timeout:
            return None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--max-cpu", type=float, default=0.3)
    args = parser.parse_args()
    # The attacks hold about 1,300 sockets; root may raise the hard limit, others need it high enough.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(hard, 4096), max(hard, 4096)))
    except (ValueError, OSError):
        sys.exit(f"{sys.argv[0]}: needs 4,096 file descriptors, and the hard limit is {hard} (raise it with ulimit -Hn)")

    held = []
    for index in range(1100):
        sock = socket.socket()
        sock.bind((f"127.0.3.{index % 80 + 1}", 0))
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", args.port))
        held.append(sock)
        if index % 40 == 39:
            time.sleep(0.05)  # under the per-client rate of new connections
    for _ in range(100):
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", args.metrics_port))
        held.append(sock)
    time.sleep(2)
    codes = [udp_query(args.port, f"fd{index}-{int(time.time())}.unique.test") for index in range(10)]
    before = cpu_seconds(args.pid)
    time.sleep(3)
    cpu = (cpu_seconds(args.pid) - before) / 3
    for sock in held:
        sock.close()
    ok = all(code == 0 for code in codes) and cpu <= args.max_cpu
    print(json.dumps({"attack": "descriptors", "connections": len(held), "miss_rcodes": codes, "cpu_share": round(cpu, 3), "ok": ok}))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
