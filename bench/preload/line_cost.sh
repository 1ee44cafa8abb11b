#!/bin/bash
# The shim's benchmark (make bench): what one 100-byte line costs the program writing it,
# through printf, fwrite, write and syslog, captured by the shim, beside the same program
# without the shim writing to a file, to /dev/null, and sending syslog's datagram to a local
# socket. One run of comet_line_cost per cell (every line timed on its own); the table goes to
# stdout and to BUILD/bench/preload.md.
#
#   bench/preload/line_cost.sh BUILD_DIR [LINES]
set -eu

BUILD=$(cd "$1" && pwd)
LINES=${2:-200000}
LINE_COST=$BUILD/bin/comet_line_cost
SHIM=$BUILD/lib/libcomet_preload.so
WORK=$(mktemp -d /tmp/comet-line-cost-XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# run MODE OUTPUT [NAME=VALUE...]: "p50 p99" of LINES lines.
run() {
  local mode=$1 out=$2
  shift 2
  env "$@" "$LINE_COST" "$mode" "$LINES" "$WORK/result" > "$out"
  awk '{ printf "%d %d", $3, $5 }' "$WORK/result"
}
cell() { [ -n "$1" ] && printf '%s / %s ns' $1 || printf -- '-'; }

declare -A captured file null
for mode in printf fwrite write syslog; do
  captured[$mode]=$(run "$mode" /dev/null LD_PRELOAD="$SHIM" COMET_DIR="$WORK/data-$mode")
done
for mode in printf fwrite write; do
  file[$mode]=$(run "$mode" "$WORK/file-$mode")
  null[$mode]=$(run "$mode" /dev/null)
done
null[syslog]=$(run syslog-socket /dev/null)

TABLE=$WORK/table
{
  echo "| 100-byte line (p50 / p99) | captured by the shim | no shim: to a file | no shim: to /dev/null (syslog: datagram to a local socket) |"
  echo "| --- | --- | --- | --- |"
  for mode in printf fwrite write syslog; do
    echo "| $mode | $(cell "${captured[$mode]}") | $(cell "${file[$mode]:-}") | $(cell "${null[$mode]}") |"
  done
} > "$TABLE"
mkdir -p "$BUILD/bench"
cp "$TABLE" "$BUILD/bench/preload.md"
echo
echo "LD_PRELOAD shim: cost per line, $LINES lines per cell, one run (build/bench/preload.md)"
cat "$TABLE"
for mode in printf fwrite write syslog; do
  p50=${captured[$mode]%% *}
  awk -v m="$mode" -v p="$p50" 'BEGIN {
    printf "captured %s p50 %d ns (target <= 150 ns): %s\n", m, p, p <= 150 ? "met" : "missed" }'
done
W=${captured[write]%% *} N=${null[write]%% *} F=${file[write]%% *}
awk -v w="$W" -v n="$N" -v f="$F" 'BEGIN {
  printf "captured write: %.1fx cheaper than write(2) to /dev/null, %.1fx than to a file\n", n / w, f / w }'
