#!/bin/bash
# `make run`: a real prefork server under the LD_PRELOAD shim. nginx (a master and 2 workers, as
# www-data when run as root) starts with the shim on a free loopback port, answers a few
# thousand requests, and stops; then the captured access and error lines, the per-process and
# per-shard counts, and the cost of a captured line beside write(2) are shown. Every process
# started here is stopped by pid; the data directory stays for the commands printed at the end.
#
#   tools/server_demo.sh BUILD_DIR DATA_DIR
set -eu

BUILD=$(cd "$1" && pwd)
DATA=$2
COMET=$BUILD/bin/comet
SHIM=$BUILD/lib/libcomet_preload.so
LINE_COST=$BUILD/bin/comet_line_cost
REQUESTS=3000
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

say() { printf '\n== %s\n' "$*"; }
die() { printf 'make run: %s\n' "$*" >&2; exit 1; }

[ -x "$NGINX" ] || die "nginx is not installed (make deps installs it, as root)"
command -v curl >/dev/null || die "curl is not installed (make deps installs it, as root)"

WORK=$(mktemp -d /tmp/comet-run-XXXXXX)
chmod 755 "$WORK"
PIDS=""
cleanup() {
  for p in $PIDS; do kill -KILL "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The workers drop to www-data: the data directory must be reachable by that user.
mkdir -p "$(dirname "$DATA")"
DATA=$(cd "$(dirname "$DATA")" && pwd)/$(basename "$DATA")
USER_LINE=""
if [ "$(id -u)" = 0 ]; then
  USER_LINE="user www-data;"
  if ! runuser -u www-data -- test -x "$(dirname "$DATA")" 2>/dev/null; then
    echo "  ($(dirname "$DATA") is not reachable by www-data: the data goes to $WORK-data)"
    DATA=$WORK-data
  fi
fi
rm -rf "$DATA"

PORT=$((20000 + $$ % 20000))
while (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; do PORT=$((PORT + 1)); done

cat > "$WORK/nginx.conf" <<EOF
worker_processes 2;
$USER_LINE
pid $WORK/nginx.pid;
error_log stderr notice;
events { worker_connections 256; }
http {
  log_format demo '\$pid \$remote_addr [\$time_local] "\$request" \$status \$body_bytes_sent';
  access_log /dev/stdout demo;
  client_body_temp_path $WORK/body;
  proxy_temp_path $WORK/proxy;
  fastcgi_temp_path $WORK/fastcgi;
  uwsgi_temp_path $WORK/uwsgi;
  scgi_temp_path $WORK/scgi;
  server {
    listen 127.0.0.1:$PORT reuseport;
    root $WORK/www;
    location /hello { return 200 "hello\n"; }
  }
}
EOF

say "nginx under the shim: LD_PRELOAD=$SHIM COMET_DIR=$DATA nginx (port $PORT)"
LD_PRELOAD=$SHIM COMET_DIR=$DATA setsid "$NGINX" -p "$WORK/" -e stderr -c "$WORK/nginx.conf" \
  -g 'daemon off;' > "$WORK/stdout" 2> "$WORK/stderr" &
MASTER=$!
PIDS=$MASTER
for _ in $(seq 200); do
  curl -s -o /dev/null "http://127.0.0.1:$PORT/hello/ready" && break
  kill -0 "$MASTER" 2>/dev/null || die "nginx did not start: $(cat "$WORK/stderr")"
  sleep 0.05
done
WORKERS=$(cat "/proc/$MASTER/task/$MASTER/children")
PIDS="$PIDS $WORKERS"
echo "   master $MASTER, workers" $WORKERS "(as $(ps -o user= -p "${WORKERS%% *}"))"

say "$REQUESTS requests (curl, a connection each, 4 at a time), and 5 for files that do not exist"
START=$(date +%s%N)
curl -s -Z --parallel-max 4 -H 'Connection: close' "http://127.0.0.1:$PORT/hello/[1-$REQUESTS]" \
  > "$WORK/replies" 2> /dev/null
curl -s "http://127.0.0.1:$PORT/missing/[1-5]" > /dev/null
END=$(date +%s%N)
echo "   $(grep -c '^hello$' "$WORK/replies") of $REQUESTS answered in $(( (END - START) / 1000000 )) ms"

# The shards and their owners while nginx runs (a worker logs a request after answering it:
# wait until every line is in).
captured() { "$COMET" stats "$DATA" | awk '$1 ~ /^stdout:shard:/ { n += $3 } END { print n + 0 }'; }
for _ in $(seq 100); do
  [ "$(captured)" -ge $((REQUESTS + 6)) ] && break
  sleep 0.05
done
STATS=$("$COMET" stats "$DATA")

kill -QUIT "$MASTER"
wait "$MASTER" || true
for p in $WORKERS; do kill -KILL "$p" 2>/dev/null || true; done
PIDS=""
echo "   nginx stopped; its real stdout got $(wc -c < "$WORK/stdout") bytes, its real stderr $(wc -c < "$WORK/stderr")"

# The stream of a prefix holding the most entries.
largest_stream() {
  printf '%s\n' "$STATS" | awk -v p="$1" '$1 ~ "^" p ":shard:" && $3 > n { n = $3; s = $1 } END { print s }'
}
OUT_STREAM=$(largest_stream stdout)
ERR_STREAM=$(largest_stream stderr)
say "captured access lines (the first field is nginx's \$pid): comet tail $DATA $OUT_STREAM -n 3"
"$COMET" tail "$DATA" "$OUT_STREAM" -n 3
say "captured error log: comet tail $DATA $ERR_STREAM -n 6"
"$COMET" tail "$DATA" "$ERR_STREAM" -n 6
say "per process and per shard, while nginx ran: comet stats $DATA"
printf '%s\n' "$STATS" | sed -n '/^processes:/,/^operations/p' | sed '$d'
say "access lines per process (each writes to shards it owns)"
for s in $(printf '%s\n' "$STATS" | awk '$1 ~ /^stdout:shard:/ { print $1 }'); do
  "$COMET" tail "$DATA" "$s" -n 1000000
done | awk '{ n[$1]++ } END { for (p in n) printf "   pid %s: %d lines\n", p, n[p] }' | sort

say "cost of one 100-byte line in the program that writes it (p50 of 100000, one run)"
# cost OUTPUT [NAME=VALUE...]: the p50 of comet_line_cost writing to OUTPUT in that environment.
cost() {
  local out=$1
  shift
  env "$@" "$LINE_COST" write 100000 "$WORK/cost" > "$out"
  awk '{ print $3 }' "$WORK/cost"
}
# Under `comet probe` every append would also trap into the kernel for its USDT probe: the cost
# is measured with the probes firing on one append in 65536, as when nothing is attached.
CAPTURED=$(cost /dev/null LD_PRELOAD="$SHIM" COMET_DIR="$WORK/cost-data" \
  COMET_CONFIG_metrics_probe_sample=65536)
NULL=$(cost /dev/null)
FILE=$(cost "$WORK/cost-file")
printf '   %-34s %6s ns\n' "write(2) captured by the shim" "$CAPTURED" \
  "write(2) to /dev/null, no shim" "$NULL" "write(2) to a file, no shim" "$FILE"
echo "   (make bench measures printf, fwrite, write and syslog the same way)"

say "the data stays in $DATA; try:"
cat <<EOF
   $COMET stats $DATA
   $COMET tail $DATA $OUT_STREAM -n 20
   $COMET inspect $DATA
   LD_PRELOAD=$SHIM COMET_DIR=/tmp/mylog your-program
   $COMET demo      (the engine on its own: two million lines, about 600 MB)
EOF
