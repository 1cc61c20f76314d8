#!/usr/bin/env python3
"""Hostile TCP clients against a DNS server on 127.0.0.1, each bounded in time, with the server's
memory and a legitimate client's service measured while they run. Prints one JSON object per attack
and exits 1 when one of them breaks its bound.

    tcp_attacks.py --port 5053 --pid 1234 [--attacks slow-reader,slowloris,big-prefix]

slow-reader   one connection pipelines cache-hit queries for a large TXT reply and never reads; the
              server must close it (write stall) and its RSS must not grow by more than --max-growth-mb.
slowloris     20 client addresses (127.0.0.2-21) keep 64 connections each, sending one octet a second;
              meanwhile a client on 127.0.0.100 asks a question over TCP every 0.25 s and must get at
              least --min-served of its answers.
big-prefix    300 connections send a length prefix of 65,535 and then one octet a second; the server
              must close them within the query read timeout (6 s allowed) without growing.
descriptors   (not by default; for a server started with 1,024 descriptors, and --metrics-port) 1,100
              DNS connections from 80 addresses and 100 to the metrics listener; ten unique-name
              queries over UDP must get NOERROR, and the server's CPU stay under --max-cpu.
"""
import argparse
import json
import os
import resource
import select
import socket
import struct
import sys
import time


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def readable_among(socks, timeout):
    """The sockets of `socks` with something to read (data, EOF or an error), by poll: select() stops at
    descriptor 1,024."""
    if not socks:
        return []
    poller = select.poll()
    by_fd = {sock.fileno(): sock for sock in socks}
    for fd in by_fd:
        poller.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
    return [by_fd[fd] for fd, _ in poller.poll(timeout * 1000)]


def query(name, qtype=1, qid=0x1234):
    wire = b"".join(bytes([len(label)]) + label.encode() for label in name.strip(".").split(".")) + b"\x00"
    return struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + wire + struct.pack(">HH", qtype, 1)


def framed(message):
    return struct.pack(">H", len(message)) + message


