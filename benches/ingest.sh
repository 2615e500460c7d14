#!/usr/bin/env bash
# Benchmarks of the ingest path (issue: event ingestion), all on this machine, one JSON line each:
#   1. file ingest of a ~10M-event simulated world from Parquet, then from JSON lines (events/s),
#      each into an empty store, every row clean (the first workload);
#   2. CSR interaction-matrix build from the ingested log (seconds, peak memory);
#   3. HTTP ingest: 1000-event NDJSON batches from a loopback client to `encore serve`
#      (events/s, p50/p99 acknowledgement latency), into an empty store;
#   4. the production-shaped workload: a store that already holds 30 days (the same world
#      shape, seed 1) takes the next 30 days (seed 2) with 1 % of playback rows broken (each
#      breaking one contract rule) and 1 % sent twice, as Parquet, as JSON lines and over HTTP:
#      every new event id is checked against the 30 days already stored, and every bad row is
#      quarantined with its reason.
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
cleanup_server() { kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true; server=""; }
cleanup_server
rm -rf "$work/d3"

# 4. a store holding 30 days, then the next 30 days with 1 % broken and 1 % resent rows
first="2026-01-05"
next="$(date -u -d "$first + $days days" +%F)"
"$bin" sim generate --users "$users" --days "$days" --seed 1 --start "$first" --faults 0.01 --format parquet --out "$work/hist" --json >/dev/null
timed history_parquet_dirty "$bin" ingest "$work/hist" --data-dir "$work/held"
rm -rf "$work/hist"
"$bin" sim generate --users "$users" --days "$days" --seed 2 --start "$next" --faults 0.01 --format parquet --out "$work/pq2" --json >"$work/pq2.json"
python3 -c "import json; c=json.load(open('$work/pq2.json'))['counts']; print(json.dumps({'bench': 'dirty_feed', 'playback_events': c['playback_events'], 'broken_rows': c['broken_rows'], 'duplicate_rows': c['duplicate_rows']}))"
cp -a "$work/held" "$work/d4"
sync
timed ingest_parquet_dirty_into_30_days "$bin" ingest "$work/pq2" --data-dir "$work/d4"
rm -rf "$work/d4" "$work/pq2"
"$bin" sim generate --users "$users" --days "$days" --seed 2 --start "$next" --faults 0.01 --format jsonl --out "$work/js2" --json >/dev/null
cp -a "$work/held" "$work/d5"
sync
timed ingest_jsonl_dirty_into_30_days "$bin" ingest "$work/js2" --data-dir "$work/d5"
rm -rf "$work/d5"
mv "$work/held" "$work/d6"
sync
"$bin" serve --bind 127.0.0.1:0 --data-dir "$work/d6" >"$work/serve.out" 2>/dev/null &
server=$!
for _ in $(seq 100); do grep -q listening "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
addr="$(grep -o '127.0.0.1:[0-9]*' "$work/serve.out" | head -1)"
"$bin" bench http-ingest --addr "$addr" --batch 1000 --connections 4 --limit "$http_events" \
  "$work"/js2/events/events-*.jsonl --json | python3 -c 'import json,sys; print(json.dumps({"bench": "http_ingest_dirty_into_30_days", **json.load(sys.stdin)}))'
