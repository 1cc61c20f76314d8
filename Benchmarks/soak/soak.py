#!/usr/bin/env python3
"""A soak of dotproxy under load with a fault every minute (Benchmarks/soak/run.sh builds and runs it).

    Benchmarks/soak/soak.py --dotproxy BINARY [--minutes 30] [--rate N] [--out DIR]

dotproxy (its default flags, from a configuration file, with a local Redis as the shared cache tier) forwards to two Unbound rigs over TLS: upstream
"one" directly, upstream "two" through a relay this script runs (Python, in this process), which can
add delay and stalls or send new connections to a fake upstream. dnsperf sends a mixed workload (60%
cached names, 30% unique names, 10% NXDOMAIN) at half the capacity measured first (or --rate) for the
whole run, printing every reply; this script reads them and samples every second: answered, lost,
SERVFAIL, p99 latency, and dotproxy's RSS, open descriptors and threads.

From minute 1, every minute starts one fault from this rotation, for 20 s:
  kill       upstream one killed (SIGKILL), then restarted on the same ports
  pause      upstream one stopped (SIGSTOP), then resumed
  impair     200 ms more on every chunk to and from upstream two, and one chunk in 20 held 600 ms more
             (the relay's stand-in for tc netem's 200 ms delay and 5% loss: this VM's kernel has no
             sch_netem, and TCP turns loss into such stalls)
  fake       new connections to upstream two reach a fake upstream that completes TLS with the rig's
             certificate, then answers with garbage, wrong IDs and wrong questions; open ones are cut
  flood      random UDP payloads at 20,000 a second from 127.0.0.2
  tcp        2,000 TCP connections that send nothing and 200 that send one octet a second, from 125
             addresses (127.0.9.x)
  reload     the configuration file rewritten (its cache size changed) and SIGHUP sent, twice
  redis      the shared cache's Redis (dotproxy runs with `redis.url` set to a local redis-server)
             paused (SIGSTOP) for 8 s, resumed, then killed and started again 6 s later, empty

Writes DIR/soak.csv (one row a second), DIR/soak.png (the series with the fault windows shaded) and
DIR/summary.json, and prints the summary: queries lost outside fault windows (must be 0; a window
counts 5 s past its end, for what was in flight), lost inside them, RSS growth from minute 5 to the
end (must be under 10%), and p99 outside faults. Exits 1 when a bound is broken.
"""
import argparse
import asyncio
import csv
import json
import os
import random
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
import bench  # noqa: E402  (process, dnsperf and workload helpers)

ROOT = bench.ROOT
FAULTS = ["kill", "pause", "impair", "fake", "flood", "tcp", "reload", "redis"]
FAULT_SECONDS = 20
GRACE_SECONDS = 5


class Relay:
    """A TCP relay to upstream two, in its own thread, that can add delay and stalls, or send new
    connections to another backend."""

    def __init__(self, backend_port):
        self.backend_port = backend_port
        self.fake_port = None
        self.impaired = False
        self.use_fake = False
        self.writers = set()
        self.loop = asyncio.new_event_loop()
        self.port = bench.free_port()
        self.ready = threading.Event()
        threading.Thread(target=self.run, daemon=True).start()
        self.ready.wait(10)

    def run(self):
        asyncio.set_event_loop(self.loop)

        async def start():
            await asyncio.start_server(self.handle, "127.0.0.1", self.port)
            self.ready.set()

        self.loop.run_until_complete(start())
        self.loop.run_forever()

    async def handle(self, client_reader, client_writer):
        port = self.fake_port if self.use_fake else self.backend_port
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            client_writer.close()
            return
        self.writers.update([client_writer, upstream_writer])
        await asyncio.gather(self.pipe(client_reader, upstream_writer), self.pipe(upstream_reader, client_writer))
        self.writers.difference_update([client_writer, upstream_writer])

    async def pipe(self, reader, writer):
        # Chunks keep their order: each leaves no earlier than the one before it.
        last_due = 0.0
        try:
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                if self.impaired:
                    due = time.monotonic() + 0.2 + (0.6 if random.random() < 0.05 else 0)
                    last_due = max(last_due, due)
                    await asyncio.sleep(max(0, last_due - time.monotonic()))
                writer.write(chunk)
                await writer.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    def cut_all(self):
        def cut():
            for writer in list(self.writers):
                writer.transport.abort()
        self.loop.call_soon_threadsafe(cut)


