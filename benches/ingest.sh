#!/usr/bin/env bash
# Benchmarks of the ingest path (issue: event ingestion), all on this machine, one JSON line each:
#   1. file ingest of a ~10M-event simulated world from Parquet, then from JSON lines (events/s);
#   2. CSR interaction-matrix build from the ingested log (seconds, peak memory);
#   3. HTTP ingest: 1000-event NDJSON batches from a loopback client to `encore serve`
#      (events/s, p50/p99 acknowledgement latency).
#
#   benches/ingest.sh [USERS] [DAYS] [HTTP_EVENTS]
set -euo pipefail
# the server is on loopback and only this script calls it; benches/auth.sh measures API keys
export ENCORE__SERVER__AUTH=off
cd "$(dirname "${BASH_SOURCE[0]}")/.."
users="${1:-20250}"
days="${2:-30}"
http_events="${3:-2000000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/encore-target}"
cargo build --release --locked -q -p encore-cli
bin="$CARGO_TARGET_DIR/release/encore"
work="$(mktemp -d)"
server=""
cleanup() { if [ -n "$server" ]; then kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true; fi; rm -rf "$work"; }
trap cleanup EXIT

timed() { # timed NAME CMD... : runs CMD with --json, adds wall seconds and peak RSS
  local name="$1"; shift
  /usr/bin/time -f '%e %M' -o "$work/time" "$@" --json >"$work/out.json"
  python3 - "$name" "$work/out.json" "$work/time" <<'PY'
import json, sys
name, out, t = sys.argv[1:4]
r = json.load(open(out))
wall, rss = open(t).read().split()[-2:]
r = {k: v for k, v in r.items() if not isinstance(v, (list, dict)) or k == "rejects_by_rule"}
rows = r.get("accepted", 0) + r.get("rejected", 0) + r.get("duplicates", 0)
if rows:
    r["rows_per_second"] = round(rows / float(wall))
print(json.dumps({"bench": name, **r, "wall_seconds": float(wall), "peak_rss_mib": round(int(rss) / 1024)}))
PY
}

# each input is written (and flushed: `sync`) just before its own run, so one run's write-back
# does not land in another's measurement
"$bin" sim generate --users "$users" --days "$days" --seed 1 --format parquet --out "$work/pq" --json >/dev/null
sync
timed ingest_parquet "$bin" ingest "$work/pq" --data-dir "$work/d1"
sync
timed csr_build "$bin" events matrix --data-dir "$work/d1"
rm -rf "$work/d1" "$work/pq"

"$bin" sim generate --users "$users" --days "$days" --seed 1 --format jsonl --out "$work/js" --json >/dev/null
sync
timed ingest_jsonl "$bin" ingest "$work/js" --data-dir "$work/d2"
rm -rf "$work/d2"
sync

"$bin" serve --bind 127.0.0.1:0 --data-dir "$work/d3" >"$work/serve.out" 2>/dev/null &
server=$!
for _ in $(seq 100); do grep -q listening "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
addr="$(grep -o '127.0.0.1:[0-9]*' "$work/serve.out" | head -1)"
"$bin" bench http-ingest --addr "$addr" --batch 1000 --connections 4 --limit "$http_events" \
  "$work"/js/events/events-*.jsonl --json | python3 -c 'import json,sys; print(json.dumps({"bench": "http_ingest", **json.load(sys.stdin)}))'
