#!/usr/bin/env python3
"""DNS over TLS served to clients: dotproxy's TLS listener against dnsdist's and Unbound's, each in front
of the same loopback Unbound (reached over verified TLS), loaded by `dnsperf -m dot`.

    Benchmarks/e2e/dot_listener.py --dotproxy .build/release/dotproxy [--seconds 8] [--rounds 3]

Each system runs with its defaults but for where it listens and forwards, and serves the rig's
certificate (ECDSA P-256), started afresh for each run:
  dotproxy  default flags plus --listen-tls, --tls-cert, --tls-key; for the handshake run only,
            --max-connections-per-client 256 --max-new-connections-per-second 0 (the defaults, 16 and
            50 per client address, refuse most of dnsperf's 200 connections from one address)
  dnsdist   the end-to-end benchmark's (packet cache, one UDP listener) plus addTLSLocal (OpenSSL
            provider), its default TCP workers
  unbound   the end-to-end benchmark's forwarder (num-threads 1, its caches) plus tls-service-key/pem
            and tls-port

Runs, in this order for every system in every round (the medians are reported):
  hit        long-lived connections: dnsperf 4 clients x 100 outstanding on 2 threads, one name cached
  miss       long-lived connections, a unique name per query (every query goes upstream)
  handshake  a new connection per query: dnsperf -c 200 -O num-queries-per-conn=1, one cached name;
             QPS here is handshakes per second (TLS 1.3, full handshakes: dnsperf does not resume)

It prints QPS and CPU microseconds per query (the server process's user+system time over the run,
divided by the queries answered) for each, and the ratios of dotproxy to each peer.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the harness's process, dnsperf and rig helpers)

ROOT = bench.ROOT


def tls_pair(rig):
    directory = os.path.dirname(rig["RIG_CA"])
    return os.path.join(directory, "server.pem"), os.path.join(directory, "server.key")


# dotproxy caps each client address at 16 connections and 50 new ones a second (dnsdist and Unbound have
# no such cap by default); the handshake run, 200 connections from one address, raises both.
HANDSHAKE_FLAGS = ["--max-connections-per-client", "256", "--max-new-connections-per-second", "0"]


def config(system, work, plain_port, tls_port, rig, binary, run):
    certificate, key = tls_pair(rig)
    upstream = rig["RIG_DOT_PORT"]
    if system == "dotproxy":
        return [binary, "--upstream", f"127.0.0.1:{upstream}#dns.test", "--ca-file", rig["RIG_CA"],
                "--listen", f"127.0.0.1:{plain_port}", "--listen-tls", f"127.0.0.1:{tls_port}",
                "--tls-cert", certificate, "--tls-key", key, "--log-level", "warning"] + (
                    HANDSHAKE_FLAGS if run == "handshake" else [])
    if system == "dnsdist":
        return bench.config_dnsdist(work, plain_port, rig, None, 1, extra=f"""addTLSLocal("127.0.0.1:{tls_port}", "{certificate}", "{key}", {{provider="openssl"}})
""")
    if system == "unbound":
        return bench.config_unbound(work, plain_port, rig, None, 1, extra=f"""  interface: 127.0.0.1@{tls_port}
  tls-port: {tls_port}
  tls-service-key: "{key}"
  tls-service-pem: "{certificate}"
""")
    raise ValueError(system)


RUNS = {
    "hit": (["-c", "4", "-q", "100", "-T", "2"], "hit"),
    "miss": (["-c", "4", "-q", "100", "-T", "2"], "miss"),
    "handshake": (["-c", "200", "-q", "200", "-T", "2", "-O", "num-queries-per-conn=1"], "hit"),
}


def measure(pid, tls_port, run, seconds, work, tag):
    load, workload = RUNS[run]
    queries = os.path.join(work, f"{tag}.txt")
    bench.write_queries(queries, workload, 2_000_000 if workload == "miss" else 1000, tag)
    argv = ["dnsperf", "-s", "127.0.0.1", "-p", str(tls_port), "-m", "dot", "-d", queries, "-l", str(seconds),
            "-t", "5"] + load
    before = bench.cpu_seconds(pid)
    output = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60).stdout
    cpu = bench.cpu_seconds(pid) - before
    figures = bench.parse_dnsperf(output)
    completed = max(1, figures["completed"])
    return {"qps": figures["qps"], "cpu_us": cpu * 1e6 / completed, "lost": figures["lost"],
            "servfail": figures["servfail"]}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dotproxy", required=True)
    parser.add_argument("--systems", default="dotproxy,dnsdist,unbound")
    parser.add_argument("--runs", default="hit,miss,handshake")
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    systems = args.systems.split(",")
    runs = args.runs.split(",")
    work = tempfile.mkdtemp(prefix="dotproxy-dot-bench-")
    rig_dir = os.path.join(work, "upstream")
    out = subprocess.run([os.path.join(ROOT, "scripts/unbound-rig.sh"), "start", rig_dir], capture_output=True,
                         text=True, check=True).stdout
    rig = dict(line.split("=", 1) for line in out.strip().splitlines() if "=" in line)
    samples = {(system, run): [] for system in systems for run in runs}
    try:
        for round_index in range(args.rounds):
            for system in systems:
                for run in runs:
                    plain_port = tls_port = bench.free_port()
                    while tls_port == plain_port:
                        tls_port = bench.free_port()
                    log = open(os.path.join(work, f"{system}.log"), "a")
                    argv = config(system, work, plain_port, tls_port, rig, args.dotproxy, run)
                    process = bench.start(system, argv, log)
                    # Ready, and warm: the cached name and the upstream connection.
                    if not bench.wait_ready(plain_port):
                        sys.exit(f"{system} did not start; see {work}/{system}.log")
                    tag = f"r{round_index}{system}{run}{int(time.time())}"
                    figures = measure(process.pid, tls_port, run, args.seconds, work, tag)
                    samples[(system, run)].append(figures)
                    print(json.dumps({"round": round_index + 1, "system": system, "run": run, **figures}), flush=True)
                    bench.stop(process)
    finally:
        bench.stop_all()
        subprocess.run([os.path.join(ROOT, "scripts/unbound-rig.sh"), "stop", rig_dir], capture_output=True)
    # Kept when a run failed: the systems' logs are in it.
    shutil.rmtree(work, ignore_errors=True)

    def median(system, run, key):
        return statistics.median(sample[key] for sample in samples[(system, run)])

    print(f"\nDNS over TLS to clients, medians of {args.rounds} x {args.seconds} s, dnsperf -m dot on this machine;"
          f" dotproxy's handshake run adds {' '.join(HANDSHAKE_FLAGS)}")
    print("| run | " + " | ".join(f"{s}: QPS, CPU µs/query" for s in systems) + " |")
    print("|---|" + "---|" * len(systems))
    for run in runs:
        cells = [f"{median(s, run, 'qps') / 1000:.1f}k, {median(s, run, 'cpu_us'):.1f}" for s in systems]
        print(f"| {run} | " + " | ".join(cells) + " |")
    if "dotproxy" in systems:
        print("\n| run | " + " | ".join(f"dotproxy / {s}: QPS, CPU per query" for s in systems if s != "dotproxy") + " |")
        print("|---|" + "---|" * (len(systems) - 1))
        for run in runs:
            cells = [f"{median('dotproxy', run, 'qps') / median(s, run, 'qps'):.2f}×, "
                     f"{median('dotproxy', run, 'cpu_us') / median(s, run, 'cpu_us'):.2f}×"
                     for s in systems if s != "dotproxy"]
            print(f"| {run} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
