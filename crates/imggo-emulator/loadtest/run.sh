#!/usr/bin/env bash
# Load test of the emulator with wrk: GET /api/jobs/{id} and a ~100 KB multipart ingest.
# Usage: crates/imggo-emulator/loadtest/run.sh [DURATION] [CONNECTIONS]
# Needs a release build: cargo build --release -p imggo-cli
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
bin="${BIN:-$root/target/release/imggo}"
image="${IMAGE:-$root/../shared/corpus/real/city-buildings1.jpg}"
duration="${1:-10s}"
conns="${2:-64}"

out="$(mktemp)"
"$bin" emulator --addr 127.0.0.1:0 >"$out" 2>/dev/null &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; rm -f "$out"' EXIT
for _ in $(seq 100); do grep -q listening "$out" && break; sleep 0.05; done
url="$(head -1 "$out" | sed 's/^listening on //')"

auth=(-H "Authorization: Bearer bench")
pattern="$(curl -sf "${auth[@]}" -H 'Content-Type: application/json' \
  -d '{"name":"Bench","instructions":"Extract everything"}' "$url/api/patterns" |
  sed -E 's/.*"id":"([^"]+)".*/\1/')"
job="$(curl -sf "${auth[@]}" -F "image=@$image;type=image/jpeg" \
  "$url/api/patterns/$pattern/ingest" | sed -E 's/.*"job_id":"([^"]+)".*/\1/')"

echo "== GET /api/jobs/{id} ($duration, $conns connections)"
wrk -t2 -c"$conns" -d"$duration" "${auth[@]}" "$url/api/jobs/$job"
echo "== POST /api/patterns/{id}/ingest, $(stat -c %s "$image") byte image ($duration, $conns connections)"
wrk -t2 -c"$conns" -d"$duration" -s "$here/ingest.lua" "$url" -- "$image" "$pattern"
echo "== emulator stats"
curl -sf "$url/api/_emulator/stats" | head -c 600; echo
