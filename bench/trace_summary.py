#!/usr/bin/env python3
"""Where the time goes: each operator's own time (its duration less that of the operators it called)
in Chrome traces of LibTorch's or PyTorch's profiler, side by side, largest first.

  bench/trace_summary.py TRACE.json [MORE.json ...] [--top N]

The traces come from `ramflow_sd3_bench --profile` and `bench/python/sd3_ram_step.py --profile`.
Operators run by ramflow's own kernels (outside LibTorch's dispatcher) are not recorded; the line
"recorded" gives each trace's total of outermost events, so the difference to the step's time is what
ran unrecorded (ramflow's kernels, the Python interpreter, the profiler's gaps).
"""
import argparse
import collections
import json
import sys


def own_times(path):
    """Seconds and calls per operator name, and the seconds of the outermost events."""
    with open(path) as f:
        data = json.load(f)
    events = data["traceEvents"] if isinstance(data, dict) else data
    by_thread = collections.defaultdict(list)
    for e in events:
        # PyTorch's profiler adds one event spanning the whole recording: not an operator.
        if e.get("ph") == "X" and "dur" in e and not e["name"].startswith("PyTorch Profiler"):
            by_thread[(e.get("pid"), e.get("tid"))].append(e)
    own, calls, outermost = collections.Counter(), collections.Counter(), 0.0
    for thread_events in by_thread.values():
        # Events of one thread nest: sorted by start (the longer first at a tie), each one's parent
        # is the innermost open event that has not ended when it starts.
        thread_events.sort(key=lambda e: (e["ts"], -e["dur"]))
        stack, children = [], {}
        for e in thread_events:
            while stack and stack[-1]["ts"] + stack[-1]["dur"] <= e["ts"]:
                stack.pop()
            if stack:
                children[id(stack[-1])] = children.get(id(stack[-1]), 0.0) + e["dur"]
            else:
                outermost += e["dur"]
            stack.append(e)
        for e in thread_events:
            own[e["name"]] += (e["dur"] - children.get(id(e), 0.0)) / 1e6  # microseconds -> s
            calls[e["name"]] += 1
    return own, calls, outermost / 1e6


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("traces", nargs="+")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    try:
        runs = [own_times(p) for p in args.traces]
    except (OSError, ValueError, KeyError) as e:
        sys.exit(f"trace_summary.py: {e}")
    names = collections.Counter()
    for own, _, _ in runs:
        names.update(own)
    head = f"{'operator (own seconds, calls)':58s}" + "".join(f"{p[-24:]:>26s}" for p in args.traces)
    print(head)
    for name, _ in names.most_common(args.top):
        print(f"{name[:58]:58s}" + "".join(f"{own[name]:16.2f} {calls[name]:9d}" for own, calls, _ in runs))
    print(f"{'recorded (outermost events)':58s}" + "".join(f"{total:16.2f} {'':9s}" for _, _, total in runs))


if __name__ == "__main__":
    main()
