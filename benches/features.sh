#!/usr/bin/env bash
# The feature store (issue: feature store), release build:
#   1. offline: a training set of 20 features (two views: listener; listener x artist) for
#      ROWS entity rows over EVENTS synthetic plays (`encore bench features-offline`: grouping
#      and sorting, the point-in-time sweep, the Parquet write, peak RSS), in two workloads:
#      `popular` (listeners and artists drawn by popularity; half the rows are plays, half
#      candidates drawn by popularity beside them, as a re-ranker's training set) and `uniform`
#      (the first workload: everything uniform, about 0.5 % of rows with history); then the
#      same definitions through `encore features training-set` for ROWS rows over the world
#      below, read from its event log, the rows again half plays, half popular candidates;
#   2. online: a simulated world (USERS listeners, 30 days ending today) ingested, the same
#      definitions applied and materialized, `encore serve` on loopback; POST /v1/features with
#      100 entities (listener, artist) x 20 features per request:
#        - saturation: wrk, 2 threads, 16 connections, 20 s;
#        - latency at 50 % of saturation: `encore bench http-get` (open loop, p50/p99), ROUNDS
#          runs of 15 s, medians reported;
#      requests of three shapes, each case printing the share of its pairs with history:
#        - `reranker`: one listener (drawn by how much they listen) with up to 50 of the artists
#          they played and popular candidates to 100, as a re-ranker asks;
#        - `all-live`: 100 (listener, artist) pairs drawn from the plays, every one with history;
#        - `uniform`: 100 uniformly random pairs (the first workload, mostly without history);
#      cases: `reranker` as named values (`maps`, the default response) and as `arrays` (names
#      once), `all-live` and `uniform` as maps, and `reranker` and `all-live` with the in-memory
#      cache off (every read from redb).
#
#   With REDIS=redis://host:6379/0 the online cases run again, in the same run, with the online
#   store on that Redis (materialized there, then read by the node through its cache, or
#   every read a round trip with the cache off), each case's name ending `-redis`.
#
#   [ROUNDS=3] [CASES="reranker all-live ..."] [REDIS=redis://...] benches/features.sh [EVENTS] [ROWS] [USERS]
set -euo pipefail
# the server is on loopback and only this script calls it; benches/auth.sh measures API keys
export ENCORE__SERVER__AUTH=off
cd "$(dirname "${BASH_SOURCE[0]}")/.."
events="${1:-10000000}"; rows="${2:-1000000}"; users="${3:-5000}"; rounds="${ROUNDS:-3}"
cases="${CASES:-reranker reranker-arrays all-live uniform reranker-no-cache all-live-no-cache}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/encore-target}"
command -v wrk >/dev/null || { apt-get install -y -q wrk >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q wrk >/dev/null; }; }
cargo build --release --locked -q -p encore-cli
bin="$CARGO_TARGET_DIR/release/encore"
work="$(mktemp -d)"
server=""
redis_prefix="encore-bench-$$"
drop_redis() { # the run's keys leave the Redis server (they hold NUL bytes: a script inside
  # Redis deletes them, not a pipe)
  [ -n "${REDIS:-}" ] || return 0
  redis-cli -u "$REDIS" EVAL "local c='0' repeat local r = redis.call('SCAN', c, 'MATCH', ARGV[1], 'COUNT', 5000) c = r[1] for _, k in ipairs(r[2]) do redis.call('UNLINK', k) end until c == '0'" 0 "$redis_prefix:*" >/dev/null
}
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; drop_redis; rm -rf "$work"' EXIT
data="$work/data"

if [ "$events" != 0 ]; then
  echo "== offline: $rows rows x 20 features over $events plays"
  "$bin" bench features-offline --events "$events" --rows "$rows" --json >"$work/offline.json"
  "$bin" bench features-offline --events "$events" --rows "$rows" --uniform --json >"$work/offline-uniform.json"
  python3 - "$work/offline.json" "$work/offline-uniform.json" <<'PY'
import json, sys
for path in sys.argv[1:]:
    o = json.load(open(path))
    print(json.dumps({k: (round(v, 2) if isinstance(v, float) else v) for k, v in o.items()}))
PY
fi

