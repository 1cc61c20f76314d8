#!/usr/bin/env python3
"""dotproxy replicas sharing one Redis as their second cache tier, in front of one loopback Unbound.

  replicas.py check --binary B --rig DIR      sharing and fault checks (scripts/e2e-redis.sh runs it)
  replicas.py bench --binary B --rig DIR      upstream queries and hit rates for 1-3 replicas, with and
                                              without Redis; CPU per second-tier hit and per miss

`check` asserts, and fails with a message, when:
  - a name asked through replica 1 makes the upstream (Unbound, counted with unbound-control) answer
    more than once when replicas 2 and 3 ask it, or their TTLs are not aged by the time that passed;
    likewise for an NXDOMAIN;
  - under dnsperf load across the three replicas, with Redis paused (SIGSTOP) 6 s, then killed, then
    started again 6 s later: any query is lost, or Redis hits do not resume after the restart; with
    --assert-latency also when the probe's p99 during a fault exceeds the second-tier deadline plus the
    miss p99 before the faults (a figure for a release build on a quiet machine: a debug build on a
    busy one measures its own slowness; the figures are printed either way).
Every replica runs with its default flags plus --redis, a listener and a metrics port. Prints JSON.
"""

import argparse
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
import bench  # noqa: E402  (process, dnsperf and wire helpers)

REDIS_DEADLINE_MS = 2.0  # dotproxy's default --redis-timeout


def fail(message):
    print(f"redis replicas: FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def read_rig(directory):
    values = {}
    with open(os.path.join(directory, "rig.env")) as f:
        for line in f:
            key, _, value = line.strip().partition("=")
            values[key] = value
    values["conf"] = os.path.join(directory, "unbound.conf")
    return values


def upstream_queries(rig):
    out = subprocess.run(["unbound-control", "-c", rig["conf"], "stats_noreset"], capture_output=True, text=True, check=True).stdout
    return int(re.search(r"^total\.num\.queries=(\d+)$", out, re.M).group(1))


class Redis:
    def __init__(self, work):
        self.port = bench.free_port()
        self.work = work
        self.process = None

    def start(self):
        self.process = bench.start("redis", ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                             "--appendonly", "no"], open(os.path.join(self.work, "redis.log"), "a"))
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        fail("redis-server did not start (is it installed?)")

    def signal(self, number):
        os.kill(self.process.pid, number)

    def kill(self):
        self.process.kill()
        self.process.wait()
        bench.started[:] = [(n, p) for n, p in bench.started if p is not self.process]


class Replica:
    def __init__(self, index, binary, rig, work, redis_port, extra=()):
        self.port = bench.free_port()
        self.metrics_port = bench.free_port()
        argv = [binary, "--upstream", f"127.0.0.1:{rig['RIG_DOT_PORT']}#{rig['RIG_NAME']}", "--ca-file", rig["RIG_CA"],
                "--listen", f"127.0.0.1:{self.port}", "--metrics-listen", f"127.0.0.1:{self.metrics_port}", "--log-level", "notice"]
        if redis_port:
            argv += ["--redis", f"redis://127.0.0.1:{redis_port}"]
        self.process = bench.start(f"replica{index}", argv + list(extra), open(os.path.join(work, f"replica{index}.log"), "w"))
        if not bench.wait_ready(self.port):
            fail(f"replica {index} did not answer; see {work}/replica{index}.log")

    def metric(self, name, labels=""):
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).read().decode()
        total = 0.0
        for match in re.finditer(rf"^{re.escape(name)}(\{{[^}}]*\}})? ([\d.e+-]+)$", text, re.M):
            if labels in (match.group(1) or ""):
                total += float(match.group(2))
        return total


def ask(port, name, qtype=1, timeout=2.0):
    """(rcode, first answer TTL or None, latency ms) of one UDP query; None if no answer."""
    qid = random.randrange(65536)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        begun = time.perf_counter()
        s.sendto(bench.wire_query(name, qtype, qid), ("127.0.0.1", port))
        try:
            data = s.recv(4096)
        except socket.timeout:
            return None
        latency = (time.perf_counter() - begun) * 1000
    rcode = data[3] & 0x0F
    answers = int.from_bytes(data[6:8], "big")
    ttl = None
    if answers:
        position = 12
        while data[position]:
            position += 1 + data[position]
        position += 5
        position += 2 if data[position] & 0xC0 == 0xC0 else 0  # compressed owner name
        ttl = int.from_bytes(data[position + 4:position + 8], "big")
    return rcode, ttl, latency


