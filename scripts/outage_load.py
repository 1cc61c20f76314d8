#!/usr/bin/env python3
"""Paced UDP load with unique names, and commands run at set times, to time an outage's end.

Sends `--rate` queries per second for `--seconds`, each for a new name under unique.test, to a DNS
server on 127.0.0.1, and runs each `--at SECONDS COMMAND` at its time in the background (a shell command: a
SIGSTOP, a rig restart). The last command's start marks the resume, so the time a restarted server
takes to start counts as part of the recovery. Prints one JSON object: replies by code before,
during and after the outage, the recovery time (from the resume to the first NOERROR answer to a
query sent after it) and the share of queries sent from `--settle` seconds after the resume on that
got NOERROR. Exits 1 when recovery took longer than `--max-recovery`, or when the settled share or
the share before the outage is below `--min-settled`.

    outage_load.py --port 5053 --rate 5000 --seconds 20 --at 3 'kill -STOP 123' --at 11 'kill -CONT 123'
"""
import argparse
import json
import select
import socket
import struct
import subprocess
import sys
import time

RCODES = {0: "NOERROR", 2: "SERVFAIL", 3: "NXDOMAIN", 5: "REFUSED"}


def query(seq):
    name = b"".join(bytes([len(label)]) + label for label in (b"o%d" % seq, b"unique", b"test")) + b"\x00"
    return struct.pack(">HHHHHH", seq & 0xFFFF, 0x0100, 1, 0, 0, 0) + name + b"\x00\x01\x00\x01"


def sequence_of(reply):
    # The first label of the question is o<seq>.
    if len(reply) < 14 or reply[13:14] != b"o":
        return None
    length = reply[12]
    try:
        return int(reply[14 : 13 + length])
    except ValueError:
        return None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rate", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--at", nargs=2, action="append", metavar=("SECONDS", "COMMAND"), default=[])
    parser.add_argument("--settle", type=float, default=3)
    parser.add_argument("--max-recovery", type=float, default=3)
    parser.add_argument("--min-settled", type=float, default=0.99)
    parser.add_argument("--timeline", action="store_true", help="print replies by code per half second to stderr")
    args = parser.parse_args()
    actions = sorted((float(at), command) for at, command in args.at)

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.connect(("127.0.0.1", args.port))
    sock.setblocking(False)
    sent_at = []  # by sequence number, seconds since start
    replies = {}  # sequence -> (rcode, seconds since start)
    action_times = []
    running = []
    start = time.monotonic()
    end = start + args.seconds
    next_action = 0
    while True:
        now = time.monotonic()
        if now >= end + 2:  # two more seconds to collect late replies
            break
        while next_action < len(actions) and now - start >= actions[next_action][0]:
            # Started in the background, so the load keeps its pace; the time is its start.
            running.append(subprocess.Popen(actions[next_action][1], shell=True, stdout=subprocess.DEVNULL))
            action_times.append(now - start)
            next_action += 1
        if now < end:
            due = int((now - start) * args.rate) - len(sent_at)
            for _ in range(max(0, min(due, 200))):
                try:
                    sock.send(query(len(sent_at)))
                except BlockingIOError:
                    break
                sent_at.append(now - start)
        ready, _, _ = select.select([sock], [], [], 0.001)
        if ready:
            while True:
                try:
                    reply = sock.recv(4096)
                except (BlockingIOError, ConnectionRefusedError):
                    break
                seq = sequence_of(reply)
                if seq is not None and seq < len(sent_at) and seq not in replies:
                    replies[seq] = (reply[3] & 0x0F, time.monotonic() - start)

    for process in running:
        if process.wait() != 0:
            sys.exit(f"outage_load: an action failed: {process.args}")
    resume = action_times[-1] if action_times else 0.0
    outage_start = action_times[0] if action_times else 0.0

    def tally(lo, hi):
        counts = {"sent": 0, "lost": 0}
        for seq, at in enumerate(sent_at):
            if lo <= at < hi:
                counts["sent"] += 1
                if seq in replies:
                    name = RCODES.get(replies[seq][0], str(replies[seq][0]))
                    counts[name] = counts.get(name, 0) + 1
                else:
                    counts["lost"] += 1
        return counts

    first_good = min(
        (at for seq, (rcode, at) in replies.items() if rcode == 0 and sent_at[seq] >= resume), default=None
    )
    recovery = None if first_good is None else first_good - resume
    settled = tally(resume + args.settle, args.seconds)
    settled_share = settled.get("NOERROR", 0) / max(1, settled["sent"])
    result = {
        "rate": args.rate,
        "sent": len(sent_at),
        "achieved_rate": round(len(sent_at) / args.seconds),
        "actions_at": [round(t, 3) for t in action_times],
        "before": tally(0, outage_start),
        "outage": tally(outage_start, resume),
        "after_resume": tally(resume, args.seconds),
        "recovery_seconds": None if recovery is None else round(recovery, 3),
        "settled_noerror_share": round(settled_share, 4),
    }
    if args.timeline:
        for slot in range(int(args.seconds * 2)):
            counts = tally(slot / 2, (slot + 1) / 2)
            print(f"{slot / 2:5.1f}s " + " ".join(f"{k}={v}" for k, v in counts.items()), file=sys.stderr)
    print(json.dumps(result))
    before = result["before"]
    before_share = before.get("NOERROR", 0) / max(1, before["sent"])
    ok = recovery is not None and recovery <= args.max_recovery and min(settled_share, before_share) >= args.min_settled
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
