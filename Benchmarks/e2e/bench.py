#!/usr/bin/env python3
"""End-to-end benchmark: dotproxy and its peers forwarding plain DNS to one loopback Unbound over TLS.

Run through Benchmarks/e2e/run.sh, which installs the tools and builds dotproxy. Every system forwards to
the same upstream (scripts/unbound-rig.sh: a generated CA, a redirect zone for unique names) with
certificate verification on. dnsperf drives each system in turn; the figures come from dnsperf and from
/proc for the system's process. Results are printed and written under Benchmarks/e2e/results/.
"""

import argparse
import datetime
import json
import os
import shlex
import re
import shutil
import signal
import statistics
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CLOCK_TICK = os.sysconf("SC_CLK_TCK")
HOT_NAMES = ["a.test", "www.test", "txt.test", "mail.test", "svc.test", "caa.test", "ptr.test", "ns.test", "dns.test", "_dns._tcp.test"]
HOT_TYPES = {"txt.test": "TXT", "mail.test": "MX", "svc.test": "HTTPS", "caa.test": "CAA", "ptr.test": "PTR", "_dns._tcp.test": "SRV"}
started = []  # (name, Popen) of every process we started, stopped by PID at exit


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_all():
    for _, process in reversed(list(started)):
        stop(process)


def evict_from_page_cache(program):
    """Drops a program file's cached pages, so that it starts as it would from disk.

    Idle RSS counts the code the kernel maps, 64 KiB around each page that runs, or the whole large
    folio that holds it; how a file's pages are grouped into folios depends on how it reached the page
    cache. A binary lld has just written idled 0.5-1 MiB above the same binary read back from disk, so
    every system's program is measured as read from disk.
    """
    path = shutil.which(program)
    if path:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)  # dirty pages (a fresh link) stay cached
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def start(name, argv, log):
    evict_from_page_cache(argv[0])
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    started.append((name, process))
    return process


def stop(process):
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    started[:] = [(n, p) for n, p in started if p is not process]


def wait_ready(port, proto="udp", seconds=20):
    deadline = time.time() + seconds
    while time.time() < deadline:
        tcp = ["+tcp"] if proto == "tcp" else []
        result = subprocess.run(["dig", "@127.0.0.1", "-p", str(port), "a.test", "+short", "+time=1", "+tries=1"] + tcp,
                                capture_output=True, text=True)
        if "192.0.2." in result.stdout:
            return True
        time.sleep(0.2)
    return False


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK


def host_cpu_ticks():
    """(busy, total) ticks of all CPUs so far, from /proc/stat. Idle and I/O wait are not busy; time
    taken by the hypervisor (steal) is, since no process here could use it."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    total = sum(fields)
    return total - fields[3] - fields[4], total


def host_busy_percent(before):
    """The share of all CPUs' time that was busy since `before` (a `host_cpu_ticks()` reading).

    Near 100%, the run was bound by the machine's CPU as a whole (client, proxy and upstream together),
    so a system's QPS there follows the sum of everyone's CPU per query rather than its own latency."""
    busy, total = host_cpu_ticks()
    return 100 * (busy - before[0]) / (total - before[1]) if total > before[1] else None


def wakeups(pid):
    """Voluntary context switches of all the process's threads so far: how often one went to sleep
    waiting for work and had to be woken. Per query, it says whether a run was served in large batches
    (near 0) or a few queries per wake-up (near 1), where each wake-up's cost falls on few queries."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/status") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("voluntary_ctxt_switches:"))
        except (OSError, StopIteration):
            pass  # a thread that ended meanwhile
    return total


def usage_before(pid):
    """What `usage_since` compares with: the system's CPU time and wake-ups, and the machine's CPU ticks."""
    return cpu_seconds(pid), wakeups(pid), host_cpu_ticks()


def usage_since(before, pid, completed):
    """The figures every workload reports about resources since `before` (a `usage_before` reading): the
    system's CPU and wake-ups per answered query, its peak RSS, and how busy the whole machine was."""
    cpu, woken, host = before

    def per_query(total):
        return total / completed if completed else None

    return {"cpu_us_per_query": per_query((cpu_seconds(pid) - cpu) * 1e6), "wakeups_per_query": per_query(wakeups(pid) - woken),
            "peak_rss_mib": rss_kib(pid, "VmHWM") / 1024, "host_busy_pct": host_busy_percent(host)}


def rss_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def upstream_connections(port, pid):
    """Local ports of process `pid`'s TCP connections to the upstream right now (other systems may be up)."""
    out = subprocess.run(["ss", "-Htnp", "state", "established", "dst", f"127.0.0.1:{port}"], capture_output=True, text=True).stdout
    return {line.split()[2] for line in out.splitlines() if f"pid={pid}," in line}


# ---------------------------------------------------------------------------------------------------
# Systems


def config_dotproxy(work, port, rig, binary, threads):
    """dotproxy as a user runs it: its defaults, but for where it listens and forwards (and --threads
    when the run sets every system's threads)."""
    return [binary] + (["--threads", str(threads)] if threads else []) + [
        "--upstream", f"127.0.0.1:{rig['RIG_DOT_PORT']}#dns.test", "--ca-file", rig["RIG_CA"], "--listen", f"127.0.0.1:{port}",
        "--log-level", "warning"]


# What the fill runs add to dotproxy's command line: room for every name they cache.
DOTPROXY_FILL_FLAGS = ["--cache-size", "1100000", "--cache-max-bytes", str(1 << 30)]


