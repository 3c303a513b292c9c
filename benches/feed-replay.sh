#!/usr/bin/env bash
# Throughput of a raw TCP feed and of billbox replay, with the release
# binary and the reference receiver, on 127.0.0.1 (ports 18655-18759).
#
#   bash benches/feed-replay.sh            # FEED_RECORDS=200000 REPLAY_RECORDS=20000
#
# feed: records sent to a TCP port in one stream, until a feed client has
# every byte (checked byte for byte). replay: records delivered to one
# receiver (durable: it fsyncs before answering), then `billbox replay
# --from 1 --url` to a second one, batch_max 1 and 500, window 32.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --bin billbox >/dev/null 2>&1
BIN=$PWD/target/release/billbox
W=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$W"' EXIT
FEED_RECORDS=${FEED_RECORDS:-200000}
REPLAY_RECORDS=${REPLAY_RECORDS:-20000}

python3 - "$BIN" "$W/feed" "$FEED_RECORDS" <<'PY'
import os, socket, subprocess, sys, time
bin_, d, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
os.makedirs(d)
open(d + "/b.toml", "w").write(f'''[gateway]
name = "gw"
data_dir = "{d}/data"
spool_dir = "{d}/spool"
[metrics]
listen = "127.0.0.1:18757"
[[ports]]
name = "p"
listen = "127.0.0.1:18758"
billing_eor = "\\n"
billing_records = 1000
billing_timeout = "1s"
[[tcp_feed]]
name = "office"
listen = "127.0.0.1:18759"
''')
p = subprocess.Popen([bin_, "--log-level", "warn", "run", "--config", d + "/b.toml"],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
for _ in range(100):
    try:
        c = socket.create_connection(("127.0.0.1", 18759)); break
    except OSError:
        time.sleep(0.1)
data = b"".join(("%08d,2026/11/24 13:00:00,00:01:05,4321,%s\n" % (i, "x" * 100)).encode() for i in range(1, n + 1))
t = time.time()
s = socket.create_connection(("127.0.0.1", 18758)); s.sendall(data); s.close()
buf = bytearray()
c.settimeout(60)
while len(buf) < len(data):
    b = c.recv(1 << 20)
    if not b:
        break
    buf += b
dt = time.time() - t
print(f"feed: {n} records ({len(data)} bytes) at the client in {dt:.2f} s: {n / dt:.0f} records/s; byte-exact: {bytes(buf) == data}")
p.terminate(); p.wait()
PY

for batch in 1 500; do
  d=$W/replay-$batch; mkdir -p "$d"
  "$BIN" receive --listen 127.0.0.1:18655 --out "$d/a" --log-level error & a=$!
  "$BIN" receive --listen 127.0.0.1:18656 --out "$d/b" --log-level error & b=$!
  cat >"$d/b.toml" <<EOT
[gateway]
name = "gw"
data_dir = "$d/data"
spool_dir = "$d/spool"
[store]
retain = "1h"
[metrics]
listen = "127.0.0.1:18657"
[[ports]]
name = "p"
listen = "127.0.0.1:18658"
billing_eor = "\n"
billing_records = 1000
billing_timeout = "1s"
[delivery]
primary = "http://127.0.0.1:18655/billing"
batch_max = $batch
EOT
  "$BIN" --log-level warn run --config "$d/b.toml" >"$d/log" 2>&1 & p=$!
  for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/18658) 2>/dev/null && break; sleep 0.1; done
  python3 -c "
import socket, sys
n = $REPLAY_RECORDS
s = socket.create_connection(('127.0.0.1', 18658))
s.sendall(b''.join(('%08d,2026/11/24 13:00:00,00:01:05,4321,%s\n' % (i, 'x' * 100)).encode() for i in range(1, n + 1)))
s.close()"
  for _ in $(seq 1 300); do
    done_seq=$(curl -s 127.0.0.1:18657/metrics | awk '/^billbox_done_sequence\{destination="delivery"/ {print $2}')
    [ "$done_seq" = "$REPLAY_RECORDS" ] && break
    sleep 0.2
  done
  start=$(date +%s.%N)
  "$BIN" replay --config "$d/b.toml" --port p --from 1 --url http://127.0.0.1:18656/billing >/dev/null 2>&1
  end=$(date +%s.%N)
  python3 -c "n=$REPLAY_RECORDS; s=$end-$start; print(f'replay: {n} records, batch_max $batch, window 32, to a durable receiver: {s:.2f} s, {n/s:.0f} records/s')"
  kill "$p" "$a" "$b"; wait "$p" "$a" "$b" 2>/dev/null || true
done
