#!/usr/bin/env python3
"""Writes a blocklist of N distinct, realistic-looking domains (default 1,000,000), deterministic.

    Benchmarks/filter/generate-list.py [N] [hosts|plain|adblock] > list.txt

Names are two to four labels over a few hundred registrable domains and common TLDs, as ad and
tracker lists look; the format is a hosts file by default.
"""
import random
import sys

count = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
style = sys.argv[2] if len(sys.argv) > 2 else "hosts"
rng = random.Random(20261205)
syllables = ["ad", "ads", "track", "pix", "cdn", "metric", "beacon", "stat", "click", "serve", "media", "tag",
             "sync", "log", "data", "api", "edge", "img", "js", "px", "rtb", "bid", "cast", "net", "web"]
tlds = ["com", "net", "org", "io", "co", "info", "biz", "de", "ru", "cn", "xyz", "top", "online"]


def label():
    return "".join(rng.choice(syllables) for _ in range(rng.randint(1, 3))) + str(rng.randint(0, 999))


seen = set()
out = sys.stdout
while len(seen) < count:
    name = ".".join(label() for _ in range(rng.randint(1, 3))) + "." + rng.choice(tlds)
    if name in seen:
        continue
    seen.add(name)
    if style == "hosts":
        out.write(f"0.0.0.0 {name}\n")
    elif style == "adblock":
        out.write(f"||{name}^\n")
    else:
        out.write(name + "\n")
