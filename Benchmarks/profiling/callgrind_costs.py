"""Reads a callgrind profile: what each function ran itself, by instruction address when it has them.

Benchmarks/footprint/run.sh imports it. callgrind_annotate is not
used because it counts the calls still running at a dump (the event loops') as their callers' own
instructions.
"""
import re

_NAME = re.compile(r"^(c?)(ob|fn|fl|fi|fe)=\((\d+)\)(?: (.*))?$")
_COST = re.compile(r"^(0x[0-9a-f]+|[+-]\d+|\*|\d+)\s+(?:\S+\s+)?(\d+)$")


def own_costs(path):
    """Yields (object, function, address, instructions) for each cost line that is a function's own.

    The inclusive cost of a call, on the line after `calls=`, is skipped. `address` is the instruction's
    address when callgrind ran with `--dump-instr=yes`, else None. Names are as callgrind wrote them
    (mangled with `--demangle=no`); objects are full paths. The profile has one event, instructions
    (callgrind's default, without `--cache-sim` or `--collect-jumps`).
    """
    names, obj, fn, last, after_call, by_address = {}, None, None, 0, False, False
    with open(path) as lines:
        for line in lines:
            line = line.rstrip()
            if line.startswith("positions:"):
                by_address = "instr" in line.split()
                continue
            match = _NAME.match(line)
            if match:
                called, kind, number, name = match.groups()
                kind = "fl" if kind in ("fi", "fe") else kind  # fl, fi and fe share one table
                if name is not None:
                    names[kind, number] = name
                if not called and kind == "ob":
                    obj = names[kind, number]
                elif not called and kind == "fn":
                    fn = names[kind, number]
                continue
            if line.startswith("calls="):
                after_call = True
                continue
            match = _COST.match(line)
            if not match:
                continue
            address = None
            if by_address:
                # Absolute (0x...), or relative to the previous cost line's (+n, -n, * for the same).
                position = match.group(1)
                last = int(position, 16) if position.startswith("0x") else last if position == "*" else last + int(position)
                address = last
            if after_call:
                after_call = False
                continue
            yield obj, fn, address, int(match.group(2))