class FakeUpstream:
    """A DoT server with the rig's certificate that answers every query wrongly: garbage, a wrong ID
    or a wrong question, in turn."""

    def __init__(self, certificate, key):
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(certificate, key)
        self.port = bench.free_port()
        self.loop = asyncio.new_event_loop()
        self.turn = 0
        ready = threading.Event()

        def run():
            asyncio.set_event_loop(self.loop)

            async def start():
                await asyncio.start_server(self.handle, "127.0.0.1", self.port, ssl=self.context)
                ready.set()

            self.loop.run_until_complete(start())
            self.loop.run_forever()

        threading.Thread(target=run, daemon=True).start()
        ready.wait(10)

    async def handle(self, reader, writer):
        try:
            while True:
                length = struct.unpack(">H", await reader.readexactly(2))[0]
                query = bytearray(await reader.readexactly(length))
                self.turn += 1
                if self.turn % 3 == 0:
                    reply = os.urandom(random.randint(1, 64))
                elif self.turn % 3 == 1:
                    query[2] |= 0x80
                    query[0] ^= 0x5A  # another ID
                    reply = bytes(query)
                else:
                    query[2] |= 0x80
                    if len(query) > 14:
                        query[13] = ord("z")  # another question
                    reply = bytes(query)
                writer.write(struct.pack(">H", len(reply)) + reply)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()


def flood(port, seconds):
    """Random UDP payloads at about 20,000 a second from 127.0.0.2."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.2", 0))
    sock.setblocking(False)
    payloads = [os.urandom(random.randint(1, 300)) for _ in range(1000)]
    end = time.monotonic() + seconds
    sent = 0
    while time.monotonic() < end:
        began = time.monotonic()
        for payload in payloads[: 200]:
            try:
                sock.sendto(payload, ("127.0.0.1", port))
                sent += 1
            except (BlockingIOError, OSError):
                pass
        random.shuffle(payloads)
        time.sleep(max(0, 0.01 - (time.monotonic() - began)))
    sock.close()
    return sent


def tcp_hold(port, seconds):
    """2,000 silent TCP connections and 200 that send one octet a second, from 125 addresses."""
    held, slow = [], []
    for index in range(2200):
        sock = socket.socket()
        sock.setblocking(False)
        try:
            sock.bind((f"127.0.9.{index % 125 + 1}", 0))
            sock.connect_ex(("127.0.0.1", port))
        except OSError:
            sock.close()
            continue
        (slow if index < 200 else held).append(sock)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for sock in slow:
            try:
                sock.send(b"\x00")
            except OSError:
                pass
        time.sleep(1)
    for sock in held + slow:
        sock.close()


class Sampler:
    """Reads dnsperf's per-reply lines and keeps per-second counts and latencies."""

    def __init__(self, start):
        self.start = start
        self.lock = threading.Lock()
        self.seconds = {}

    def second(self, now):
        index = int(now - self.start)
        return self.seconds.setdefault(index, {"answered": 0, "lost": 0, "servfail": 0, "latencies": []})

    def read(self, stream, timeout_seconds):
        for line in stream:
            if not line.startswith("> "):
                continue
            parts = line.split()
            now = time.monotonic()
            with self.lock:
                if parts[1] == "T":
                    # A timeout is reported when it expires; the query left timeout_seconds earlier.
                    self.second(now - timeout_seconds)["lost"] += 1
                    continue
                entry = self.second(now)
                entry["answered"] += 1
                if parts[1] == "SERVFAIL":
                    entry["servfail"] += 1
                try:
                    entry["latencies"].append(float(parts[-1]) * 1000)
                except ValueError:
                    pass


def process_figures(pid):
    with open(f"/proc/{pid}/status") as status:
        fields = dict(line.split(":", 1) for line in status if ":" in line)
    rss = int(fields["VmRSS"].split()[0]) / 1024
    threads = int(fields["Threads"])
    descriptors = len(os.listdir(f"/proc/{pid}/fd"))
    return rss, descriptors, threads


class Redis:
    """The shared cache's redis-server, on a free port, without persistence."""

    def __init__(self, work):
        self.port = bench.free_port()
        self.log = open(os.path.join(work, "redis.log"), "a")
        self.start()

    def start(self):
        self.process = bench.start("redis", ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                             "--appendonly", "no"], self.log)
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        sys.exit("redis-server did not start")

    def fault(self):
        self.process.send_signal(signal.SIGSTOP)
        time.sleep(8)
        self.process.send_signal(signal.SIGCONT)
        time.sleep(2)
        self.process.kill()
        self.process.wait()
        bench.started[:] = [(n, p) for n, p in bench.started if p is not self.process]
        time.sleep(6)
        self.start()


