"""Two run directories' metrics.jsonl hold the same numbers within 1e-5 relative, wall-clock times
left out: what a data-parallel run must give against one process. Numbers near zero get an absolute
2e-6: a deviation such as Flow-GRPO's max |ratio - 1| is a difference of float32 log-densities of
magnitude ~5, whose last bits (4.8e-7 each) move with the gradient's summation order.
Usage: same_metrics.py RUN_A RUN_B; exits non-zero naming the first difference."""
import json
import math
import sys

TIMES = ("seconds", "comm_seconds")


def lines(run):
    out = []
    for line in open(run + "/metrics.jsonl"):
        record = json.loads(line)
        for key in TIMES:
            record.pop(key, None)
        out.append(record)
    return out


def close(a, b, where):
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            sys.exit(f"{where}: keys {sorted(set(a) ^ set(b))} differ")
        for key in a:
            close(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            sys.exit(f"{where}: lengths {len(a)} and {len(b)} differ")
        for i, (x, y) in enumerate(zip(a, b)):
            close(x, y, f"{where}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        if a is None or b is None or not math.isclose(a, b, rel_tol=1e-5, abs_tol=2e-6):
            sys.exit(f"{where}: {a} vs {b}")
    elif a != b:
        sys.exit(f"{where}: {a} vs {b}")


a, b = lines(sys.argv[1]), lines(sys.argv[2])
if len(a) != len(b):
    sys.exit(f"{len(a)} vs {len(b)} lines")
for i, (x, y) in enumerate(zip(a, b)):
    close(x, y, f"line {i + 1}")
print(f"{len(a)} lines of metrics.jsonl equal within 1e-5")
