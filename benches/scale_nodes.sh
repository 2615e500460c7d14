#!/usr/bin/env bash
# Per-node ingest on the external backends against the embedded one, in one run on one build
# (issue: scale-out), one JSON line each. EVENTS playback events of a simulated world, as
# 1,000-event NDJSON batches over 4 loopback connections (`encore bench http-ingest`):
#   1. `embedded`: one node (`--role all`), a batch acknowledged once durable in its own log;
#   2. `bus`: an ingest node (`--role ingest`) acknowledging a batch once NATS JetStream has it
#      (file storage) and a worker (`--role worker`) writing the bus into its event log, its
#      lake lease and its online store (Redis when REDIS is set); beside the ingest node's rate,
#      the worker's: from the first batch sent to its log holding every accepted event.
# The JetStream stream is this run's own and is deleted at the end.
#
#   [NATS=nats://127.0.0.1:4222] [REDIS=redis://127.0.0.1:6379/0] [PG=postgres://...] \
#     benches/scale_nodes.sh [EVENTS]
set -euo pipefail
# the servers are on loopback and only this script calls them; benches/auth.sh measures API keys
export ENCORE__SERVER__AUTH=off
cd "$(dirname "${BASH_SOURCE[0]}")/.."
events="${1:-1000000}"
nats="${NATS:-nats://127.0.0.1:4222}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/encore-target}"
cargo build --release --locked -q -p encore-cli
bin="$CARGO_TARGET_DIR/release/encore"
work="$(mktemp -d)"
stream="bench_$$"
pids=()
drop_stream() { # JetStream's API over the plain NATS protocol: no client needed
  local hp="${nats#nats://}"
  { exec 3<>"/dev/tcp/${hp%:*}/${hp##*:}"; } 2>/dev/null || return 0
  printf 'CONNECT {"verbose":false}\r\nPUB $JS.API.STREAM.DELETE.%s 0\r\n\r\nPING\r\n' "$stream" >&3
  timeout 2 head -c 200 <&3 >/dev/null || true
  exec 3>&-
}
drop_keys="local c='0' repeat local r = redis.call('SCAN', c, 'MATCH', ARGV[1], 'COUNT', 5000) c = r[1] for _, k in ipairs(r[2]) do redis.call('UNLINK', k) end until c == '0'"
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  drop_stream
  # keys hold NUL bytes: they are deleted by a script inside Redis, not through a pipe
  [ -z "${REDIS:-}" ] || redis-cli -u "$REDIS" EVAL "$drop_keys" 0 "$stream:*" >/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# serve NAME ROLE: starts a node on its own data directory; sets $addr
serve() {
  local name="$1" role="$2"
  ENCORE__SERVER__ROLE="$role" ENCORE__SERVER__NODE="$name" "$bin" serve --bind 127.0.0.1:0 \
    --data-dir "$work/$name" >"$work/$name.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 300); do grep -q "^listening on " "$work/$name.log" && break; sleep 0.1; done
  addr="$(sed -n 's|^listening on http://\([^ ]*\).*|\1|p' "$work/$name.log" | head -1)"
  [ -n "$addr" ] || { cat "$work/$name.log" >&2; exit 1; }
}

plays() { curl -sf "http://$1/v1/events/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("plays", 0))'; }

"$bin" sim generate --users 20250 --days 30 --seed 1 --format jsonl --out "$work/world" --json >/dev/null
files=("$work"/world/events/events-*.jsonl)
sync

report() { # report CASE FILE [EXTRA_JSON]
  python3 - "$1" "$2" "${3:-{\}}" <<'PY'
import json, sys
case, path, extra = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
r = json.load(open(path))
print(json.dumps({"bench": "node_ingest", "case": case, **r, **extra}))
PY
}

# 1. one node, embedded
serve embedded all
"$bin" bench http-ingest --addr "$addr" --batch 1000 --connections 4 --limit "$events" "${files[@]}" --json >"$work/embedded.json"
report embedded "$work/embedded.json"
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true

# 2. an ingest node and a worker on the bus
export ENCORE__STORAGE__BUS="$nats" ENCORE__STORAGE__BUS_STREAM="$stream" ENCORE__STORAGE__SEAL_INTERVAL_S=5
if [ -n "${REDIS:-}" ]; then export ENCORE__STORAGE__ONLINE="$REDIS" ENCORE__STORAGE__ONLINE_PREFIX="$stream"; fi
if [ -n "${PG:-}" ]; then export ENCORE__STORAGE__METADATA="$PG" ENCORE__STORAGE__METADATA_SCHEMA="$stream"; fi
serve worker worker
worker="$addr"
serve ingest ingest
start="$(date +%s.%N)"
"$bin" bench http-ingest --addr "$addr" --batch 1000 --connections 4 --limit "$events" "${files[@]}" --json >"$work/bus.json"
accepted="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["accepted"])' "$work/bus.json")"
for _ in $(seq 6000); do
  [ "$(plays "$worker")" -ge "$accepted" ] && break
  sleep 0.05
done
drained="$(date +%s.%N)"
held="$(plays "$worker")"
report bus "$work/bus.json" "$(python3 -c "import json; print(json.dumps({'worker_events': $held, 'worker_seconds': round($drained - $start, 2), 'worker_events_per_s': round($held / ($drained - $start))}))")"