def configuration_line(system, threads):
    """How `system` runs in this benchmark, for the tables."""
    workers = threads or 1
    if system in ("dotproxy", "baseline"):
        loops = threads or max(1, min((os.cpu_count() or 1) // 4, 16))
        return (f"{system}: " + (f"--threads {threads}" if threads else f"default flags ({loops} event loop{'s' if loops > 1 else ''} here: one per four cores)")
                + "; the fill runs add " + " ".join(DOTPROXY_FILL_FLAGS))
    return {
        "dnsdist": f"dnsdist: {workers} UDP listener thread{'s' if workers > 1 else ''}, packet cache of 1,100,000 entries",
        "unbound": f"unbound: forwarder, num-threads {workers}, msg/rrset caches 256/512 MiB",
        "kresd": "kresd: one process (its way to scale is more processes), 1 GiB cache",
        "stubby": "stubby: one process, no cache",
    }[system]


def config_dnsdist(work, port, rig, _, threads, extra=""):
    """dnsdist with its packet cache; `extra` adds configuration lines (a TLS listener)."""
    path = os.path.join(work, "dnsdist.conf")
    # One UDP listener (and its receiving thread) per worker thread, all on the port (SO_REUSEPORT).
    listeners = "\n".join([f'setLocal("127.0.0.1:{port}", {{reusePort=true}})']
                          + [f'addLocal("127.0.0.1:{port}", {{reusePort=true}})'] * ((threads or 1) - 1))
    with open(path, "w") as f:
        f.write(f"""
{listeners}
setACL({{"127.0.0.0/8"}})
setSecurityPollSuffix("")
newServer({{address="127.0.0.1:{rig['RIG_DOT_PORT']}", tls="openssl", subjectName="dns.test", caStore="{rig['RIG_CA']}",
           validateCertificates=true}})
pc = newPacketCache(1100000, {{maxTTL=86400}})
getPool(""):setCache(pc)
{extra}""")
    return ["dnsdist", "--supervised", "--disable-syslog", "-C", path]


def config_unbound(work, port, rig, _, threads, extra=""):
    """Unbound as a forwarder over TLS; `extra` adds lines to its server section (a TLS listener)."""
    directory = os.path.join(work, "unbound-forwarder")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "unbound.conf")
    with open(path, "w") as f:
        f.write(f"""server:
  username: ""
  chroot: ""
  directory: "{directory}"
  pidfile: "{directory}/unbound.pid"
  use-syslog: no
  logfile: ""
  verbosity: 0
  num-threads: {threads or 1}
  so-reuseport: yes
  interface: 127.0.0.1@{port}
  access-control: 127.0.0.0/8 allow
  do-ip6: no
  do-not-query-localhost: no
  module-config: "iterator"
  qname-minimisation: no
  tls-cert-bundle: "{rig['RIG_CA']}"
  msg-cache-size: 256m
  rrset-cache-size: 512m
  incoming-num-tcp: 1024
  # test. is one of Unbound's built-in empty zones (RFC 6761); forward it like any other name.
  local-zone: "test." nodefault
{extra}forward-zone:
  name: "."
  forward-tls-upstream: yes
  forward-addr: 127.0.0.1@{rig['RIG_DOT_PORT']}#dns.test
""")
    return ["unbound", "-d", "-c", path]


def config_kresd(work, port, rig, _, threads):
    # One process, one thread: Knot Resolver scales by running more instances, which this run does not.
    directory = os.path.join(work, "kresd")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "config.lua")
    with open(path, "w") as f:
        f.write(f"""net.listen('127.0.0.1', {port}, {{ kind = 'dns' }})
cache.open(1024 * MB, 'lmdb://{directory}/cache')
trust_anchors.remove('.')
policy.add(policy.all(policy.TLS_FORWARD({{{{'127.0.0.1@{rig['RIG_DOT_PORT']}', hostname='dns.test', ca_file='{rig['RIG_CA']}'}}}})))
""")
    return ["kresd", "-n", "-q", "-c", path, directory]


def config_stubby(work, port, rig, _, threads):
    path = os.path.join(work, "stubby.yml")
    with open(path, "w") as f:
        f.write(f"""resolution_type: GETDNS_RESOLUTION_STUB
dns_transport_list: [GETDNS_TRANSPORT_TLS]
tls_authentication: GETDNS_AUTHENTICATION_REQUIRED
tls_ca_file: "{rig['RIG_CA']}"
tls_query_padding_blocksize: 128
edns_client_subnet_private: 1
idle_timeout: 8000
round_robin_upstreams: 0
listen_addresses: [127.0.0.1@{port}]
upstream_recursive_servers:
  - address_data: 127.0.0.1
    tls_port: {rig['RIG_DOT_PORT']}
    tls_auth_name: "dns.test"
""")
    return ["stubby", "-C", path]


# In the order the tables list them.
WORKLOADS = ["hit", "miss", "mixed", "light", "pairs"]
# The workloads that measure latency at a light load, not throughput.
LATENCY_WORKLOADS = ("light", "pairs")

# "baseline" is another dotproxy build (--baseline BIN), measured as one more peer: to compare two builds
# the way the benchmark starts and measures them.
SYSTEMS = {"dotproxy": config_dotproxy, "baseline": config_dotproxy, "dnsdist": config_dnsdist, "unbound": config_unbound,
           "kresd": config_kresd, "stubby": config_stubby}
CACHING = {"dotproxy", "baseline", "dnsdist", "unbound", "kresd"}

# ---------------------------------------------------------------------------------------------------
# Workloads


def hot_line(index):
    name = HOT_NAMES[index % len(HOT_NAMES)]
    return f"{name} {HOT_TYPES.get(name, 'A')}"