echo "== online: a world of $users listeners, 30 days to today"
start="$(date -u -d '-29 days' +%F)"
/usr/bin/time -f "sim %e s" "$bin" sim generate --users "$users" --days 30 --start "$start" --format jsonl --out "$work/world" >/dev/null
/usr/bin/time -f "ingest %e s" "$bin" ingest "$work/world" --data-dir "$data" >/dev/null
"$bin" bench features-offline --write-definitions "$work/features.toml"
"$bin" features apply "$work/features.toml" --data-dir "$data"
"$bin" --json features materialize --data-dir "$data" | tee "$work/materialize.json"

# the workloads, from the world's plays: the training-set rows and the request bodies
python3 - "$work/world" "$work" "$rows" <<'PY'
import bisect, collections, glob, itertools, json, random, sys
world, work, n_rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
artist_of = {}
for l in open(f"{world}/catalog/tracks.jsonl"):
    t = json.loads(l)
    artist_of[t["track_id"]] = t["artist_id"]
users = [json.loads(l)["user_id"] for l in open(f"{world}/users.jsonl")]
artists = [json.loads(l)["artist_id"] for l in open(f"{world}/catalog/artists.jsonl")]
plays = []  # (listener, artist, start)
for path in sorted(glob.glob(f"{world}/events/events-*.jsonl")):
    for l in open(path):
        e = json.loads(l)
        plays.append((e["user_id"], artist_of[e["item_id"]], e["ts_start_ms"]))
rng = random.Random(11)
# artists by how often they are played: candidates are drawn from this
pop = collections.Counter(a for _, a, _ in plays)
pop_artists, weights = zip(*pop.most_common())
cum = list(itertools.accumulate(weights))
def popular():
    return pop_artists[bisect.bisect_right(cum, rng.random() * cum[-1])]
