#!/usr/bin/env python3
"""Alternating A/B runs of the `benchmark` example (BENCHMARKS.md).

usage: python3 benches/ab.py N ROWS LABEL:COMMAND [LABEL:COMMAND ...]

Runs each COMMAND (a `benchmark` binary, with any flags of its own) N
times, alternating, each with `--rounds 3 --no-memory --only ROWS`, and
prints for each label the median over its runs of the fiber/tokio ratio
of every row (with the per-run ratios). Keep binaries apart by copying
them, e.g. `cp target/release/examples/benchmark /tmp/bench-before`.
"""
import re
import shlex
import statistics
import subprocess
import sys


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    n, rows = int(sys.argv[1]), sys.argv[2].split(",")
    specs = [a.split(":", 1) for a in sys.argv[3:]]
    res = {label: {} for label, _ in specs}
    for _ in range(n):
        for label, cmd in specs:
            args = shlex.split(cmd) + ["--rounds", "3", "--no-memory", "--only", ",".join(rows)]
            out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
            for line in out.splitlines():
                # name ... fiber/tokio  low-high  target  met
                m = re.match(r"^(\w+)\s.*?\s([0-9.]+)\s+[0-9.]+-[0-9.]+\s", line)
                if m and m.group(1) in rows:
                    res[label].setdefault(m.group(1), []).append(float(m.group(2)))
    for label, _ in specs:
        print(label, {r: (round(statistics.median(v), 3), v) for r, v in res[label].items()})


if __name__ == "__main__":
    main()