def query_line(workload, index, tag):
    """The `index`th query of a workload, as dnsperf reads it ("name TYPE"). Unique names carry `tag`."""
    if workload == "hit":
        return hot_line(index)
    if workload == "miss":
        return f"m{index}.{tag}.unique.test A"
    # mixed and light: 60% hot, 30% unique, 10% NXDOMAIN (a hundred names, negatively cached)
    slot = index % 10
    if slot < 6:
        return hot_line(index)
    if slot < 9:
        return f"x{index}.{tag}.unique.test A"
    return f"nx{index % 100}.nope.test A"


def write_queries(path, workload, count, tag):
    """Query file for dnsperf. Unique names carry `tag`, so no name is reused across runs or systems."""
    with open(path, "w") as f:
        for i in range(count):
            f.write(query_line(workload, i, tag) + "\n")


def parse_dnsperf(text):
    def number(pattern, default=0.0):
        match = re.search(pattern, text)
        return float(match.group(1)) if match else default
    codes = dict((code, int(count)) for code, count in re.findall(r"([A-Z]+) (\d+) \(", text.split("Response codes:")[-1].split("\n")[0]))
    return {
        "sent": int(number(r"Queries sent:\s+(\d+)")),
        "completed": int(number(r"Queries completed:\s+(\d+)")),
        "lost": int(number(r"Queries lost:\s+(\d+)")),
        "qps": number(r"Queries per second:\s+([\d.]+)"),
        "avg_ms": number(r"Average Latency \(s\):\s+([\d.]+)") * 1000,
        "stddev_ms": number(r"Latency StdDev \(s\):\s+([\d.]+)") * 1000,
        "servfail": codes.get("SERVFAIL", 0),
    }


def p99_from_verbose(text):
    return percentile_99([float(m) * 1000 for m in re.findall(r"^> \w+ \S+ \S+ ([\d.]+)$", text, re.M)])


# How dnsperf loads a system (--client): "threaded", 4 clients with 100 outstanding each on 2 threads,
# printing nothing per reply; or "busy", the same 4 x 100 on one thread that prints every reply, so
# that the client is itself busy, as on a machine the proxy shares with busy neighbours.
CLIENT_STYLES = {"threaded": ["-c", "4", "-q", "100", "-T", "2"], "busy": ["-c", "4", "-q", "100", "-T", "1", "-v"]}
client_style = "threaded"


def dnsperf_argv(port, transport, queries, seconds, rate=None):
    """The load of the client style, or one client at a fixed rate (verbose, for p99)."""
    argv = ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", queries, "-l", str(seconds), "-m", transport, "-t", "5"]
    return argv + (["-Q", str(rate), "-c", "1", "-q", "20", "-v"] if rate else CLIENT_STYLES[client_style])


def read_dnsperf(stream, keep_replies):
    """dnsperf's output; its per-reply lines ("> ...") only if `keep_replies` (a busy client prints
    one per reply, read and dropped here as a terminal or a log would take them)."""
    return "".join(line for line in stream if keep_replies or not line.startswith("> "))


def run_dnsperf(port, transport, queries, seconds, rate=None):
    process = subprocess.Popen(dnsperf_argv(port, transport, queries, seconds, rate), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        return read_dnsperf(process.stdout, keep_replies=rate is not None)
    finally:
        process.wait(timeout=30)


def wire_query(name, qtype, qid):
    labels = b"".join(bytes([len(label)]) + label.encode() for label in name.split("."))
    return qid.to_bytes(2, "big") + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + labels + b"\x00" + qtype.to_bytes(2, "big") + b"\x00\x01"


TYPE_CODES = {"A": 1, "NS": 2, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28, "SRV": 33, "HTTPS": 65, "CAA": 257}


class StubClient:
    """One client socket to a system: a connected UDP socket, or one TCP connection with 2-octet framing."""

    def __init__(self, port, transport):
        self.port = port
        self.transport = transport
        self.open()

    def open(self):
        if self.transport == "udp":
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.connect(("127.0.0.1", self.port))
        else:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=2)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(1)
        self.stream = b""

    def ask(self, queries, ids):
        """Sends `queries` back to back and returns the ms until a reply to each of `ids` came, or None
        if one did not come within 1 s or the socket failed. A failed TCP connection is opened again
        (if that fails too, the next call tries again), so one lost answer does not end the measuring."""
        begun = time.perf_counter()
        try:
            for query in queries:
                self.send(query)
            self.receive_answers(ids)
            return (time.perf_counter() - begun) * 1000
        except OSError:  # a timeout, a closed stream, or a refused datagram
            if self.transport == "tcp":
                self.sock.close()
                try:
                    self.open()
                except OSError:
                    pass
            return None

    def send(self, query):
        self.sock.send(query if self.transport == "udp" else len(query).to_bytes(2, "big") + query)

    def receive(self):
        """Waits for one reply and returns it; raises socket.timeout after 1 s, ConnectionError if the
        stream closes."""
        if self.transport == "udp":
            return self.sock.recv(4096)
        while len(self.stream) < 2 or len(self.stream) < 2 + int.from_bytes(self.stream[:2], "big"):
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed")
            self.stream += chunk
        length = int.from_bytes(self.stream[:2], "big")
        reply, self.stream = self.stream[2:2 + length], self.stream[2 + length:]
        return reply

    def receive_answers(self, ids):
        """Waits for a reply to each query ID in `ids`, skipping late replies to earlier queries, so that
        one of those is never timed as the answer to a later query."""
        waiting = set(ids)
        while waiting:
            waiting.discard(int.from_bytes(self.receive()[:2], "big"))

    def close(self):
        self.sock.close()


