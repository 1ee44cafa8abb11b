#!/bin/sh
# What one 100-byte append touches right after a system call: distinct 4 KiB pages and 64-byte
# cache lines, instruction fetches and data apart, by mapping (bench/touch/append_touch.c runs
# under valgrind's lackey, which traces every access). Needs valgrind.
#
#   bench/touch/append_touch.sh [BUILD_DIR] [ROUNDS]
#
# valgrind does not use the vDSO, so the clock read's two pages (vDSO text, vvar data) are not
# in the counts; on the real machine they are.
set -eu
build=${1:-build}
rounds=${2:-50}
bin=$build/bin/comet_append_touch
command -v valgrind >/dev/null || { echo "append_touch.sh: valgrind is not installed" >&2; exit 2; }
[ -x "$bin" ] || { echo "append_touch.sh: $bin missing (make $bin)" >&2; exit 2; }
tmp=$(mktemp -d /tmp/comet-touch.XXXXXX)
trap 'rm -rf "$tmp"' EXIT INT TERM
for api in stream name; do
  rm -rf "$tmp/data"
  valgrind --tool=lackey --trace-mem=yes --log-file="$tmp/trace" \
    "$bin" "$tmp/data" "$rounds" "$api" 2>"$tmp/out"
  python3 - "$tmp/out" "$tmp/trace" "$api" <<'PY'
import sys, statistics, collections
out, trace, api = sys.argv[1:4]
begin = end = None
maps = []
for line in open(out):
    if line.startswith("MARKERS "):
        begin, end = (int(x, 16) for x in line.split()[1:3])
    elif line.startswith("MAP "):
        f = line.split()
        lo, hi = (int(x, 16) for x in f[1].split("-"))
        name = f[6] if len(f) > 6 else "[anon]"
        maps.append((lo, hi, name.rsplit("/", 1)[-1]))
def where(page):
    a = page << 12
    for lo, hi, name in maps:
        if lo <= a < hi:
            return name
    return "?"
rounds = []  # (I pages, I lines, D pages, D lines, per-mapping data pages)
inside = False
for line in open(trace):
    if len(line) < 4 or line[0] == "=":
        continue
    kind = line[:2].strip()
    try:
        addr = int(line[3:].split(",")[0], 16)
    except ValueError:
        continue
    if kind == "S" and addr == begin:
        inside, ip, il, dp, dl = True, set(), set(), set(), set()
        continue
    if kind == "S" and addr == end and inside:
        inside = False
        rounds.append((ip, il, dp, dl))
        continue
    if not inside:
        continue
    if kind == "I":
        ip.add(addr >> 12); il.add(addr >> 6)
    else:
        dp.add(addr >> 12); dl.add(addr >> 6)
if not rounds:
    sys.exit("append_touch.sh: no marked appends in the trace")
key = lambda r: len(r[0]) + len(r[2])
rounds.sort(key=key)
med = rounds[len(rounds) // 2]
print(f"{api}: {len(rounds)} appends after write(2); the median one touched "
      f"{len(med[0])} code pages / {len(med[1])} code lines, "
      f"{len(med[2])} data pages / {len(med[3])} data lines "
      f"(all appends: {key(rounds[0])}-{key(rounds[-1])} pages)")
for label, pages, lines in (("code", med[0], med[1]), ("data", med[2], med[3])):
    by = collections.Counter(where(p) for p in pages)
    lb = collections.Counter(where(l >> 6) for l in lines)
    print(f"  {label}: " + ", ".join(f"{n} {by[n]}p/{lb[n]}l" for n in sorted(by, key=lambda n: -by[n])))
PY
done
