"""CPU per delivery by thread kind, from the benchmark's readings of /proc/<bridge>/task/*/stat.

Input lines: `<stat path>\t<thread name>\t<ticks>\t<system ticks>[\t<minor faults>]`, appended
every 0.2 s; a thread's last (highest) reading counts. Prints one cell: `HTTP workers 21.3 µs
(kernel 9.0, 0.02 page faults, 2 threads), spool writer 6.1 µs (...), ...`: the kernel part is time
in system calls and page faults (sockets, writes, fsync, memory the allocator returned and takes
back), and the page faults are per delivery.
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
            if len(parts) < 3:
                continue
            tid, name, ticks = parts[0], parts[1], int(parts[2])
            sys_ticks = int(parts[3]) if len(parts) > 3 else 0
            faults = int(parts[4]) if len(parts) > 4 else 0
            prev = last.get(tid, (name, 0, 0, 0))
            last[tid] = (name, max(ticks, prev[1]), max(sys_ticks, prev[2]), max(faults, prev[3]))
    per_kind = defaultdict(lambda: [0, 0, 0, 0])
    for name, ticks, sys_ticks, faults in last.values():
        k = per_kind[kind(name)]
        k[0] += ticks
        k[1] += sys_ticks
        k[2] += 1
        k[3] += faults
    us = lambda t: t / ticks_per_sec * 1e6 / rows
    order = [label for _, label in KINDS] + ["other"]
    cells = [
        f"{label} {us(per_kind[label][0]):.1f} µs (kernel {us(per_kind[label][1]):.1f}, "
        f"{per_kind[label][3] / rows:.2f} page faults, "
        f"{per_kind[label][2]} thread{'s' if per_kind[label][2] != 1 else ''})"
        for label in order
        if per_kind.get(label) and per_kind[label][0]
    ]
    print(", ".join(cells))


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3]))
