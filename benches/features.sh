#!/usr/bin/env bash
# The feature store (issue: feature store), release build:
#   1. offline: a training set of 20 features (two views: listener; listener x artist) for
#      ROWS entity rows over EVENTS synthetic plays (`encore bench features-offline`: grouping
#      and sorting, the point-in-time sweep, the Parquet write, peak RSS); then the same
#      definitions through `encore features training-set` for ROWS rows over the world below,
#      read from its event log;
#   2. online: a simulated world (USERS listeners, 30 days ending today) ingested, the same
#      definitions applied and materialized, `encore serve` on loopback; POST /v1/features with
#      100 entities (listener, artist) x 20 features per request:
#        - saturation: wrk, 2 threads, 16 connections, 20 s;
#        - latency at 50 % of saturation: `encore bench http-get` (open loop, p50/p99), ROUNDS
#          runs of 15 s, medians reported;
#      three cases: named values (`maps`, the default response), `arrays` (names once), and
#      `maps` with the in-memory cache off (every read from redb).
#
#   [ROUNDS=3] benches/features.sh [EVENTS] [ROWS] [USERS]
set -euo pipefail
# the server is on loopback and only this script calls it; benches/auth.sh measures API keys
export ENCORE__SERVER__AUTH=off
cd "$(dirname "${BASH_SOURCE[0]}")/.."
events="${1:-10000000}"; rows="${2:-1000000}"; users="${3:-5000}"; rounds="${ROUNDS:-3}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/encore-target}"
command -v wrk >/dev/null || { apt-get install -y -q wrk >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q wrk >/dev/null; }; }
cargo build --release --locked -q -p encore-cli
bin="$CARGO_TARGET_DIR/release/encore"
work="$(mktemp -d)"
server=""
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"' EXIT
data="$work/data"

echo "== offline: $rows rows x 20 features over $events plays"
"$bin" bench features-offline --events "$events" --rows "$rows" --json | tee "$work/offline.json"

echo "== online: a world of $users listeners, 30 days to today"
start="$(date -u -d '-29 days' +%F)"
/usr/bin/time -f "sim %e s" "$bin" sim generate --users "$users" --days 30 --start "$start" --format parquet --out "$work/world" >/dev/null
/usr/bin/time -f "ingest %e s" "$bin" ingest "$work/world" --data-dir "$data" >/dev/null
"$bin" bench features-offline --write-definitions "$work/features.toml"
"$bin" features apply "$work/features.toml" --data-dir "$data"
"$bin" --json features materialize --data-dir "$data" | tee "$work/materialize.json"
echo "== offline from the event log: $rows (listener, artist, time) rows x 20 features over the world's plays"
python3 - "$work/world" "$work/rows.csv" "$rows" <<'PY'
import json, random, sys, time
world, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
users = [json.loads(l)["user_id"] for l in open(f"{world}/users.jsonl")]
artists = [json.loads(l)["artist_id"] for l in open(f"{world}/catalog/artists.jsonl")]
rng, now = random.Random(11), int(time.time() * 1000)
with open(out, "w") as f:
    f.write("user_id,artist_id,ts\n")
    for _ in range(n):
        f.write(f"{rng.choice(users)},{rng.choice(artists)},{now - rng.randrange(30 * 86_400_000)}\n")
PY
/usr/bin/time -f "training set from the log: peak RSS %M KB, %e s" "$bin" --json features training-set \
  --entities "$work/rows.csv" --service reranker --out "$work/train.parquet" --data-dir "$data"

