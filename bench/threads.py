"""CPU per delivery by thread kind, from the benchmark's readings of /proc/<bridge>/task/*/stat.

Input lines: `<stat path>\t<thread name>\t<ticks>`, appended every 0.2 s; a thread's last (highest)
reading counts. Prints one cell: `HTTP workers 21.3 µs, spool writer 6.1 µs, ...`.
"""
import sys
from collections import defaultdict

# Thread names as the kernel keeps them (15 characters): what each kind does.
KINDS = [
    ("actix-server wo", "HTTP workers (verify, peek, spool hand-off)"),
    ("actix-server ac", "HTTP accept"),
    ("spool-writer", "spool writer (write, fdatasync)"),
    ("tokio-r", "batcher, encoder and uploads (tokio workers and blocking threads)"),
    ("oncehub-bridge", "main (signals, shutdown)"),
]


def kind(name):
    for prefix, label in KINDS:
        if name.startswith(prefix):
            return label
    return "other"


def main(path, ticks_per_sec, rows):
    last = {}
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 3:
                continue
            tid, name, ticks = parts[0], parts[1], int(parts[2])
            last[tid] = (name, max(ticks, last.get(tid, (name, 0))[1]))
    per_kind = defaultdict(int)
    for name, ticks in last.values():
        per_kind[kind(name)] += ticks
    order = [label for _, label in KINDS] + ["other"]
    cells = [
        f"{label} {per_kind[label] / ticks_per_sec * 1e6 / rows:.1f} µs"
        for label in order
        if per_kind.get(label)
    ]
    print(", ".join(cells))


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3]))
