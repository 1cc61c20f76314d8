#!/usr/bin/env python3
"""Hostile clients against a DNS-over-TLS listener on 127.0.0.1, each bounded in time, while a
legitimate DoT client (a new verified connection from 127.0.0.100 every 0.25 s) must keep being
answered and the server's memory must stay bounded. Prints one JSON object per attack and exits 1
when one of them breaks its bound.

    tls_attacks.py --port 853 --pid 1234 --ca ca.pem --name dns.test --metrics-port 9153 [--log proxy.log]

silent         300 connections from 30 addresses that connect and send nothing: all closed at the
               handshake deadline (5 s; 7 s allowed), counted as reason="timeout".
mid-handshake  100 connections that send half a ClientHello and stop: closed at the deadline.
plain-dns      100 connections that send a plain DNS query: closed at once with no DNS reply, counted
               as reason="not_tls".
garbage        50 clients that finish the handshake, then send random bytes as records: closed at once,
               counted in dotproxy_client_tls_record_failures_total.
flood          5,000 connection attempts from one address, as fast as they go: the server holds at most
               the per-client cap (16), refuses the rest it is handed and counts them.
slow-reader    one client that finishes the handshake, pipelines queries for a large reply and never
               reads: closed by the write-stall timeout, with memory bounded.

With --log, the proxy's log must hold at most one line per kind of client failure (a handshake failure
by reason, a broken record, a refusal by reason) per 10-second interval, and one more, however many
clients failed.
"""
import argparse
import json
import os
import resource
import select
import socket
import ssl
import struct
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tcp_attacks import framed, query, rss_mb  # noqa: E402  (the same helpers as the TCP attacks)


def metric(args, name, labels=""):
    """The sum of the samples of one metric whose labels contain `labels`."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{args.metrics_port}/metrics", timeout=3).read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (line[len(name)] in " {") and labels in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def client_context(args):
    context = ssl.create_default_context(cafile=args.ca)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def dot_ask(args, timeout=2.0):
    """One query over a new verified DoT connection from 127.0.0.100; True when answered."""
    try:
        with socket.socket() as raw:
            raw.settimeout(timeout)
            raw.bind(("127.0.0.100", 0))
            raw.connect(("127.0.0.1", args.port))
            with client_context(args).wrap_socket(raw, server_hostname=args.name) as sock:
                sock.sendall(framed(query("a.test", qid=0x4242)))
                data = b""
                while len(data) < 4:
                    chunk = sock.recv(4096)
                    if not chunk:
                        return False
                    data += chunk
                return data[2:4] == b"\x42\x42"
    except (OSError, ssl.SSLError):
        return False


class Legitimate:
    """Asks every 0.25 s in the background while an attack runs; `share` is the part answered."""

    def __init__(self, args):
        self.args, self.asked, self.served, self.stop = args, 0, 0, threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.is_set():
            self.asked += 1
            self.served += dot_ask(self.args)
            self.stop.wait(0.25)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *_):
        self.stop.set()
        self.thread.join()

    @property
    def share(self):
        return self.served / max(1, self.asked)


def closed(sock):
    """Whether the server closed `sock` (EOF or reset), without reading data meant for us."""
    try:
        poller = select.poll()  # select() stops at descriptor 1,024
        poller.register(sock.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
        if not poller.poll(0):
            return False
        return sock.recv(65536) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except BlockingIOError:
        return False


def wait_closed(socks, limit):
    """Seconds until the server closed every socket, or None when some stay open past `limit`."""
    began = time.monotonic()
    open_socks = set(socks)
    while open_socks and time.monotonic() - began < limit:
        for sock in list(open_socks):
            if closed(sock):
                open_socks.discard(sock)
        time.sleep(0.05)
    return None if open_socks else time.monotonic() - began


def client_hello():
    """The first flight of a real TLS client, taken from a memory BIO."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname="dns.test")
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def connect_many(args, count, sources, send=b""):
    socks = []
    for index in range(count):
        sock = socket.socket()
        sock.bind((sources[index % len(sources)], 0))
        sock.connect(("127.0.0.1", args.port))
        if send:
            sock.sendall(send)
        sock.setblocking(False)
        socks.append(sock)
        if index % 40 == 39:
            time.sleep(0.05)  # under each address's rate of new connections
    return socks