def tcp_ask(port, name, source="127.0.0.100", timeout=1.0):
    """One query over a fresh TCP connection; True when a reply with our ID came back."""
    try:
        with socket.socket() as sock:
            sock.settimeout(timeout)
            sock.bind((source, 0))
            sock.connect(("127.0.0.1", port))
            sock.sendall(framed(query(name, qid=0x4242)))
            data = b""
            while len(data) < 4:
                chunk = sock.recv(4096)
                if not chunk:
                    return False
                data += chunk
            return data[2:4] == b"\x42\x42"
    except OSError:
        return False


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def udp_rcode(port, name):
    """The response code of one UDP query, or None without a reply within 3 s."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(3)
        sock.sendto(query(name, qid=0x5151), ("127.0.0.1", port))
        try:
            return sock.recv(4096)[3] & 0x0F
        except socket.timeout:
            return None


def descriptors(args):
    if not args.metrics_port:
        sys.exit("tcp_attacks.py: the descriptors attack needs --metrics-port")
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
    codes = [udp_rcode(args.port, f"fd{index}-{int(time.time())}.unique.test") for index in range(10)]
    before = cpu_seconds(args.pid)
    time.sleep(3)
    cpu = (cpu_seconds(args.pid) - before) / 3
    for sock in held:
        sock.close()
    ok = all(code == 0 for code in codes) and cpu <= args.max_cpu
    return ok, {"attack": "descriptors", "connections": len(held), "miss_rcodes": codes, "cpu_share": round(cpu, 3)}


def slow_reader(args):
    # Warm the cache, so that every query is a hit.
    tcp_ask(args.port, "big.test")
    start_rss = rss_mb(args.pid)
    peak = start_rss
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", args.port))
    sock.setblocking(False)
    batch = framed(query("big.test", qtype=16)) * 1000
    sent = 0
    closed_after = None
    began = time.monotonic()
    while time.monotonic() - began < args.stall_limit:
        try:
            sent += sock.send(batch) // (len(batch) // 1000)
        except BlockingIOError:
            pass
        except OSError:
            closed_after = time.monotonic() - began
            break
        # A closed connection shows as readable with a reset or EOF once our receive buffer drains;
        # the server closing is what we wait for, so peek without reading replies.
        if readable_among([sock], 0.05):
            try:
                if sock.recv(1, socket.MSG_PEEK) == b"":
                    closed_after = time.monotonic() - began
                    break
            except ConnectionResetError:
                closed_after = time.monotonic() - began
                break
        peak = max(peak, rss_mb(args.pid))
    sock.close()
    time.sleep(1)
    end_rss = rss_mb(args.pid)
    growth = peak - start_rss
    ok = growth <= args.max_growth_mb and closed_after is not None
    return ok, {
        "attack": "slow-reader",
        "queries_sent": sent,
        "server_closed_after_s": None if closed_after is None else round(closed_after, 1),
        "rss_mb_before": round(start_rss, 1),
        "rss_mb_peak": round(peak, 1),
        "rss_mb_after": round(end_rss, 1),
        "rss_growth_mb": round(growth, 1),
    }


def slowloris(args):
    start_rss = rss_mb(args.pid)
    connections = {}  # socket -> source
    addresses = [f"127.0.0.{i}" for i in range(2, 22)]
    opened = refused = 0

    def top_up():
        nonlocal opened, refused
        for source in addresses:
            have = sum(1 for s in connections.values() if s == source)
            for _ in range(64 - have):
                sock = socket.socket()
                sock.setblocking(False)
                try:
                    sock.bind((source, 0))
                    sock.connect_ex(("127.0.0.1", args.port))
                    connections[sock] = source
                    opened += 1
                except OSError:
                    sock.close()
                    refused += 1

    served = asked = 0
    began = time.monotonic()
    next_byte = began
    next_ask = began + 2
    while time.monotonic() - began < args.slowloris_seconds:
        now = time.monotonic()
        if now >= next_byte:
            top_up()
            for sock in list(connections):
                try:
                    sock.send(b"\x00")
                except OSError:
                    sock.close()
                    del connections[sock]
            next_byte = now + 1
        if now >= next_ask:
            asked += 1
            served += tcp_ask(args.port, "a.test")
            next_ask = now + 0.25
        # Drop connections the server closed.
        for sock in readable_among(list(connections), 0.01):
            try:
                if sock.recv(4096) == b"":
                    raise OSError
            except OSError:
                sock.close()
                connections.pop(sock, None)
    held = len(connections)
    for sock in connections:
        sock.close()
    share = served / max(1, asked)
    return share >= args.min_served, {
        "attack": "slowloris",
        "attacker_connections_opened": opened,
        "attacker_connections_open_at_end": held,
        "legitimate_queries": asked,
        "legitimate_served": served,
        "served_share": round(share, 3),
        "rss_mb_growth": round(rss_mb(args.pid) - start_rss, 1),
    }


def big_prefix(args):
    start_rss = rss_mb(args.pid)
    peak = start_rss
    socks = []
    for i in range(300):
        sock = socket.socket()
        sock.bind((f"127.0.1.{i % 250 + 1}", 0))
        sock.connect(("127.0.0.1", args.port))
        sock.setblocking(False)
        sock.send(b"\xff\xff\x00")
        socks.append(sock)
    began = time.monotonic()
    open_socks = set(socks)
    closed_at = []
    while open_socks and time.monotonic() - began < 10:
        for sock in list(open_socks):
            try:
                sock.send(b"\x00")
                if readable_among([sock], 0) and sock.recv(1) == b"":
                    raise OSError
            except OSError:
                open_socks.discard(sock)
                closed_at.append(time.monotonic() - began)
        peak = max(peak, rss_mb(args.pid))
        time.sleep(1)
    for sock in socks:
        sock.close()
    last = max(closed_at) if closed_at else None
    ok = not open_socks and last is not None and last <= 7 and peak - start_rss <= args.max_growth_mb
    return ok, {
        "attack": "big-prefix",
        "connections": len(socks),
        "still_open_after_10s": len(open_socks),
        "last_closed_after_s": None if last is None else round(last, 1),
        "rss_growth_mb": round(peak - start_rss, 1),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--attacks", default="slow-reader,slowloris,big-prefix")
    parser.add_argument("--max-growth-mb", type=float, default=20)
    parser.add_argument("--stall-limit", type=float, default=15, help="seconds to wait for the server to close a slow reader")
    parser.add_argument("--slowloris-seconds", type=float, default=12)
    parser.add_argument("--min-served", type=float, default=0.9)
    parser.add_argument("--metrics-port", type=int, help="the proxy's metrics listener (descriptors)")
    parser.add_argument("--max-cpu", type=float, default=0.3, help="descriptors: the most CPU, a share of one core, while held")
    args = parser.parse_args()
    # The attacks hold about 1,300 sockets; root may raise the hard limit, others need it high enough.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(hard, 4096), max(hard, 4096)))
    except (ValueError, OSError):
        sys.exit(f"{sys.argv[0]}: needs 4,096 file descriptors, and the hard limit is {hard} (raise it with ulimit -Hn)")
    attacks = {"slow-reader": slow_reader, "slowloris": slowloris, "big-prefix": big_prefix, "descriptors": descriptors}
    failed = False
    for name in args.attacks.split(","):
        ok, result = attacks[name](args)
        result["ok"] = ok
        print(json.dumps(result), flush=True)
        failed |= not ok
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
