#!/usr/bin/env bash
# Benchmarks of monitoring (issue: ML monitoring), all on this machine, one JSON line each:
#   1. calibration: the default monitors on WORLDS unshifted simulated worlds (false alarms per
#      judged day) and on one world per injected shift (caught in its first window, naming the
#      slice): `encore monitors calibrate`;
#   2. ingest with monitoring on and off: `POST /v1/events` to `encore serve` with the monitors
#      job every second (`[monitors] interval_s = 1`, segments sealed every 200k rows so it has
#      work during the run) and with it off (`interval_s = 0`), the same events, alternated;
#   3. a 10M-event day: a world of DAY_USERS listeners for 8 days; the first 7 are ingested and
#      profiled and judged (`encore monitors run`: the backfill), then the 8th (about 10M plays)
#      is ingested and `encore monitors run` profiles it and judges every monitor's windows of
#      that day (the figure asked for).
#
#   benches/monitors.sh [WORLDS] [USERS] [DAY_USERS] [HTTP_EVENTS] [ROUNDS]
# (WORLDS 0 leaves the calibration out)
set -euo pipefail
export ENCORE__SERVER__AUTH=off
cd "$(dirname "${BASH_SOURCE[0]}")/.."
worlds="${1:-20}"
users="${2:-5000}"
day_users="${3:-625000}"
http_events="${4:-2000000}"
rounds="${5:-4}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/encore-target}"
cargo build --release --locked -q -p encore-cli
bin="$CARGO_TARGET_DIR/release/encore"
work="$(mktemp -d)"
server=""
cleanup() { if [ -n "$server" ]; then kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true; fi; rm -rf "$work"; }
trap cleanup EXIT

# 1. calibration
if [ "$worlds" -gt 0 ]; then
"$bin" monitors calibrate --worlds "$worlds" --users "$users" --days 28 --shift-day 14 --json >"$work/cal.json" || true
python3 - "$work/cal.json" <<'PY'
import json, sys
# the report (and, when a shift was missed, the error after it)
r = json.JSONDecoder().raw_decode(open(sys.argv[1]).read())[0]
print(json.dumps({"bench": "monitors_calibration", "worlds": r["worlds"], "users": r["users"],
    "days": r["days"], "days_judged": r["days_judged"], "days_with_alarm": r["days_with_alarm"],
    "false_alarm_rate": r["false_alarm_rate"],
    "shifts": {s["shift"]: {"caught": s["caught"], "window": s["expected_window_ms"],
        "slice": s["expected_slice"], "named": s["named"], "value": s["value"],
        "alarms_before": s["alarms_before"]} for s in r["shifts"]},
    "seconds": round(r["seconds"], 1)}))
PY
fi

# 2. ingest with the monitors job on and off
"$bin" sim generate --users 20250 --days 8 --seed 1 --format jsonl --out "$work/js" --json >/dev/null
serve() { # serve DIR INTERVAL: starts encore serve, sets $server and $addr
  ENCORE__MONITORS__INTERVAL_S="$2" ENCORE__INGEST__SEAL_ROWS=200000 "$bin" serve --bind 127.0.0.1:0 \
    --data-dir "$1" >"$work/serve.out" 2>/dev/null &
  server=$!
  for _ in $(seq 100); do grep -q listening "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
  addr="$(grep -o '127.0.0.1:[0-9]*' "$work/serve.out" | head -1)"
}
for round in $(seq 1 "$rounds"); do
  for interval in 0 1; do
    rm -rf "$work/h"
    serve "$work/h" "$interval"
    "$bin" bench http-ingest --addr "$addr" --batch 1000 --connections 4 --limit "$http_events" \
      "$work"/js/events/events-*.jsonl --json >"$work/http.json"
    # the job's work on what was sent: the segments it profiled before the server stopped
    kill "$server"; wait "$server" 2>/dev/null || true; server=""
    python3 - "$work/http.json" "$interval" "$round" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(json.dumps({"bench": "monitors_ingest", "monitors_interval_s": int(sys.argv[2]),
    "round": int(sys.argv[3]), **{k: v for k, v in r.items() if not isinstance(v, (list, dict))}}))
PY
  done
done
rm -rf "$work/js" "$work/h"

# 3. a 10M-event day: 7 days of history, then the day
"$bin" sim generate --users "$day_users" --days 8 --seed 1 --format parquet --out "$work/big" --json >"$work/gen.json"
python3 - "$work/big" <<'PY'
import json, os, sys
d = sys.argv[1]
m = json.load(open(os.path.join(d, "manifest.json")))
events = [f for f in m["files"] if f["kind"] in ("playback", "interaction")]
last = max(f["path"] for f in events if f["kind"] == "playback")
day = [f for f in events if f["path"].split("-")[-1] == last.split("-")[-1]]
m["files"] = [f for f in m["files"] if f not in day]
json.dump(m, open(os.path.join(d, "manifest.json"), "w"))
open(os.path.join(d, "day.txt"), "w").write("\n".join(os.path.join(d, f["path"]) for f in day))
PY
"$bin" ingest "$work/big" --data-dir "$work/d" --json >/dev/null
sync
/usr/bin/time -f '%e %M' -o "$work/t1" "$bin" monitors run --data-dir "$work/d" --json >"$work/r1.json"
# shellcheck disable=SC2046
"$bin" ingest $(cat "$work/big/day.txt") --data-dir "$work/d" --json >"$work/day.json"
sync
/usr/bin/time -f '%e %M' -o "$work/t2" "$bin" monitors run --data-dir "$work/d" --json >"$work/r2.json"
python3 - "$work" <<'PY'
import json, os, sys
w = sys.argv[1]
for name, r, t in (("monitors_backfill_7_days", "r1.json", "t1"), ("monitors_10m_event_day", "r2.json", "t2")):
    run = json.load(open(os.path.join(w, r)))
    wall, rss = open(os.path.join(w, t)).read().split()[-2:]
    out = {"bench": name, "rows_profiled": run["profiled"]["rows"],
        "segments": run["profiled"]["segments"], "profile_seconds": round(run["profiled"]["seconds"], 2),
        "verdicts": run["judged"], "fired": run["fired"], "judge_seconds": round(run["evaluate_seconds"], 2),
        "wall_seconds": float(wall), "peak_rss_mib": round(int(rss) / 1024)}
    if name == "monitors_10m_event_day":
        day = json.load(open(os.path.join(w, "day.json")))
        out["day_rows_ingested"] = day["accepted"]
    print(json.dumps(out))
PY