def deadline_attack(args, name, count, sources, send, limit, reason):
    before = metric(args, "dotproxy_client_tls_handshake_failures_total", f'reason="{reason}"')
    start_rss = rss_mb(args.pid)
    with Legitimate(args) as legitimate:
        socks = connect_many(args, count, sources, send)
        took = wait_closed(socks, limit)
        peak = rss_mb(args.pid)
    for sock in socks:
        sock.close()
    time.sleep(0.2)
    counted = metric(args, "dotproxy_client_tls_handshake_failures_total", f'reason="{reason}"') - before
    ok = took is not None and took <= limit and counted >= count and legitimate.share >= args.min_served
    ok = ok and peak - start_rss <= args.max_growth_mb
    return ok, {
        "attack": name, "connections": count, "all_closed_after_s": None if took is None else round(took, 1),
        "counted_as_" + reason: int(counted), "legitimate_served_share": round(legitimate.share, 3),
        "rss_growth_mb": round(peak - start_rss, 1),
    }


def silent(args):
    return deadline_attack(args, "silent", 300, [f"127.0.2.{i}" for i in range(1, 31)], b"", 7, "timeout")


def mid_handshake(args):
    hello = client_hello()
    sources = [f"127.0.4.{i}" for i in range(1, 11)]
    return deadline_attack(args, "mid-handshake", 100, sources, hello[: len(hello) // 2], 7, "timeout")


def plain_dns(args):
    sources = [f"127.0.5.{i}" for i in range(1, 11)]
    before = metric(args, "dotproxy_client_tls_handshake_failures_total", 'reason="not_tls"')
    socks = connect_many(args, 100, sources, framed(query("a.test", qid=0x7777)))
    answered = 0
    for sock in socks:
        sock.setblocking(True)
        sock.settimeout(3)
        try:
            data = sock.recv(4096)
            answered += data[2:4] == b"\x77\x77"
        except OSError:
            pass
        sock.close()
    time.sleep(0.2)
    counted = metric(args, "dotproxy_client_tls_handshake_failures_total", 'reason="not_tls"') - before
    ok = answered == 0 and counted >= 100
    return ok, {"attack": "plain-dns", "connections": 100, "dns_replies_leaked": answered, "counted_as_not_tls": int(counted)}


def garbage(args):
    closed_count = 0
    for index in range(50):
        raw = socket.socket()
        raw.settimeout(3)
        raw.bind((f"127.0.6.{index % 10 + 1}", 0))
        raw.connect(("127.0.0.1", args.port))
        sock = client_context(args).wrap_socket(raw, server_hostname=args.name)
        # The same connection, under the TLS layer: records of the right type and length, whose
        # contents do not decrypt.
        plain = socket.socket(fileno=os.dup(sock.fileno()))
        plain.settimeout(3)
        record = b"\x17\x03\x03" + struct.pack(">H", 64) + os.urandom(64)
        plain.sendall(record * 3)
        try:
            while plain.recv(65536):
                pass
            closed_count += 1
        except ConnectionResetError:
            closed_count += 1
        except OSError:
            pass
        plain.close()
        sock.close()
    still = dot_ask(args)
    counted = metric(args, "dotproxy_client_tls_record_failures_total")
    ok = closed_count == 50 and still and counted >= 50
    return ok, {
        "attack": "garbage", "clients": 50, "closed_by_server": closed_count, "record_failures_counted": int(counted),
        "served_after": still,
    }


def flood(args):
    before = metric(args, "dotproxy_client_connections_refused_total", 'transport="tls"')
    start_rss = rss_mb(args.pid)
    held = []
    most_open = 0
    began = time.monotonic()
    with Legitimate(args) as legitimate:
        for index in range(5000):
            sock = socket.socket()
            sock.setblocking(False)
            sock.bind(("127.0.7.1", 0))
            sock.connect_ex(("127.0.0.1", args.port))
            held.append(sock)
            if index % 500 == 499:
                most_open = max(most_open, metric(args, "dotproxy_client_tls_connections"))
        # The kernel's backlog hands the server the rest over the next moments.
        for _ in range(10):
            time.sleep(0.3)
            most_open = max(most_open, metric(args, "dotproxy_client_tls_connections"))
        peak = rss_mb(args.pid)
    for sock in held:
        sock.close()
    time.sleep(0.2)
    refused = metric(args, "dotproxy_client_connections_refused_total", 'transport="tls"') - before
    # The per-client cap (16), and the legitimate client's one.
    ok = most_open <= 17 and refused >= 1000 and legitimate.share >= args.min_served
    ok = ok and peak - start_rss <= args.max_growth_mb
    return ok, {
        "attack": "flood", "attempts": 5000, "seconds": round(time.monotonic() - began, 1),
        "refused_counted": int(refused), "most_tls_connections_open": int(most_open),
        "legitimate_served_share": round(legitimate.share, 3), "rss_growth_mb": round(peak - start_rss, 1),
    }


def slow_reader(args):
    dot_ask(args)
    start_rss = rss_mb(args.pid)
    peak = start_rss
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.bind(("127.0.8.1", 0))
    raw.connect(("127.0.0.1", args.port))
    sock = client_context(args).wrap_socket(raw, server_hostname=args.name)
    sock.setblocking(False)
    batch = framed(query("big.test", qtype=16)) * 100
    began = time.monotonic()
    closed_after = None
    with Legitimate(args) as legitimate:
        while time.monotonic() - began < args.stall_limit:
            try:
                sock.send(batch)
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                pass
            except (OSError, ssl.SSLError):
                closed_after = time.monotonic() - began
                break
            try:
                poller = select.poll()
                poller.register(sock.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
                if poller.poll(50) and socket.socket(fileno=os.dup(sock.fileno())).recv(1, socket.MSG_PEEK) == b"":
                    closed_after = time.monotonic() - began
                    break
            except (ConnectionResetError, BlockingIOError):
                pass
            peak = max(peak, rss_mb(args.pid))
    sock.close()
    ok = closed_after is not None and peak - start_rss <= args.max_growth_mb and legitimate.share >= args.min_served
    return ok, {
        "attack": "slow-reader", "server_closed_after_s": None if closed_after is None else round(closed_after, 1),
        "rss_growth_mb": round(peak - start_rss, 1), "legitimate_served_share": round(legitimate.share, 3),
    }


def log_bound(args, began):
    """At most one line per kind of client failure (message and reason) per 10 s, plus one."""
    allowed = int((time.monotonic() - began) / 10) + 2
    counts = {}
    with open(args.log) as log:
        for line in log:
            if "] client " not in line:
                continue
            message = line.rsplit("] ", 1)[1].strip()
            reason = line.split("reason=", 1)[1].split()[0] if "reason=" in line else ""
            kind = f"{message} {reason}".strip()
            counts[kind] = counts.get(kind, 0) + 1
    ok = all(count <= allowed for count in counts.values())
    return ok, {"attack": "log-flood", "lines_per_kind": counts, "allowed_per_kind": allowed}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--log")
    parser.add_argument("--attacks", default="silent,mid-handshake,plain-dns,garbage,flood,slow-reader")
    parser.add_argument("--max-growth-mb", type=float, default=30)
    parser.add_argument("--stall-limit", type=float, default=15)
    parser.add_argument("--min-served", type=float, default=0.9)
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(hard, 8192), max(hard, 8192)))
    except (ValueError, OSError):
        sys.exit(f"{sys.argv[0]}: needs 8,192 file descriptors, and the hard limit is {hard}")
    attacks = {
        "silent": silent, "mid-handshake": mid_handshake, "plain-dns": plain_dns, "garbage": garbage,
        "flood": flood, "slow-reader": slow_reader,
    }
    began = time.monotonic()
    failed = False
    for name in args.attacks.split(","):
        ok, result = attacks[name](args)
        result["ok"] = ok
        print(json.dumps(result), flush=True)
        failed |= not ok
    if args.log:
        ok, result = log_bound(args, began)
        result["ok"] = ok
        print(json.dumps(result), flush=True)
        failed |= not ok
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