def percentile_99(latencies):
    """The 99th percentile of `latencies` in ms, a missing answer (None) counting as the 1 s timeout."""
    values = sorted(1000.0 if x is None else x for x in latencies)
    return values[min(len(values) - 1, int(len(values) * 0.99))] if values else None


def probe_latencies(port, transport, workload, tag, stop, rate=100):
    """Times one query at a time beside dnsperf's load, `rate` per second, following the workload's
    mix, until `stop` is set; returns the latencies in ms (None: no answer within 1 s).

    dnsperf reports percentiles only by printing every reply (-v), which would slow the client itself at
    these rates; the probe adds under 0.1% to the load.
    """
    client = StubClient(port, transport)
    latencies = []
    index = 0
    try:
        while not stop.is_set():
            name, qtype = query_line(workload, index, tag + "p").split()
            begun = time.perf_counter()
            latencies.append(client.ask([wire_query(name, TYPE_CODES[qtype], index & 0xFFFF)], [index & 0xFFFF]))
            index += 1
            stop.wait(max(0.0, 1 / rate - (time.perf_counter() - begun)))
    finally:
        client.close()
    return latencies


def pair_latencies(port, transport, seconds, tag):
    """What a stub resolver's getaddrinfo does: A and AAAA for a new name, sent back to back, waiting
    for both; then 5 ms of quiet. Returns each pair's time to both answers (None: not both in 1 s).

    dnsperf spaces its queries evenly, so it never shows a second reply held behind the first one's
    ACK (the upstream's Nagle algorithm against the proxy's delayed ACK), which costs about 40 ms.
    """
    client = StubClient(port, transport)
    latencies = []
    deadline = time.time() + seconds
    index = 0
    try:
        while time.time() < deadline:
            name = f"p{index}.{tag}.unique.test"
            ids = [(2 * index) & 0xFFFF, (2 * index + 1) & 0xFFFF]
            latencies.append(client.ask([wire_query(name, 1, ids[0]), wire_query(name, 28, ids[1])], ids))
            index += 1
            time.sleep(0.005)
    finally:
        client.close()
    return latencies


def measure_pairs(pid, port, transport, seconds, tag, upstream_port):
    before = usage_before(pid)
    connections = upstream_connections(upstream_port, pid)
    latencies = pair_latencies(port, transport, seconds, tag)
    connections |= upstream_connections(upstream_port, pid)
    answered = sorted(x for x in latencies if x is not None)
    # sent and completed count queries; lost counts pairs that did not get both answers within 1 s.
    return {
        "sent": 2 * len(latencies), "completed": 2 * len(answered), "lost": len(latencies) - len(answered), "qps": None,
        "avg_ms": statistics.mean(answered) if answered else None, "stddev_ms": statistics.pstdev(answered) if answered else None,
        "servfail": 0, "p99_ms": percentile_99(latencies), "upstream_connections": len(connections),
        **usage_since(before, pid, 2 * len(answered)),
    }


def measure(system, port, pid, transport, workload, seconds, work, tag, upstream_port):
    if workload == "pairs":
        return measure_pairs(pid, port, transport, seconds, tag, upstream_port)
    queries = os.path.join(work, f"q-{system}-{transport}-{workload}.txt")
    if workload == "light":
        write_queries(queries, "light", 200 * seconds + 200, tag)
    else:
        write_queries(queries, workload, 120_000 * seconds if workload != "hit" else 1000, tag)
    if workload in ("hit", "mixed", "light"):
        # Warm the hot names (and the negative ones) so "hit" measures hits.
        warm = os.path.join(work, "warm.txt")
        with open(warm, "w") as f:
            for i in range(len(HOT_NAMES)):
                f.write(hot_line(i) + "\n")
            for i in range(100):
                f.write(f"nx{i}.nope.test A\n")
        run_dnsperf(port, transport, warm, 1, rate=2000)
    connections = set()
    before = usage_before(pid)

    # Sample upstream connections while dnsperf runs.
    proc = subprocess.Popen(dnsperf_argv(port, transport, queries, seconds, 200 if workload == "light" else None),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    started.append(("dnsperf", proc))
    deadline = time.time() + seconds + 30
    output = []
    reader = threading.Thread(target=lambda: output.append(read_dnsperf(proc.stdout, keep_replies=workload == "light")))
    reader.start()
    # Under load, p99 comes from a probe beside dnsperf; at 200 QPS from dnsperf's own per-reply lines.
    probed, stop = [], threading.Event()
    probe = None if workload == "light" else threading.Thread(
        target=lambda: probed.extend(probe_latencies(port, transport, workload, tag, stop)))
    if probe:
        probe.start()
    while proc.poll() is None and time.time() < deadline:
        connections |= upstream_connections(upstream_port, pid)
        time.sleep(0.25)
    stop.set()
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    reader.join()
    if probe:
        probe.join()
    started[:] = [(n, p) for n, p in started if p is not proc]
    text = "".join(output)
    figures = parse_dnsperf(text)
    figures.update(usage_since(before, pid, figures["completed"]))
    figures["p99_ms"] = p99_from_verbose(text) if workload == "light" else percentile_99(probed)
    figures["upstream_connections"] = len(connections)
    return figures


def measure_direct(work, upstream_port, seconds, tag, transport, round_number):
    """dnsperf speaking DoT straight to the upstream with the miss workload's unique names: the
    reference for dotproxy's misses over `transport` in round `round_number`."""
    queries = os.path.join(work, "direct.txt")
    write_queries(queries, "miss", 120_000 * seconds, tag)
    host_before = host_cpu_ticks()
    figures = parse_dnsperf(run_dnsperf(upstream_port, "dot", queries, seconds))
    figures.update(host_busy_pct=host_busy_percent(host_before), transport=transport, round=round_number)
    print(f"direct dnsperf -m dot beside dotproxy's {transport} misses: {figures['qps'] or 0:.0f} QPS  host busy "
          f"{figures['host_busy_pct'] or 0:.0f}%", flush=True)
    return figures


def direct_for(results, transport, round_number=None):
    """The direct runs that pair with dotproxy's misses over `transport` (in one round, if given). Runs
    from before the pairing (no transport recorded) were one per round and serve both transports."""
    return [d for index, d in enumerate(results.get("direct_rounds") or [])
            if d.get("transport", transport) == transport and round_number in (None, d.get("round", index + 1))]


def measure_fill(system, port, pid, work, tag, count):
    """Sends `count` distinct names once, as fast as the system answers, and reports the memory they take."""
    queries = os.path.join(work, f"q-{system}-fill.txt")
    write_queries(queries, "miss", count, tag)
    before = rss_kib(pid, "VmRSS")
    argv = ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", queries, "-n", "1", "-l", "300", "-m", "udp", "-t", "5",
            "-c", "4", "-q", "100", "-T", "2"]
    figures = parse_dnsperf(subprocess.run(argv, capture_output=True, text=True, timeout=330).stdout)
    time.sleep(1)
    after = rss_kib(pid, "VmRSS")
    answered = figures["completed"]
    return {"names": count, "answered": answered, "qps": figures["qps"], "rss_before_mib": before / 1024, "rss_after_mib": after / 1024,
            "bytes_per_name": (after - before) * 1024 / answered if answered else None}


