#!/usr/bin/env bash
# Serving under load, on loopback: a HetRec-sized model (Last.fm 2K imported from ../shared, ALS
# 64 factors, 1,892 listeners x 17,632 artists) served by `encore serve`, and
#   1. saturation: wrk (Debian's package, installed here if missing), 32 connections, 20 s, random
#      listeners, GET /v1/users/{id}/recommendations?n=10;
#   2. a fixed rate at 50 % of that saturation (`encore bench http-get`, open loop: latency from
#      each request's scheduled time);
#   3. 2x overload with 256 connections: the server must shed with 503 and keep the latency of
#      what it accepts bounded.
# Impression logging is on (each served list is written to the event log), as in production;
# IMPRESSIONS=false turns it off to measure the pipeline alone. The per-listener home-list cache
# is off, so every request runs the pipeline; CACHE_SECONDS=30 measures with it (1,892 listeners
# asked again and again: mostly cache hits).
#
#   [IMPRESSIONS=false] [CACHE_SECONDS=30] [RATE=N] benches/serve_load.sh
set -euo pipefail
# the server is on loopback and only this script calls it; benches/auth.sh measures API keys
export ENCORE__SERVER__AUTH=off
cd "$(dirname "${BASH_SOURCE[0]}")/.."
shared="$(cd ../shared && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/encore-target}"
command -v wrk >/dev/null || { apt-get install -y -q wrk >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q wrk >/dev/null; }; }
cargo build --release --locked -q -p encore-cli
bin="$CARGO_TARGET_DIR/release/encore"
work="$(mktemp -d)"
server=""
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"' EXIT
data="$work/data"

"$bin" import hetrec-lastfm "$shared/datasets/hetrec2011-lastfm-2k" --data-dir "$data" >/dev/null
"$bin" train --model als --promote --data-dir "$data" >/dev/null
cut -f1 "$shared/datasets/hetrec2011-lastfm-2k/user_artists.dat" | tr -d '\r' | tail -n +2 | sort -un \
  | sed 's|^|/v1/users/lfm-u|; s|$|/recommendations?n=10|' >"$work/paths.txt"

ENCORE__SERVING__IMPRESSIONS="${IMPRESSIONS:-true}" ENCORE__SERVING__CACHE_SECONDS="${CACHE_SECONDS:-0}" "$bin" serve --bind 127.0.0.1:0 --data-dir "$data" >"$work/serve.log" 2>&1 &
server=$!
for _ in $(seq 300); do grep -q "^listening on " "$work/serve.log" && break; sleep 0.1; done
addr="$(sed -n 's|^listening on http://\([^ ]*\).*|\1|p' "$work/serve.log" | head -1)"
curl -sf "http://$addr/readyz" >/dev/null
echo "server $addr: $(curl -s "http://$addr/readyz")"

cat >"$work/users.lua" <<LUA
local paths = {}
for line in io.lines("$work/paths.txt") do paths[#paths + 1] = line end
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i * 7919) % #paths + 1])
end
LUA
# warm-up, then saturation
wrk -t2 -c32 -d3s -s "$work/users.lua" "http://$addr" >/dev/null
wrk -t2 -c32 -d20s --latency -s "$work/users.lua" "http://$addr" | tee "$work/wrk.txt"
saturation="$(sed -n 's/^Requests\/sec: *\([0-9.]*\)/\1/p' "$work/wrk.txt")"
# RATE=N measures the fixed-rate step at N req/s instead (to compare builds at the same load)
half="${RATE:-$(python3 -c "print(round($saturation / 2))")}"
echo "== fixed rate at 50 % of saturation: $half req/s"
"$bin" bench http-get --addr "$addr" "$work/paths.txt" --rate "$half" --seconds 20 --connections 16 --json | tee "$work/half.json"
double="$(python3 -c "print(round($saturation * 2))")"
echo "== 2x overload: $double req/s over 256 connections"
"$bin" bench http-get --addr "$addr" "$work/paths.txt" --rate "$double" --seconds 10 --connections 256 --json | tee "$work/over.json"
echo "== overload by concurrency: wrk with 512 connections (16x the saturation run's)"
wrk -t2 -c512 -d10s --latency -s "$work/users.lua" "http://$addr" | tee "$work/wrk-over.txt"
python3 - "$saturation" "$work/half.json" "$work/over.json" <<'PY'
import json, sys
sat = float(sys.argv[1]); half = json.load(open(sys.argv[2])); over = json.load(open(sys.argv[3]))
print(json.dumps({"saturation_req_per_s": round(sat), "half_rate": half["target_rate"],
  "half_p50_ms": round(half["p50_ms"], 2), "half_p99_ms": round(half["p99_ms"], 2), "half_errors": half["errors"] + half["shed_503"],
  "overload_sent_per_s": round(over["achieved_rate"]), "overload_ok_per_s": round(over["ok_rate"]),
  "overload_shed_503": over["shed_503"], "overload_errors": over["errors"], "overload_ok_service_p99_ms": round(over["service_p99_ms"], 2), "half_service_p99_ms": round(half["service_p99_ms"], 2)}))
PY
curl -s "http://$addr/metrics" | grep -E "^encore_(requests_shed|impressions_(logged|dropped)|candidates_scored|cache_(hits|misses))_total"