def write_config(path, rig_one, relay_port, ca, port, cache_size, redis_port):
    with open(path, "w") as f:
        f.write(f"""listen: ["127.0.0.1:{port}"]
upstreams:
  one: {{address: "127.0.0.1:{rig_one}", auth-name: dns.test}}
  two: {{address: "127.0.0.1:{relay_port}", auth-name: dns.test}}
tls: {{ca-file: "{ca}"}}
cache: {{size: {cache_size}}}
redis: {{url: "redis://127.0.0.1:{redis_port}"}}
log: {{level: notice}}
""")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dotproxy", required=True)
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--rate", type=int, help="queries per second; default: half the measured capacity")
    parser.add_argument("--max-rate", type=int, default=20000, help="the most the default rate may be")
    parser.add_argument("--faults", default=",".join(FAULTS), help="the rotation, comma-separated")
    parser.add_argument("--out", default=os.path.join(ROOT, "Benchmarks", "results", time.strftime("soak-%Y%m%d-%H%M%S")))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    work = os.path.join(args.out, "work")
    os.makedirs(work, exist_ok=True)
    rigs = [os.path.join(work, "one"), os.path.join(work, "two")]
    subprocess.run([os.path.join(ROOT, "scripts/unbound-rig.sh"), "start", rigs[0]], check=True, capture_output=True)
    os.makedirs(rigs[1], exist_ok=True)
    for name in ("ca.key", "ca.pem"):
        subprocess.run(["cp", os.path.join(rigs[0], name), rigs[1]], check=True)
    subprocess.run([os.path.join(ROOT, "scripts/unbound-rig.sh"), "start", rigs[1]], check=True, capture_output=True)
    env = [dict(line.split("=", 1) for line in open(os.path.join(rig, "rig.env")).read().split()) for rig in rigs]
    relay = Relay(int(env[1]["RIG_DOT_PORT"]))
    fake = FakeUpstream(os.path.join(rigs[1], "server.pem"), os.path.join(rigs[1], "server.key"))
    relay.fake_port = fake.port
    port = bench.free_port()
    redis = Redis(work)
    relay.redis = redis
    config = os.path.join(work, "dotproxy.yaml")
    write_config(config, env[0]["RIG_DOT_PORT"], relay.port, env[0]["RIG_CA"], port, 10000, redis.port)
    log = open(os.path.join(args.out, "dotproxy.log"), "w")
    proxy = bench.start("dotproxy", [args.dotproxy, "--config", config], log)
    try:
        if not bench.wait_ready(port):
            sys.exit("dotproxy did not start; see dotproxy.log")
        tag = f"soak{int(time.time())}"
        queries = os.path.join(work, "queries.txt")
        bench.write_queries(queries, "mixed", 3_000_000, tag)
        rate = args.rate
        if not rate:
            capacity = bench.parse_dnsperf(bench.run_dnsperf(port, "udp", queries, 5))["qps"]
            rate = max(1000, min(args.max_rate, int(capacity / 2)))
            print(f"capacity {capacity:.0f} QPS; soak rate {rate} QPS", flush=True)
        total = int(args.minutes * 60)
        timeout = 3
        argv = ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", queries, "-l", str(total), "-Q", str(rate),
                "-c", "4", "-q", "500", "-t", str(timeout), "-v"]
        start = time.monotonic()
        load = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        sampler = Sampler(start)
        reader = threading.Thread(target=sampler.read, args=(load.stdout, timeout), daemon=True)
        reader.start()
        windows = []
        figures = {}
        next_fault = 60
        fault_index = 0
        while time.monotonic() - start < total:
            elapsed = time.monotonic() - start
            second = int(elapsed)
            figures[second] = process_figures(proxy.pid)
            if elapsed >= next_fault and next_fault + FAULT_SECONDS < total:
                rotation = args.faults.split(",")
                name = rotation[fault_index % len(rotation)]
                fault_index += 1
                windows.append((name, next_fault, next_fault + FAULT_SECONDS))
                threading.Thread(target=run_fault, args=(name, rigs, env, relay, proxy, port, config), daemon=True).start()
                next_fault += 60
            time.sleep(max(0, second + 1 - (time.monotonic() - start)))
        load.wait(timeout=timeout + 30)
        reader.join(timeout=10)
    finally:
        bench.stop_all()
        for rig in rigs:
            subprocess.run([os.path.join(ROOT, "scripts/unbound-rig.sh"), "stop", rig], capture_output=True)
    report(args, sampler, figures, windows, rate, total)


def run_fault(name, rigs, env, relay, proxy, port, config):
    if name == "kill":
        pid = int(open(os.path.join(rigs[0], "unbound.pid")).read())
        os.kill(pid, signal.SIGKILL)
        time.sleep(FAULT_SECONDS)
        subprocess.run([os.path.join(ROOT, "scripts/unbound-rig.sh"), "restart", rigs[0]], capture_output=True)
    elif name == "pause":
        pid = int(open(os.path.join(rigs[0], "unbound.pid")).read())
        os.kill(pid, signal.SIGSTOP)
        time.sleep(FAULT_SECONDS)
        os.kill(pid, signal.SIGCONT)
    elif name == "impair":
        relay.impaired = True
        time.sleep(FAULT_SECONDS)
        relay.impaired = False
    elif name == "fake":
        relay.use_fake = True
        relay.cut_all()
        time.sleep(FAULT_SECONDS)
        relay.use_fake = False
        relay.cut_all()
    elif name == "flood":
        flood(port, FAULT_SECONDS)
    elif name == "tcp":
        tcp_hold(port, FAULT_SECONDS)
    elif name == "reload":
        for size in (20000, 10000):
            write_config(config, env[0]["RIG_DOT_PORT"], relay.port, env[0]["RIG_CA"], port, size, relay.redis.port)
            proxy.send_signal(signal.SIGHUP)
            time.sleep(FAULT_SECONDS / 2)
    elif name == "redis":
        relay.redis.fault()