# request bodies: 100 random (listener, artist) pairs each, in both response formats
python3 - "$work/world" "$work" <<'PY'
import json, random, sys
world, work = sys.argv[1:3]
users = [json.loads(l)["user_id"] for l in open(f"{world}/users.jsonl")]
artists = [json.loads(l)["artist_id"] for l in open(f"{world}/catalog/artists.jsonl")]
rng = random.Random(7)
batches = [[{"user_id": rng.choice(users), "artist_id": rng.choice(artists)} for _ in range(100)] for _ in range(500)]
for fmt in ("maps", "arrays"):
    with open(f"{work}/bodies-{fmt}.txt", "w") as f, open(f"{work}/req-{fmt}.lua", "w") as g:
        g.write("local bodies = {}\n")
        for entities in batches:
            b = json.dumps({"service": "reranker", "format": fmt, "entities": entities}, separators=(",", ":"))
            f.write("POST /v1/features " + b + "\n")
            g.write("bodies[#bodies + 1] = [[" + b + "]]\n")
        g.write('local i = 0\nwrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                'request = function()\n  i = i + 1\n  return wrk.format(nil, "/v1/features", nil, bodies[(i % #bodies) + 1])\nend\n')
PY

# one case: the server with its in-memory cache of CACHE_MB (0: every read from redb), requests
# in FORMAT; saturation, then the 50 % rate
online_case() {
  local name="$1" fmt="$2" cache_mb="$3"
  ENCORE__SERVING__FEATURE_CACHE_MB="$cache_mb" "$bin" serve --bind 127.0.0.1:0 --data-dir "$data" >"$work/serve.log" 2>&1 &
  server=$!
  for _ in $(seq 300); do grep -q "^listening on " "$work/serve.log" && break; sleep 0.1; done
  local addr
  addr="$(sed -n 's|^listening on http://\([^ ]*\).*|\1|p' "$work/serve.log" | head -1)"
  if [ "$name" = maps ]; then
    curl -sf -XPOST -H 'Content-Type: application/json' --data-binary "$(head -1 "$work/bodies-maps.txt" | cut -d' ' -f3-)" "http://$addr/v1/features" \
      | python3 -c "import json,sys; d=json.load(sys.stdin); r=d['rows']; print('rows', len(r), 'values per row', len(r[0]['values']), 'live user views', sum(x['status']['user']=='live' for x in r), 'live user_artist views', sum(x['status']['user_artist']=='live' for x in r))"
  fi
  wrk -t2 -c16 -d3s -s "$work/req-$fmt.lua" "http://$addr" >/dev/null
  wrk -t2 -c16 -d20s --latency -s "$work/req-$fmt.lua" "http://$addr" > "$work/wrk-$name.txt"
  local saturation half
  saturation="$(sed -n 's/^Requests\/sec: *\([0-9.]*\)/\1/p' "$work/wrk-$name.txt")"
  half="$(python3 -c "print(round($saturation / 2))")"
  # the 50 % rate, ROUNDS times (p99 on two shared cores varies run to run: the median is kept)
  for r in $(seq "$rounds"); do
    "$bin" bench http-get --addr "$addr" "$work/bodies-$fmt.txt" --rate "$half" --seconds 15 --connections 16 --json > "$work/half-$name-$r.json"
  done
  curl -sf "http://$addr/v1/features/services" > "$work/services-$name.json"
  kill "$server"; wait "$server" 2>/dev/null || true; server=""
  python3 - "$name" "$saturation" "$work/services-$name.json" "$work"/half-"$name"-*.json <<'PY'
import json, statistics, sys
name, sat = sys.argv[1], float(sys.argv[2]); svc = json.load(open(sys.argv[3]))
halves = [json.load(open(f)) for f in sys.argv[4:]]
cache = svc.get("cache") or {}
hits, misses = cache.get("hits", 0), cache.get("misses", 0)
med = lambda k: round(statistics.median(h[k] for h in halves), 3)
print(json.dumps({"case": name, "saturation_req_per_s": round(sat), "entities_per_s": round(sat * 100),
  "half_rate": halves[0]["target_rate"], "half_p50_ms": med("p50_ms"), "half_p99_ms": med("p99_ms"),
  "half_p99_ms_rounds": [round(h["p99_ms"], 3) for h in halves], "half_service_p99_ms": med("service_p99_ms"),
  "errors": sum(h["errors"] + h["shed_503"] for h in halves),
  "cache_hit_rate": round(hits / (hits + misses), 4) if hits + misses else None}))
PY
}

echo "== online: 100 entities x 20 features per request"
online_case maps maps 256
online_case arrays arrays 256
online_case no-cache maps 0
python3 -c "import json; o=json.load(open('$work/offline.json')); print(json.dumps({'offline_training_set_s': round(o['training_set_s'], 2), 'offline_peak_rss_mb': round(o['peak_rss_mb'])}))"