# ---------------------------------------------------------------------------------------------------
# Report


LOWER_IS_BETTER = {"avg_ms": True, "p99_ms": True, "cpu_us_per_query": True, "peak_rss_mib": True, "lost": True, "qps": False}


def median_figures(values):
    """Each figure's median over rounds (lost: the total); the upstream connection count's maximum."""
    merged = {}
    for key in values[0]:
        column = [v[key] for v in values if v.get(key) is not None]
        if key in ("system", "transport", "workload", "round"):
            continue
        if not column or not all(isinstance(x, (int, float)) for x in column):
            merged[key] = None
        elif key == "lost":
            merged[key] = sum(column)
        elif key == "upstream_connections":
            merged[key] = max(column)
        else:
            merged[key] = statistics.median(column)
    return merged


def comparable(peer, metric, workload):
    """Whether a peer's figure is a like-for-like comparison: Stubby keeps no cache, so neither its
    hit QPS nor its memory is compared with a caching proxy's."""
    return peer in CACHING or not (metric == "peak_rss_mib" or (metric == "qps" and workload == "hit"))


def best_peer(rows, transport, workload, metric):
    """The best peer figure among `rows` for one transport and workload, counting like-for-like peers only."""
    values = [r[metric] for r in rows if r["system"] != "dotproxy" and (r["transport"], r["workload"]) == (transport, workload)
              and r.get(metric) is not None and comparable(r["system"], metric, workload)]
    return (min(values) if LOWER_IS_BETTER[metric] else max(values)) if values else None


