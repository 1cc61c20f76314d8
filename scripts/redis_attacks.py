#!/usr/bin/env python3
"""A hostile or broken Redis behind dotproxy's shared cache tier: every query must still be answered,
correctly, within the upstream's time plus the tier's deadline, with memory bounded, and what Redis
did counted.

    scripts/redis_attacks.py --binary B --rig DIR [--queries 1500]

For each mode a fake Redis (this script, asyncio) listens on loopback and dotproxy (its default flags
plus --redis and a metrics port) is started against it; 1,500 new names are then asked at 500 a second
(every one a first-tier miss, so every one asks Redis first):
  silent       answers the connection's PING, then never again
  slow         answers every command correctly (a miss), one octet every 20 ms
  garbage      answers the PING, then random octets
  huge         answers the PING, then a bulk string announced as 1 GB and sent without end
  unsolicited  answers the PING, then floods replies nobody asked for
  poison       answers every GET with a well-formed entry for another name (evil.test, 6.6.6.6)
  refuse       closes every connection at once
Fails when a query goes unanswered or gets a wrong answer, when RSS grows by more than 32 MiB, or when
the proxy's reconnections outrun the back-off (100 ms doubling to 5 s). Prints one JSON line per mode.
"""

import argparse
import asyncio
import json
import math
import os
import random
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Benchmarks", "redis"))
import replicas  # noqa: E402  (rig, replica and query helpers)
import bench  # noqa: E402

MODES = ["silent", "slow", "garbage", "huge", "unsolicited", "poison", "refuse"]


def poisoned_value():
    """A stored entry (version 1, kept 60 s) holding an answer for evil.test: A 6.6.6.6."""
    name = b"\x04evil\x04test\x00"
    reply = struct.pack(">HHHHHH", 0, 0x8180, 1, 1, 0, 0) + name + struct.pack(">HH", 1, 1)
    reply += b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + bytes([6, 6, 6, 6])
    return b"\x01" + struct.pack(">q", 60000) + reply


class FakeRedis:
    def __init__(self, mode):
        self.mode = mode
        self.connections = 0
        self.loop = asyncio.new_event_loop()
        self.port = None
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        ready.wait(5)

    def _run(self, ready):
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self.serve, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()

    async def commands(self, reader):
        """Yields each command's arguments (RESP arrays of bulk strings, as clients send)."""
        while True:
            header = await reader.readline()
            if not header:
                return
            if not header.startswith(b"*"):
                continue
            arguments = []
            for _ in range(int(header[1:])):
                length = int((await reader.readline())[1:])
                arguments.append((await reader.readexactly(length + 2))[:-2])
            yield arguments

    async def serve(self, reader, writer):
        self.connections += 1
        try:
            if self.mode == "refuse":
                return
            answered_ping = False
            async for command in self.commands(reader):
                name = command[0].upper()
                if not answered_ping or self.mode == "slow":
                    reply = b"+PONG\r\n" if name == b"PING" else b"$-1\r\n" if name == b"GET" else b":-2\r\n" if name == b"PTTL" else b"+OK\r\n"
                    if self.mode == "slow" and answered_ping:
                        for octet in reply:
                            writer.write(bytes([octet]))
                            await writer.drain()
                            await asyncio.sleep(0.02)
                    else:
                        writer.write(reply)
                        await writer.drain()
                    answered_ping = answered_ping or name == b"PING"
                    continue
                if self.mode == "silent":
                    continue
                if self.mode == "garbage":
                    writer.write(bytes(random.randrange(256) for _ in range(64)))
                elif self.mode == "huge":
                    writer.write(b"$1000000000\r\n")
                    for _ in range(2000):  # 2 MB, beyond the reader's 1 MiB bound
                        writer.write(b"x" * 1024)
                        await writer.drain()
                elif self.mode == "unsolicited":
                    for _ in range(1000):
                        writer.write(b"+OK\r\n" * 100)
                        await writer.drain()
                elif self.mode == "poison":
                    if name == b"GET":
                        value = poisoned_value()
                        writer.write(b"$%d\r\n%s\r\n" % (len(value), value))
                    elif name == b"PTTL":
                        writer.write(b":50000\r\n")
                    else:
                        writer.write(b"+OK\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def attack(mode, args, rig, work):
    fake = FakeRedis(mode)
    replica = replicas.Replica(0, args.binary, rig, work, None, ["--redis", f"redis://127.0.0.1:{fake.port}"])
    time.sleep(0.5)
    rss_before = rss_mib(replica.process.pid)
    tag = f"{mode}{random.randrange(10**9)}"
    wrong, unanswered, latencies = 0, 0, []
    started = time.time()
    for index in range(args.queries):
        begun = time.time()
        result = replicas.ask(replica.port, f"{tag}-{index}.unique.test", timeout=3.0)
        if result is None:
            unanswered += 1
        else:
            latencies.append(result[2])
            if result[0] != 0 or result[1] is None:
                wrong += 1
        time.sleep(max(0.0, 1 / args.rate - (time.time() - begun)))
    elapsed = time.time() - started
    answer = replicas.ask(replica.port, f"{tag}-0.unique.test")  # now cached: still the right address
    figures = {
        "mode": mode, "queries": args.queries, "unanswered": unanswered, "wrong": wrong,
        "p99_ms": round(bench.percentile_99(latencies), 2) if latencies else None,
        "rss_mib": [round(rss_before, 1), round(rss_mib(replica.process.pid), 1)],
        "connections_to_fake": fake.connections,
        "lookups": {r: replica.metric("dotproxy_redis_lookups_total", f'result="{r}"') for r in ("hit", "miss", "timeout", "error", "skipped")},
        "connects": {r: replica.metric("dotproxy_redis_connects_total", f'result="{r}"') for r in ("ok", "failed")},
    }
    bench.stop(replica.process)
    problems = []
    if unanswered or wrong:
        problems.append(f"{unanswered} unanswered, {wrong} wrong answers")
    if answer is None or answer[0] != 0:
        problems.append("a cached name was not answered")
    if figures["rss_mib"][1] - figures["rss_mib"][0] > 32:
        problems.append("RSS grew by more than 32 MiB")
    # The back-off allows one connection, then one after 0.1, 0.2, 0.4 … s, at most one per 5 s from then.
    allowed = 2 + math.log2(1 + elapsed / 0.1) + elapsed / 5
    if fake.connections > allowed:
        problems.append(f"{fake.connections} connections in {elapsed:.1f} s (back-off allows {allowed:.0f}): reconnects outran the back-off")
    return figures, problems


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", required=True)
    parser.add_argument("--rig", required=True)
    parser.add_argument("--queries", type=int, default=1500)
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--modes", default=",".join(MODES))
    args = parser.parse_args()
    rig = replicas.read_rig(args.rig)
    work = os.path.join(args.rig, "redis-attacks")
    os.makedirs(work, exist_ok=True)
    failed = False
    try:
        for mode in args.modes.split(","):
            figures, problems = attack(mode, args, rig, work)
            print(("ok   " if not problems else "FAIL ") + json.dumps(figures), flush=True)
            for problem in problems:
                print(f"redis attacks: {mode}: {problem}", file=sys.stderr)
            failed = failed or bool(problems)
    finally:
        bench.stop_all()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
