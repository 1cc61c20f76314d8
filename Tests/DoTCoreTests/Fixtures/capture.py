#!/usr/bin/env python3
"""Records one real DNS exchange as fixture files.

Usage: capture.py NAME UPSTREAM_PORT CLIENT [ARGS...]

Binds a UDP socket on 127.0.0.1, runs CLIENT (dig or kdig) with `@127.0.0.1 -p PORT` added, relays the
client's query to the upstream (Unbound on 127.0.0.1:UPSTREAM_PORT) and the reply back, and writes the
bytes exactly as they crossed the wire to packets/NAME.query.bin and packets/NAME.response.bin.
"""
import os, socket, subprocess, sys, threading

name, upstream_port, client = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "packets")
listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
listener.bind(("127.0.0.1", 0))
listener.settimeout(5)
port = listener.getsockname()[1]

def relay():
    query, peer = listener.recvfrom(65535)
    upstream = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    upstream.settimeout(5)
    upstream.sendto(query, ("127.0.0.1", upstream_port))
    reply = upstream.recv(65535)
    open(os.path.join(here, name + ".query.bin"), "wb").write(query)
    open(os.path.join(here, name + ".response.bin"), "wb").write(reply)
    listener.sendto(reply, peer)

thread = threading.Thread(target=relay)
thread.start()
subprocess.run(client + ["@127.0.0.1", "-p", str(port)], check=True, stdout=subprocess.DEVNULL)
thread.join()
print(f"{name}: query and response saved")