def ratio_table(results, seconds, rounds=1):
    lines = [f"# dotproxy end-to-end benchmark ({results.get('finished', 'time not recorded')}, {seconds} s per run, "
             f"{results.get('cpus', '?')} CPUs" + (f", median of {rounds} alternating rounds" if rounds > 1 else "") + ")", ""]
    client = results.get("client", "threaded")
    lines += [f"Client: dnsperf, {client} (" + ("4 clients x 100 outstanding on 2 threads, nothing printed per reply" if client == "threaded"
              else "4 clients x 100 outstanding on one thread printing every reply") + "); light runs: one client at 200 QPS.", ""]
    if results.get("configurations"):
        lines += ["Configurations:", ""] + [f"- {line}" for line in results["configurations"]] + [""]
    for transport in ("udp", "tcp"):
        pairs = direct_for(results, transport)
        if not pairs or all(p.get("qps") is None for p in pairs):
            continue
        d = median_figures(pairs)
        busy = f", host CPU {d['host_busy_pct']:.0f}% busy" if d.get("host_busy_pct") is not None else ""
        beside = f"beside dotproxy's {transport.upper()} misses, " if any("transport" in p for p in pairs) else ""
        lines += [f"dnsperf -m dot straight to the upstream (unique names; {beside}median of {len(pairs)}): {d['qps']:.0f} QPS, "
                  f"avg {d['avg_ms']:.2f} ms{busy}", ""]
        if not beside:
            break  # an older run: one direct figure for both transports
    if results.get("idle_rss_mib"):
        lines += ["Idle RSS (MiB): " + ", ".join(f"{k} {v:.1f}" for k, v in results["idle_rss_mib"].items()), ""]
    if results.get("idle_anon_rss_mib"):
        lines += ["Idle anonymous RSS, the process's own memory without mapped code (MiB): "
                  + ", ".join(f"{k} {v:.1f}" for k, v in results["idle_anon_rss_mib"].items()), ""]
    if results.get("fill"):
        lines += ["Memory after caching distinct names (UDP, each name once; bytes per name = RSS growth / names answered):", "",
                  "| system | names answered | QPS | RSS before MiB | RSS after MiB | bytes per name |", "|---|---|---|---|---|---|"]
        for f in results["fill"]:
            per_name = f"{f['bytes_per_name']:.0f}" if f.get("bytes_per_name") is not None else "–"
            lines.append(f"| {f['system']} | {f['answered']:.0f} | {f['qps']:.0f} | {f['rss_before_mib']:.1f} | {f['rss_after_mib']:.1f} | {per_name} |")
        lines.append("")
    lines += ["Ratios are dotproxy's figure over the best peer's in this run (QPS: higher is better; the others: lower is better). "
              "p99: for light, over dnsperf's replies; for hit, miss and mixed, over a probe that sends one query at a time, 100 per "
              "second, beside dnsperf's load (a missing answer counts as 1 s); for pairs, over pairs. Host busy: the share of all "
              "CPUs' time not idle during the run, for every process on the machine; near 100% the run was bound by the sum of the "
              "client's, the system's and the upstream's CPU. Wake-ups: the system's voluntary context switches per query (a thread "
              "slept and was woken); near 0 it served queries in large batches, near 1 a few per wake-up, which costs more CPU "
              "per query.", ""]
    header = "| transport | workload | system | QPS | avg ms | p99 ms | lost | CPU µs/query | peak RSS MiB | upstream conns | host busy % | wake-ups/query |"
    lines += [header, "|" + "---|" * (header.count("|") - 1)]
    runs = results["runs"]
    keys = sorted({(r["transport"], r["workload"]) for r in runs}, key=lambda k: (k[0], WORKLOADS.index(k[1])))
    for transport, workload in keys:
        group = [r for r in runs if r["transport"] == transport and r["workload"] == workload]
        for r in group:
            cells = []
            for metric, fmt in (("qps", "{:.0f}"), ("avg_ms", "{:.2f}"), ("p99_ms", "{:.2f}"), ("lost", "{:d}"), ("cpu_us_per_query", "{:.1f}"),
                                ("peak_rss_mib", "{:.1f}")):
                value = r[metric]
                if value is None:
                    cells.append("–")
                    continue
                text = fmt.format(value)
                best = best_peer(group, transport, workload, metric) if r["system"] == "dotproxy" else None
                if best:
                    text += f" ({value / best:.2f}×)"
                cells.append(text)
            busy = f"{r['host_busy_pct']:.0f}" if r.get("host_busy_pct") is not None else "–"
            woken = f"{r['wakeups_per_query']:.2f}" if r.get("wakeups_per_query") is not None else "–"
            lines.append(f"| {transport} | {workload} | {r['system']} | " + " | ".join(cells) + f" | {r['upstream_connections']} | {busy} | {woken} |")
    return "\n".join(lines) + "\n"


def target_table(results):
    """Issue 8's targets, each as the ratio of this run's medians, the ratio in every round and whether the
    former meets it. Over TCP the targets are the same ratios, allowed 20% worse."""

    def figure(rows, system, transport, workload, metric):
        row = next((r for r in rows if (r["system"], r["transport"], r["workload"]) == (system, transport, workload)), None)
        return row.get(metric) if row else None

    def ratio(rows, direct, transport, workload, metric, peer):
        ours = figure(rows, "dotproxy", transport, workload, metric)
        theirs = (median_figures(direct).get(metric) if direct else None) if peer == "direct" else (
            best_peer(rows, transport, workload, metric) if peer == "best" else figure(rows, peer, transport, workload, metric))
        return ours / theirs if ours is not None and theirs else None

    per_round = sorted({r["round"] for r in results["rounds"]})
    lines = ["Targets (issues 8 and 36; idle RSS is reported above, no longer a target): dotproxy's figure over the peer's, first from the medians over the rounds (as in the table "
             "above), then in each round. Over TCP the same ratios may be 20% worse.", "",
             "| target | from medians | per round | met |", "|---|---|---|---|"]
    checks = [("miss QPS ≥ {:g}× Knot Resolver's", "miss", "qps", "kresd", 1.5),
              ("miss QPS ≥ {:g}× dnsperf -m dot straight to the upstream", "miss", "qps", "direct", 0.9),
              ("hit QPS ≥ {:g}× dnsdist's", "hit", "qps", "dnsdist", 1.0),
              ("hit CPU per query ≤ {:g}× dnsdist's", "hit", "cpu_us_per_query", "dnsdist", 0.8),
              ("miss CPU per query ≤ {:g}× Knot Resolver's", "miss", "cpu_us_per_query", "kresd", 0.7),
              ("light average latency ≤ {:g}× the best peer's", "light", "avg_ms", "best", 1.0),
              ("light p99 latency ≤ {:g}× the best peer's (TCP too)", "light", "p99_ms", "best", 1.0)]
    for transport, allowance in (("udp", 0.0), ("tcp", 0.2)):
        for label, workload, metric, peer, goal in checks:
            lower = LOWER_IS_BETTER[metric]
            if "(TCP too)" not in label:
                goal = round(goal * (1 + allowance) if lower else goal * (1 - allowance), 2)
            overall = ratio(results["runs"], direct_for(results, transport), transport, workload, metric, peer)
            if overall is None:
                continue
            rounds = []
            for number in per_round:
                rows = [r for r in results["rounds"] if r["round"] == number]
                value = ratio(rows, direct_for(results, transport, number), transport, workload, metric, peer)
                rounds.append(f"{value:.2f}×" if value is not None else "–")
            met = overall <= goal if lower else overall >= goal
            lines.append(f"| {transport.upper()} {label.format(goal)} | {overall:.2f}× | {', '.join(rounds)} | {'yes' if met else 'no'} |")
    return "\n".join(lines) + "\n"


