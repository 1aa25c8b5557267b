"""Each stage's share of the bridge's instructions, from `callgrind_annotate --inclusive=yes`.

A stage is the most expensive function whose name holds its pattern (inclusive: with everything
it calls). Stages nest (zstd is inside the Parquet writer, which is inside the batcher), so the
shares do not add up to 100 %.
"""
import re
import sys

STAGES = [
    ("HTTP: actix connection handling, whole", "actix_http::h1::dispatcher::"),
    ("HTTP: HMAC-SHA256 signature check", "oncehub_bridge::oncehub::signature::Verifier::verify"),
    ("HTTP: event id peek", "oncehub_bridge::event::peek"),
    ("HTTP: dedup key (SHA-256 of the id)", "oncehub_bridge::spool::dedup::EventKey::of"),
    ("spool writer thread, whole", "oncehub_bridge::spool::writer::run"),
    ("batcher, whole", "oncehub_bridge::batcher::Batcher::run::{{closure}}"),
    ("batcher: parse + build row + encode chunks", "oncehub_bridge::batcher::Batcher>::place"),
    ("batcher: JSON parse (event::Node)", "oncehub_bridge::event::Event::parse_text"),
    ("batcher: append to Arrow builders", "oncehub_bridge::event::columns::Builder::append "),
    ("batcher: chunk to Parquet (encode_pending)", "TableBuffer::encode_pending"),
    ("batcher: last row group and footer (finish)", "TableBuffer::finish"),
    ("Parquet: zstd compression", "ZSTD_compress"),
    ("allocator (mimalloc)", "mi_"),
]

LINE = re.compile(r"^\s*([\d,]+)\s+(?:\([\d.]+%\)\s+)?(.*)$")


def main(path, deliveries):
    total = None
    best = {}
    with open(path) as f:
        for line in f:
            m = LINE.match(line)
            if not m:
                continue
            ir = int(m.group(1).replace(",", ""))
            name = m.group(2)
            if "PROGRAM TOTALS" in name:
                total = ir
                continue
            for label, pattern in STAGES:
                if pattern in name and ir > best.get(label, 0):
                    best[label] = ir
    if not total:
        sys.exit("no PROGRAM TOTALS line in " + path)
    n = max(1, int(deliveries))
    print(f"\n## instructions by stage ({n} deliveries, {total / n:,.0f} instructions per delivery)\n")
    print("| stage | share of all instructions | instructions per delivery |")
    print("|---|---|---|")
    for label, _ in STAGES:
        ir = best.get(label, 0)
        print(f"| {label} | {100 * ir / total:.1f} % | {ir / n:,.0f} |")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
