#!/usr/bin/env bash
# The cost of API keys: recommendation and ingest throughput of `encore serve` (release build,
# loopback) with `[server] auth = "off"` and with `"required"` (every request carries a key, is
# verified, and every ingest request is audited), alternating, ROUNDS pairs, one JSON line of
# medians. Each run serves a fresh copy of the same data directory (HetRec Last.fm 2K imported
# from ../shared, ALS 64 factors; impressions off, so a recommendation only reads).
#   - recommendations: wrk, 32 connections, 10 s, random listeners, GET /v1/users/{id}/recommendations?n=10
#   - ingest: `encore bench http-ingest`, 4 connections x 1,000-event batches of a simulated world
#
#   [ROUNDS=3] benches/auth.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
shared="$(cd ../shared && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/encore-target}"
rounds="${ROUNDS:-3}"
command -v wrk >/dev/null || { apt-get install -y -q wrk >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q wrk >/dev/null; }; }
cargo build --release --locked -q -p encore-cli
bin="$CARGO_TARGET_DIR/release/encore"
work="$(mktemp -d)"
server=""
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"' EXIT

base="$work/base"
"$bin" import hetrec-lastfm "$shared/datasets/hetrec2011-lastfm-2k" --data-dir "$base" >/dev/null
"$bin" train --model als --promote --data-dir "$base" >/dev/null
key="$("$bin" keys create --name bench --scopes recs:read,events:write --data-dir "$base" --json \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')"
cut -f1 "$shared/datasets/hetrec2011-lastfm-2k/user_artists.dat" | tr -d '\r' | tail -n +2 | sort -un \
  | sed 's|^|/v1/users/lfm-u|; s|$|/recommendations?n=10|' >"$work/paths.txt"
"$bin" sim generate --users 4000 --days 7 --seed 11 --format jsonl --out "$work/world" >/dev/null
cat >"$work/users.lua" <<LUA
local paths = {}
for line in io.lines("$work/paths.txt") do paths[#paths + 1] = line end
local i = 0
local auth = os.getenv("AUTH_HEADER")
request = function()
  i = i + 1
  local headers = {}
  if auth ~= nil and auth ~= "" then headers["Authorization"] = auth end
  return wrk.format("GET", paths[(i * 7919) % #paths + 1], headers)
end
LUA

# one run: $1 = off | required; prints "recs_per_s ingest_events_per_s"
run() {
  local mode="$1" data="$work/run"
  rm -rf "$data"
  cp -r "$base" "$data"
  ENCORE__SERVER__AUTH="$mode" ENCORE__SERVER__OTLP_GRPC="" ENCORE__SERVING__IMPRESSIONS=false \
    ENCORE__SERVING__CACHE_SECONDS=0 "$bin" serve --bind 127.0.0.1:0 --data-dir "$data" >"$work/serve.log" 2>&1 &
  server=$!
  for _ in $(seq 300); do grep -q "^listening on " "$work/serve.log" && break; sleep 0.1; done
  local addr
  addr="$(sed -n 's|^listening on http://\([^ ]*\).*|\1|p' "$work/serve.log" | head -1)"
  local header=""
  [ "$mode" = required ] && header="Bearer $key"
  AUTH_HEADER="$header" wrk -t2 -c32 -d2s -s "$work/users.lua" "http://$addr" >/dev/null
  local recs
  recs="$(AUTH_HEADER="$header" wrk -t2 -c32 -d10s -s "$work/users.lua" "http://$addr" \
    | sed -n 's/^Requests\/sec: *\([0-9.]*\)/\1/p')"
  local ingest
  ingest="$(ENCORE_API_KEY="${header#Bearer }" "$bin" bench http-ingest --addr "$addr" --batch 1000 \
    --connections 4 "$work"/world/events/events-*.jsonl --json \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["events_per_second"])')"
  kill -TERM "$server"; wait "$server" || true; server=""
  echo "$recs $ingest"
}

results=()
for r in $(seq "$rounds"); do
  results+=("off $(run off)")
  results+=("required $(run required)")
  echo "round $r: ${results[-2]} | ${results[-1]}" >&2
done
printf '%s\n' "${results[@]}" | python3 -c '
import json, statistics, sys
rows = [l.split() for l in sys.stdin if l.strip()]
med = lambda mode, i: statistics.median(float(r[i]) for r in rows if r[0] == mode)
off_r, on_r, off_i, on_i = med("off", 1), med("required", 1), med("off", 2), med("required", 2)
print(json.dumps({"rounds": len(rows) // 2,
  "recs_per_s_auth_off": round(off_r), "recs_per_s_auth_on": round(on_r), "recs_on_vs_off": round(on_r / off_r, 3),
  "ingest_events_per_s_auth_off": round(off_i), "ingest_events_per_s_auth_on": round(on_i), "ingest_on_vs_off": round(on_i / off_i, 3)}))'