# training-set rows: a play (its listener and artist just before it started), then a popular
# candidate for the same listener at the same time
with open(f"{work}/rows.csv", "w") as f:
    f.write("user_id,artist_id,ts\n")
    for _ in range(n_rows // 2):
        u, a, ts = rng.choice(plays)
        f.write(f"{u},{a},{ts - 1}\n{u},{popular()},{ts - 1}\n")
played = collections.defaultdict(collections.Counter)
for u, a, _ in plays:
    played[u][a] += 1
def reranker():
    u = rng.choice(plays)[0]  # a listener, drawn by how much they listen
    own = list(played[u])
    picked = rng.sample(own, min(50, len(own)))
    seen = set(picked)
    while len(picked) < 100:
        a = popular()
        if a not in seen:
            seen.add(a)
            picked.append(a)
    return [{"user_id": u, "artist_id": a} for a in picked]
def all_live():
    return [{"user_id": u, "artist_id": a} for u, a, _ in (rng.choice(plays) for _ in range(100))]
def uniform():
    return [{"user_id": rng.choice(users), "artist_id": rng.choice(artists)} for _ in range(100)]
for shape, make in (("reranker", reranker), ("all-live", all_live), ("uniform", uniform)):
    batches = [make() for _ in range(500)]
    live = sum(e["artist_id"] in played[e["user_id"]] for b in batches for e in b)
    json.dump({"pairs": 500 * 100, "pairs_with_history": live}, open(f"{work}/shape-{shape}.json", "w"))
    for fmt in ("maps", "arrays"):
        with open(f"{work}/bodies-{shape}-{fmt}.txt", "w") as f, open(f"{work}/req-{shape}-{fmt}.lua", "w") as g:
            g.write("local bodies = {}\n")
            for entities in batches:
                b = json.dumps({"service": "reranker", "format": fmt, "entities": entities}, separators=(",", ":"))
                f.write("POST /v1/features " + b + "\n")
                g.write("bodies[#bodies + 1] = [[" + b + "]]\n")
            g.write('local i = 0\nwrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                    'request = function()\n  i = i + 1\n  return wrk.format(nil, "/v1/features", nil, bodies[(i % #bodies) + 1])\nend\n')
PY
echo "== offline from the event log: $rows (listener, artist, time) rows (half plays, half popular candidates) x 20 features"
/usr/bin/time -f "training set from the log: peak RSS %M KB, %e s" "$bin" --json features training-set \
  --entities "$work/rows.csv" --service reranker --out "$work/train.parquet" --data-dir "$data"

# one case: requests of SHAPE in FORMAT, the server with its in-memory cache of CACHE_MB (0:
# every read from redb); saturation, then the 50 % rate
online_case() {
  local name="$1" shape="$2" fmt="$3" cache_mb="$4"
  ENCORE__SERVING__FEATURE_CACHE_MB="$cache_mb" "$bin" serve --bind 127.0.0.1:0 --data-dir "$data" >"$work/serve.log" 2>&1 &
  server=$!
  for _ in $(seq 300); do grep -q "^listening on " "$work/serve.log" && break; sleep 0.1; done
  local addr
  addr="$(sed -n 's|^listening on http://\([^ ]*\).*|\1|p' "$work/serve.log" | head -1)"
  local req="$work/req-$shape-$fmt.lua" bodies="$work/bodies-$shape-$fmt.txt"
  wrk -t2 -c16 -d3s -s "$req" "http://$addr" >/dev/null
  wrk -t2 -c16 -d20s --latency -s "$req" "http://$addr" > "$work/wrk-$name.txt"
  local saturation half
  saturation="$(sed -n 's/^Requests\/sec: *\([0-9.]*\)/\1/p' "$work/wrk-$name.txt")"
  half="$(python3 -c "print(round($saturation / 2))")"
  # the 50 % rate, ROUNDS times (p99 on two shared cores varies run to run: the median is kept)
  for r in $(seq "$rounds"); do
    "$bin" bench http-get --addr "$addr" "$bodies" --rate "$half" --seconds 15 --connections 16 --json > "$work/half-$name-$r.json"
  done
  curl -sf "http://$addr/v1/features/services" > "$work/services-$name.json"
  kill "$server"; wait "$server" 2>/dev/null || true; server=""
  python3 - "$name" "$saturation" "$work/services-$name.json" "$work/shape-$shape.json" "$work"/half-"$name"-*.json <<'PY'
import json, statistics, sys
name, sat = sys.argv[1], float(sys.argv[2])
svc, shape = json.load(open(sys.argv[3])), json.load(open(sys.argv[4]))
halves = [json.load(open(f)) for f in sys.argv[5:]]
cache = svc.get("cache") or {}
hits, misses = cache.get("hits", 0), cache.get("misses", 0)
med = lambda k: round(statistics.median(h[k] for h in halves), 3)
print(json.dumps({"case": name, "pairs_with_history": round(shape["pairs_with_history"] / shape["pairs"], 4),
  "saturation_req_per_s": round(sat), "entities_per_s": round(sat * 100),
  "half_rate": halves[0]["target_rate"], "half_p50_ms": med("p50_ms"), "half_p99_ms": med("p99_ms"),
  "half_p99_ms_rounds": [round(h["p99_ms"], 3) for h in halves], "half_service_p99_ms": med("service_p99_ms"),
  "errors": sum(h["errors"] + h["shed_503"] for h in halves),
  "cache_hit_rate": round(hits / (hits + misses), 4) if hits + misses else None}))
PY
}

run_cases() { # run_cases SUFFIX
  local x="$1"
  for c in $cases; do
    case "$c" in
      reranker) online_case "reranker$x" reranker maps 256 ;;
      reranker-arrays) online_case "reranker-arrays$x" reranker arrays 256 ;;
      all-live) online_case "all-live$x" all-live maps 256 ;;
      uniform) online_case "uniform$x" uniform maps 256 ;;
      reranker-no-cache) online_case "reranker-no-cache$x" reranker maps 0 ;;
      all-live-no-cache) online_case "all-live-no-cache$x" all-live maps 0 ;;
      *) echo "unknown case $c" >&2; exit 2 ;;
    esac
  done
}

echo "== online: 100 entities x 20 features per request"
run_cases ""
if [ -n "${REDIS:-}" ]; then
  echo "== online, the store on Redis ($REDIS): the same cases"
  export ENCORE__STORAGE__ONLINE="$REDIS" ENCORE__STORAGE__ONLINE_PREFIX="$redis_prefix"
  /usr/bin/time -f "materialize into Redis %e s" "$bin" --json features materialize --data-dir "$data"
  run_cases "-redis"
fi