def start_ready(system, port, args, work, rig, purpose):
    """Starts `system` on `port` and waits until it answers; None, after printing its log's tail, if it
    does not. `purpose` names the log and the message."""
    log = open(os.path.join(work, f"{system}-{purpose.replace(' ', '-')}.log"), "w")
    binary = args.baseline if system == "baseline" else args.dotproxy
    argv = SYSTEMS[system](work, port, rig, binary, args.threads)
    if purpose == "fill" and system in ("dotproxy", "baseline"):
        argv += DOTPROXY_FILL_FLAGS
    if system == "dotproxy" and args.dotproxy_args:
        argv += shlex.split(args.dotproxy_args)
    process = start(system, argv, log)
    if wait_ready(port):
        return process
    print(f"{system}: did not answer for the {purpose}; log in {log.name}:\n" + open(log.name).read()[-2000:], flush=True)
    stop(process)
    return None


def record(results, samples, figures, system, transport, workload, round_number):
    """Keeps one run's figures for the tables and prints them."""
    figures.update(system=system, transport=transport, workload=workload, round=round_number)
    results["rounds"].append(figures)
    samples.setdefault((system, transport, workload), []).append(figures)
    print(f"{system:8} {transport} {workload:5}: {figures['qps'] or 0:9.0f} QPS  avg {figures['avg_ms'] or 0:.2f} ms  "
          f"lost {figures['lost']}  cpu {figures['cpu_us_per_query'] or 0:.1f} µs/q  rss {figures['peak_rss_mib']:.0f} MiB  "
          f"conns {figures['upstream_connections']}  host busy {figures['host_busy_pct'] or 0:.0f}%  "
          f"wake-ups {figures['wakeups_per_query'] or 0:.2f}/q", flush=True)