def report(args, sampler, figures, windows, rate, total):
    def in_window(second):
        for name, begin, end in windows:
            if begin <= second < end + GRACE_SECONDS:
                return name
        return ""

    rows = []
    for second in range(total):
        entry = sampler.seconds.get(second, {"answered": 0, "lost": 0, "servfail": 0, "latencies": []})
        latencies = sorted(entry["latencies"])
        p99 = latencies[int(len(latencies) * 0.99)] if latencies else 0.0
        rss, descriptors, threads = figures.get(second, (0, 0, 0))
        rows.append({"second": second, "answered": entry["answered"], "lost": entry["lost"],
                     "servfail": entry["servfail"], "p99_ms": round(p99, 3), "rss_mib": round(rss, 1),
                     "descriptors": descriptors, "threads": threads, "fault": in_window(second)})
    with open(os.path.join(args.out, "soak.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    outside = [row for row in rows if not row["fault"] and row["second"] >= 5 and row["second"] < total - 5]
    inside = [row for row in rows if row["fault"]]
    minute5 = [row["rss_mib"] for row in rows if 300 <= row["second"] < 310 and row["rss_mib"]]
    end = [row["rss_mib"] for row in rows[-15:-5] if row["rss_mib"]]
    rss_growth = (sum(end) / len(end)) / (sum(minute5) / len(minute5)) - 1 if minute5 and end else None
    p99_outside = sorted(row["p99_ms"] for row in outside)
    lost_by_fault = {}
    for row in inside:
        lost_by_fault[row["fault"]] = lost_by_fault.get(row["fault"], 0) + row["lost"]
    summary = {
        "minutes": args.minutes, "rate_qps": rate,
        "answered": sum(row["answered"] for row in rows),
        "lost_outside_faults": sum(row["lost"] for row in outside),
        "lost_inside_faults": lost_by_fault,
        "servfail_outside_faults": sum(row["servfail"] for row in outside),
        "servfail_inside_faults": sum(row["servfail"] for row in inside),
        "rss_growth_minute5_to_end": None if rss_growth is None else round(rss_growth, 4),
        "rss_mib_minute5": round(sum(minute5) / len(minute5), 1) if minute5 else None,
        "rss_mib_end": round(sum(end) / len(end), 1) if end else None,
        "p99_ms_outside_faults_median_second": p99_outside[len(p99_outside) // 2] if p99_outside else None,
        "p99_ms_outside_faults_worst_second": p99_outside[-1] if p99_outside else None,
        "descriptors_max": max(row["descriptors"] for row in rows),
        "threads_max": max(row["threads"] for row in rows),
        "faults": [{"fault": name, "from_s": begin, "to_s": end} for name, begin, end in windows],
    }
    summary["ok"] = summary["lost_outside_faults"] == 0 and (rss_growth is None or rss_growth < 0.10)
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(json.dumps(summary, indent=2), flush=True)
    plot(args.out, rows, windows)
    print(f"results: {args.out}/soak.csv, soak.png, summary.json", flush=True)
    sys.exit(0 if summary["ok"] else 1)


def plot(out, rows, windows):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is missing (pip install matplotlib): no PNG", flush=True)
        return
    seconds = [row["second"] / 60 for row in rows]
    series = [("answered/s", "answered"), ("lost/s", "lost"), ("SERVFAIL/s", "servfail"), ("p99 ms", "p99_ms"),
              ("RSS MiB", "rss_mib"), ("descriptors", "descriptors")]
    figure, axes = plt.subplots(len(series), 1, figsize=(12, 2.2 * len(series)), sharex=True)
    for axis, (label, key) in zip(axes, series):
        axis.plot(seconds, [row[key] for row in rows], linewidth=0.8)
        axis.set_ylabel(label)
        for name, begin, end in windows:
            axis.axvspan(begin / 60, end / 60, color="orange", alpha=0.25)
    for name, begin, _ in windows:
        axes[0].text(begin / 60, axes[0].get_ylim()[1], name, fontsize=7, va="top")
    axes[-1].set_xlabel("minutes")
    figure.tight_layout()
    figure.savefig(os.path.join(out, "soak.png"), dpi=110)


if __name__ == "__main__":
    main()