def check_sharing(replicas, rig):
    tag = f"s{random.randrange(10**9)}"
    results = {}
    for label, name, rcode in (("positive", f"{tag}.unique.test", 0), ("negative", f"{tag}.nx.test", 3)):
        before = upstream_queries(rig)
        first = ask(replicas[0].port, name)
        if not first or first[0] != rcode:
            fail(f"{label}: replica 1 answered {first}")
        after_first = upstream_queries(rig)
        time.sleep(2.2)
        others = [ask(replica.port, name) for replica in replicas[1:]]
        after_all = upstream_queries(rig)
        if after_first - before != 1:
            fail(f"{label}: the upstream saw {after_first - before} queries for replica 1's miss, not 1")
        if after_all != after_first:
            fail(f"{label}: replicas 2 and 3 made {after_all - after_first} upstream queries, not 0")
        for index, other in enumerate(others, 2):
            if not other or other[0] != rcode:
                fail(f"{label}: replica {index} answered {other}")
            if label == "positive" and not (first[1] - 4 <= other[1] <= first[1] - 2):
                fail(f"positive: replica {index}'s TTL {other[1]} is not replica 1's {first[1]} aged by 2-4 s")
        results[label] = {"upstream_queries_replica1": after_first - before, "upstream_queries_replicas2_3": after_all - after_first,
                          "ttl_replica1": first[1], "ttl_replicas2_3": [o[1] for o in others]}
    return results


def write_names(path, count, seed, prefix):
    names = [f"{prefix}{i}.unique.test A" for i in range(count)]
    random.Random(seed).shuffle(names)
    with open(path, "w") as f:
        f.write("\n".join(names) + "\n")


def probe(ports, stop, records, rate=50):
    """Unique names (first-tier and second-tier misses: the path Redis can slow), round-robin over the
    replicas, `rate` per second: (time, latency ms or None)."""
    index = 0
    tag = f"p{random.randrange(10**9)}"
    while not stop.is_set():
        begun = time.time()
        result = ask(ports[index % len(ports)], f"{tag}-{index}.unique.test", timeout=1.0)
        records.append((begun, result[2] if result else None))
        index += 1
        stop.wait(max(0.0, 1 / rate - (time.time() - begun)))


def p99(records, start, end):
    values = [latency for when, latency in records if start <= when < end]
    return bench.percentile_99(values), len(values)