def measure_latency_interleaved(args, systems, workloads, work, rig, upstream_port, run_tag, results, samples):
    """The latency workloads (light, pairs), with every system up at once on its own port, taken in
    turn within each round (the order rotates by round), so that the systems' runs of one round lie
    seconds apart rather than minutes.

    Latency at 200 QPS is mostly wake-ups, and on a shared virtual machine their cost drifts from
    minute to minute: run one system at a time after its load runs, the same build's UDP light
    average ranged 0.064-0.169 ms over five rounds, and a pause of 5, 10 or 20 s after a saturating
    run did not narrow it. The systems that wait meanwhile are idle: the host was 2-3% busy during
    the interleaved light runs of the other systems, against 1% with one system up.
    """
    processes = {}
    try:
        for system in systems:
            port = free_port()
            process = start_ready(system, port, args, work, rig, "latency runs")
            if process:
                processes[system] = (port, process)
        # Quiet after the last saturating run, for the shared upstream and the machine.
        time.sleep(args.settle)
        for round_index in range(args.rounds):
            shift = round_index % max(1, len(processes))
            order = list(processes)[shift:] + list(processes)[:shift]
            for transport in args.transports.split(","):
                for workload in workloads:
                    for system in order:
                        port, process = processes[system]
                        tag = f"{run_tag}n{round_index}{system}{transport}{workload}"
                        figures = measure(system, port, process.pid, transport, workload, args.seconds, work, tag, upstream_port)
                        record(results, samples, figures, system, transport, workload, round_index + 1)
    finally:
        for _, process in processes.values():
            stop(process)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dotproxy", help="the dotproxy binary to measure (run.sh builds it)")
    parser.add_argument("--report", metavar="JSON", help="print the tables of an earlier run's results JSON again, and measure nothing")
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=1, help="measure every system this many times, alternating; report medians")
    parser.add_argument("--fill", type=int, default=1_000_000,
                        help="distinct names to cache after the workloads, to report memory per cached name (0: skip)")
    parser.add_argument("--threads", type=int, default=None,
                        help="worker threads for dotproxy, dnsdist (UDP listeners) and the Unbound forwarder; Knot Resolver and "
                             "Stubby run one. By default each system runs as its defaults say: dotproxy one event loop per four "
                             "cores, the peers one worker")
    parser.add_argument("--client", choices=sorted(CLIENT_STYLES), default="threaded",
                        help="threaded: dnsperf with 4 x 100 outstanding on 2 threads; busy: the same on one thread printing "
                             "every reply, a client that is itself busy")
    parser.add_argument("--systems", default="dotproxy,dnsdist,unbound,kresd,stubby",
                        help="which systems to measure; add baseline (with --baseline) to compare two dotproxy builds")
    parser.add_argument("--baseline", metavar="BIN", help="another dotproxy binary, measured as the system baseline")
    parser.add_argument("--dotproxy-args", default="", metavar="ARGS",
                        help="flags added to dotproxy's command line (not the baseline's), said in every table: "
                             "with --baseline set to the same binary, what a setting costs")
    parser.add_argument("--transports", default="udp,tcp")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--settle", type=float, default=5,
                        help="seconds of quiet between the last saturating run and the latency runs (light, pairs)")
    args = parser.parse_args()
    global client_style
    client_style = args.client
    if args.report:
        with open(args.report) as f:
            results = json.load(f)
        print(ratio_table(results, results["seconds"], results["rounds_run"]) + "\n" + target_table(results), end="")
        return
    if not args.dotproxy:
        parser.error("--dotproxy is required to measure")
    systems = [s for s in args.systems.split(",") if s]
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        parser.error(f"--systems: unknown {', '.join(unknown)} (known: {', '.join(SYSTEMS)})")
    if "baseline" in systems and not args.baseline:
        parser.error("--systems baseline needs --baseline BIN")
    for tool in ["dnsperf", "dig", "ss"] + [s for s in systems if s not in ("dotproxy", "baseline")]:
        if not shutil.which(tool):
            sys.exit(f"e2e: {tool} is not installed (Benchmarks/e2e/run.sh installs it)")
    work = tempfile.mkdtemp(prefix="dotproxy-e2e-")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    rig_dir = os.path.join(work, "upstream")
    results = {"seconds": args.seconds, "rounds_run": args.rounds, "settle_seconds": args.settle, "cpus": os.cpu_count(), "runs": [], "rounds": [], "fill": [], "fill_rounds": [], "idle_rss_mib": {},
               "client": args.client, "configurations": [configuration_line(system, args.threads)
                                                      + (f"; with {args.dotproxy_args}" if system == "dotproxy" and args.dotproxy_args else "")
                                                      for system in systems]}
    run_tag = f"r{int(time.time())}"
    try:
        out = subprocess.run([os.path.join(ROOT, "scripts/unbound-rig.sh"), "start", rig_dir], capture_output=True, text=True, check=True).stdout
        rig = dict(line.split("=", 1) for line in out.strip().splitlines() if "=" in line)
        upstream_port = int(rig["RIG_DOT_PORT"])
        print(f"upstream: Unbound DoT on 127.0.0.1:{upstream_port}", flush=True)

        # Each round starts every system afresh (empty cache) and measures it in turn, so that the
        # systems alternate; the table reports each figure's median over the rounds. One run moves a
        # lot with how SO_REUSEPORT happens to hash dnsperf's sockets onto a system's threads.
        samples = {}
        idle = {}
        direct = []
        workloads = [w for w in args.workloads.split(",") if w]
        load_workloads = [w for w in workloads if w not in LATENCY_WORKLOADS]
        latency_workloads = [w for w in workloads if w in LATENCY_WORKLOADS]
        for round_index in range(args.rounds):
            tag_round = f"{run_tag}n{round_index}"
            for system in systems:
                port = free_port()
                process = start_ready(system, port, args, work, rig, "load runs")
                if not process:
                    continue
                time.sleep(0.5)
                idle.setdefault(system, []).append((rss_kib(process.pid, "VmRSS") / 1024, rss_kib(process.pid, "RssAnon") / 1024))
                for transport in args.transports.split(","):
                    for workload in load_workloads:
                        tag = f"{tag_round}{system}{transport}{workload}"
                        # The reference for dotproxy's misses, dnsperf speaking DoT straight to the
                        # upstream, runs right beside each of them: the machine's speed drifts by a
                        # quarter within minutes, and a pair taken seconds apart shares the drift.
                        # It goes first in even rounds and second in odd ones, as the second of two
                        # back-to-back runs tends to come out slower.
                        paired = system == "dotproxy" and workload == "miss"
                        if paired and round_index % 2 == 0:
                            direct.append(measure_direct(work, upstream_port, args.seconds, f"{tag}direct", transport, round_index + 1))
                        figures = measure(system, port, process.pid, transport, workload, args.seconds, work, tag, upstream_port)
                        if paired and round_index % 2 == 1:
                            direct.append(measure_direct(work, upstream_port, args.seconds, f"{tag}direct", transport, round_index + 1))
                        record(results, samples, figures, system, transport, workload, round_index + 1)
                if args.fill and system in CACHING:
                    # A fresh process: the workloads above may already have filled the cache to its bound.
                    stop(process)
                    process = start_ready(system, port, args, work, rig, "fill")
                    if not process:
                        continue
                    figures = measure_fill(system, port, process.pid, work, f"{tag_round}{system}fill", args.fill)
                    figures.update(system=system, round=round_index + 1)
                    results["fill_rounds"].append(figures)
                    print(f"{system:8} fill {args.fill} names: {figures['answered']} answered at {figures['qps']:.0f} QPS, "
                          f"RSS {figures['rss_before_mib']:.0f} -> {figures['rss_after_mib']:.0f} MiB", flush=True)
                stop(process)
        if latency_workloads:
            measure_latency_interleaved(args, systems, latency_workloads, work, rig, upstream_port, run_tag, results, samples)
        if direct:
            results["direct_rounds"] = direct  # each with its transport and round; the report takes medians
        results["idle_rss_mib"] = {system: statistics.median(v[0] for v in values) for system, values in idle.items()}
        results["idle_anon_rss_mib"] = {system: statistics.median(v[1] for v in values) for system, values in idle.items()}
        for system in systems:
            values = [f for f in results["fill_rounds"] if f["system"] == system]
            if values:
                figures = median_figures(values)
                figures.update(system=system)
                results["fill"].append(figures)
        for (system, transport, workload), values in samples.items():
            figures = median_figures(values)
            figures.update(system=system, transport=transport, workload=workload)
            results["runs"].append(figures)
        finished = datetime.datetime.now()
        results["finished"] = finished.isoformat(timespec="seconds")
        table = ratio_table(results, args.seconds, args.rounds) + "\n" + target_table(results)
        print("\n" + table)
        out_dir = os.path.join(ROOT, "Benchmarks", "e2e", "results")
        os.makedirs(out_dir, exist_ok=True)
        stamp = finished.strftime("%Y%m%d-%H%M%S")
        with open(os.path.join(out_dir, f"{stamp}.md"), "w") as f:
            f.write(table)
        with open(os.path.join(out_dir, f"{stamp}.json"), "w") as f:
            json.dump(results, f, indent=2)
        print(f"written: Benchmarks/e2e/results/{stamp}.md and .json")
    finally:
        stop_all()
        subprocess.run([os.path.join(ROOT, "scripts/unbound-rig.sh"), "stop", rig_dir], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        stop_all()
        sys.exit(130)