def check_faults(replicas, redis, rig, work, rate, assert_latency, seconds=40):
    names = os.path.join(work, "names")
    loads = []
    for index, replica in enumerate(replicas):
        path = f"{names}{index}"
        write_names(path, 30000, index, "r")  # every replica sees every name, each in its own order
        loads.append(subprocess.Popen(["dnsperf", "-s", "127.0.0.1", "-p", str(replica.port), "-d", path, "-l", str(seconds),
                                       "-Q", str(rate), "-c", "2", "-q", "50", "-t", "5"], stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    stop = threading.Event()
    proxied, direct = [], []
    threads = [threading.Thread(target=probe, args=([r.port for r in replicas], stop, proxied)),
               threading.Thread(target=probe, args=([int(rig["RIG_DNS_PORT"])], stop, direct, 20))]
    for thread in threads:
        thread.start()
    hits = []  # (time, total second-tier hits of all replicas)

    def sample_until(moment):
        while time.time() < moment:
            hits.append((time.time(), sum(r.metric("dotproxy_redis_lookups_total", 'result="hit"') for r in replicas)))
            time.sleep(0.5)

    def lookups():
        return {result: sum(r.metric("dotproxy_redis_lookups_total", f'result="{result}"') for r in replicas)
                for result in ("hit", "miss", "stale", "timeout", "error", "skipped")}

    begun = time.time()
    sample_until(begun + 10)
    before_faults = lookups()
    paused = (time.time(), None)
    redis.signal(19)  # SIGSTOP
    sample_until(paused[0] + 6)
    redis.signal(18)  # SIGCONT
    paused = (paused[0], time.time())
    sample_until(paused[1] + 6)
    killed = time.time()
    redis.kill()
    sample_until(killed + 6)
    redis.start()
    restarted = time.time()
    sample_until(begun + seconds + 1)
    stop.set()
    for thread in threads:
        thread.join()
    outputs = [bench.parse_dnsperf(load.communicate(timeout=60)[0]) for load in loads]

    upstream_p99, _ = p99(direct, begun, begun + seconds)
    baseline_p99, baseline_n = p99(proxied, begun + 2, paused[0])
    pause_p99, pause_n = p99(proxied, paused[0], paused[1])
    down_p99, down_n = p99(proxied, killed, restarted)
    after_p99, after_n = p99(proxied, restarted + 2, begun + seconds)
    hits_before_restart = max(value for when, value in hits if when < restarted)
    resumed = next((when - restarted for when, value in hits if when >= restarted and value > hits_before_restart), None)
    figures = {
        "load": {"per_replica_qps": rate, "seconds": seconds, "sent": sum(o["sent"] for o in outputs),
                 "lost": sum(o["lost"] for o in outputs), "servfail": sum(o["servfail"] for o in outputs)},
        "probe_p99_ms": {"upstream_direct": upstream_p99, "baseline_miss": baseline_p99, "redis_paused": pause_p99,
                         "redis_down": down_p99, "after_restart": after_p99},
        "probe_counts": {"baseline": baseline_n, "paused": pause_n, "down": down_n, "after": after_n},
        "bound_ms": round(REDIS_DEADLINE_MS + baseline_p99, 3),
        "hits_resumed_after_restart_s": None if resumed is None else round(resumed, 1),
        "redis_lookups_first_10s": before_faults,
        "redis_lookups": lookups(),
    }
    if figures["load"]["lost"]:
        fail(f"{figures['load']['lost']} queries lost: {json.dumps(figures)}")
    for window in ("redis_paused", "redis_down") if assert_latency else ():
        if figures["probe_p99_ms"][window] > figures["bound_ms"]:
            fail(f"p99 with {window} {figures['probe_p99_ms'][window]:.2f} ms above the deadline plus the miss p99 "
                 f"({figures['bound_ms']:.2f} ms): {json.dumps(figures)}")
    if resumed is None:
        fail(f"second-tier hits did not resume after Redis restarted: {json.dumps(figures)}")
    return figures


def run_pass(port, names, rate=None):
    argv = ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", names, "-n", "1", "-c", "2", "-q", "50", "-t", "5"]
    if rate:
        argv += ["-Q", str(rate)]
    return bench.parse_dnsperf(subprocess.run(argv, capture_output=True, text=True).stdout)


def bench_scaling(args, rig, work):
    """Upstream queries and hit rates when 1-3 replicas each take the same names."""
    rows = []
    names = os.path.join(work, "mixed")
    for shared in (False, True):
        for count in (1, 2, 3):
            redis = Redis(work) if shared else None
            if redis:
                redis.start()
            replicas = [Replica(i, args.binary, rig, work, redis.port if redis else None) for i in range(count)]
            before = upstream_queries(rig)
            tag = f"m{random.randrange(10**9)}"
            # A mixed workload every replica sees in full, in its own order: 2,000 names, each asked 5 times.
            queries = [f"{tag}{i % 2000}.unique.test A" for i in range(10000)]
            sent = 0
            for index, replica in enumerate(replicas):
                random.Random(index).shuffle(queries)
                with open(names, "w") as f:
                    f.write("\n".join(queries) + "\n")
                sent += run_pass(replica.port, names, rate=args.rate)["completed"]
            upstream = upstream_queries(rig) - before
            second = sum(r.metric("dotproxy_redis_lookups_total", 'result="hit"') for r in replicas) if shared else 0
            first = sum(r.metric("dotproxy_cache_hits_total") for r in replicas)
            row = {"replicas": count, "redis": shared, "queries": sent, "upstream_queries": upstream,
                   "memory_hit_rate": round(first / sent, 3), "redis_hit_rate": round(second / sent, 3),
                   "hit_rate": round((first + second) / sent, 3)}
            if shared:
                row["redis_lookups"] = {result: sum(r.metric("dotproxy_redis_lookups_total", f'result="{result}"') for r in replicas)
                                        for result in ("miss", "timeout", "error", "skipped")}
            rows.append(row)
            for replica in replicas:
                bench.stop(replica.process)
            if redis:
                redis.kill()
    return rows


def bench_cpu(args, rig, work):
    """CPU per query of a second-tier hit and of a miss that goes upstream, on a fresh replica: one
    unpaced pass of distinct names each (dnsperf 2 clients x 50 outstanding), alternating which goes
    first. (At a paced rate, CPU per query measures wake-ups rather than the work.)"""
    redis = Redis(work)
    redis.start()
    # Unpaced, a lookup can wait past the 2 ms default behind a full batch on this small machine and
    # turn into a miss; a longer deadline keeps the hit pass all hits (the table says so).
    patience = ["--redis-timeout", str(args.cpu_redis_timeout)]
    filler = Replica(0, args.binary, rig, work, redis.port, patience)
    measured = Replica(1, args.binary, rig, work, redis.port, patience)
    rows = []
    for round_number in range(args.rounds):
        stored, fresh = os.path.join(work, "stored"), os.path.join(work, "fresh")
        tag = f"c{round_number}x{random.randrange(10**9)}"
        write_names(stored, args.cpu_names, round_number, f"{tag}s")
        write_names(fresh, args.cpu_names, round_number, f"{tag}f")
        run_pass(filler.port, stored)  # now in Redis
        time.sleep(1)
        for kind, names in (("second_tier_hit", stored), ("miss", fresh)) if round_number % 2 == 0 else (("miss", fresh), ("second_tier_hit", stored)):
            outcomes = ("hit", "miss", "timeout", "skipped")
            lookups = [measured.metric("dotproxy_redis_lookups_total", f'result="{o}"') for o in outcomes]
            cpu = bench.cpu_seconds(measured.process.pid)
            result = run_pass(measured.port, names)
            used = bench.cpu_seconds(measured.process.pid) - cpu
            lookups = {o: measured.metric("dotproxy_redis_lookups_total", f'result="{o}"') - before
                       for o, before in zip(outcomes, lookups)}
            rows.append({"round": round_number, "kind": kind, "queries": result["completed"], "qps": result["qps"],
                         "cpu_us_per_query": round(used * 1e6 / max(1, result["completed"]), 2), "redis_lookups": lookups})
    bench.stop(filler.process)
    bench.stop(measured.process)
    redis.kill()
    medians = {kind: sorted(r["cpu_us_per_query"] for r in rows if r["kind"] == kind) for kind in ("second_tier_hit", "miss")}
    medians = {kind: values[len(values) // 2] for kind, values in medians.items()}
    medians["ratio"] = round(medians["second_tier_hit"] / medians["miss"], 2)
    return rows, medians


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["check", "bench"])
    parser.add_argument("--binary", required=True)
    parser.add_argument("--rig", required=True, help="a directory scripts/unbound-rig.sh started")
    parser.add_argument("--rate", type=int, default=2000, help="queries per second per replica (check: the load; bench: the scaling passes)")
    parser.add_argument("--only", choices=["scaling", "cpu"], help="bench: run one part")
    parser.add_argument("--assert-latency", action="store_true",
                        help="check: also fail when a fault's p99 exceeds the bound (for release builds on a quiet machine)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cpu-names", type=int, default=20000)
    parser.add_argument("--cpu-redis-timeout", type=float, default=50, help="bench: --redis-timeout (ms) of the CPU run's replicas")
    args = parser.parse_args()
    rig = read_rig(args.rig)
    work = tempfile.mkdtemp(prefix="dotproxy-redis-")
    try:
        if args.mode == "check":
            redis = Redis(work)
            redis.start()
            replicas = [Replica(i, args.binary, rig, work, redis.port) for i in range(3)]
            result = {"sharing": check_sharing(replicas, rig), "faults": check_faults(replicas, redis, rig, work, args.rate, args.assert_latency)}
        else:
            result = {}
            if args.only != "cpu":
                result["scaling"] = bench_scaling(args, rig, work)
            if args.only != "scaling":
                result["cpu"], result["cpu_medians"] = bench_cpu(args, rig, work)
        print(json.dumps(result, indent=1))
    finally:
        bench.stop_all()
    # Kept when the run failed: the replicas' and Redis's logs are in it.
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
