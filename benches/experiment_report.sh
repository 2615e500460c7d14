#!/usr/bin/env bash
# Experiment analysis on a large log (issue: experimentation): a 20k-listener, 30-day simulated
# world (about 10M plays) is ingested and its ALS model served; an experiment on the home surface
# (50 % traffic, 2 variants) runs; every listener is asked for home recommendations once through
# the real server, which logs their exposures; then the listeners play after exposure: two days
# of a second simulated world of the same listeners (POST_DAYS), its times squeezed into the
# minutes after the last exposure, ingested; then `encore experiments report` joins the whole
# log to the exposures (each listener's plays after exposure, and the 14 days before it as CUPED
# covariates) and analyzes it. Reports its wall time, rows/s and peak memory. (Its first version
# had no plays after exposure: every metric was empty.)
#
#   benches/experiment_report.sh [USERS] [DAYS]
set -euo pipefail
# the server is on loopback and only this script calls it; benches/auth.sh measures API keys
export ENCORE__SERVER__AUTH=off
cd "$(dirname "${BASH_SOURCE[0]}")/.."
users="${1:-20000}"
days="${2:-30}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/encore-target}"
cargo build --release --locked -q -p encore-cli
bin="$CARGO_TARGET_DIR/release/encore"
work="$(mktemp -d)"
server=""
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; [ -n "${KEEP_REPORT:-}" ] && cp "$work/report.json" "$KEEP_REPORT"; rm -rf "$work"' EXIT
data="$work/d"
"$bin" demo --users "$users" --days "$days" --data-dir "$data" --no-serve --json >"$work/demo.json"
cat >"$work/exp.json" <<'JSON'
{"id": "home-mmr", "hypothesis": "more diverse home lists keep listeners streaming", "domain": "home",
 "traffic": 0.5, "variants": [{"name": "control", "weight": 1}, {"name": "mmr", "weight": 1}],
 "treatments": {"mmr": {"diversity": 0.7}}}
JSON
"$bin" experiments create "$work/exp.json" --data-dir "$data" >/dev/null
"$bin" experiments start home-mmr --data-dir "$data" >/dev/null
python3 - "$data" "$work/paths.txt" <<'PY'
import json, sys
users = set()
for line in open(f"{sys.argv[1]}/worlds/demo/users.jsonl"):
    users.add(json.loads(line)["user_id"])
with open(sys.argv[2], "w") as f:
    for u in sorted(users):
        f.write(f"/v1/users/{u}/recommendations?n=10\n")
PY
"$bin" serve --bind 127.0.0.1:0 --data-dir "$data" >"$work/serve.log" 2>&1 &
server=$!
for _ in $(seq 300); do grep -q "^listening on " "$work/serve.log" && break; sleep 0.1; done
addr="$(sed -n 's|^listening on http://\([^ ]*\).*|\1|p' "$work/serve.log" | head -1)"
n="$(wc -l <"$work/paths.txt")"
"$bin" bench http-get --addr "$addr" "$work/paths.txt" --rate 2000 --seconds "$(python3 -c "print($n / 2000 + 1)")" --connections 8 --json >"$work/serve.json"
sleep 1
kill -TERM "$server"; wait "$server" || true; server=""
# plays after exposure: a second world of the same listeners, squeezed into the two minutes
# after now (the contract takes times up to five minutes ahead)
"$bin" sim generate --users "$users" --days "${POST_DAYS:-2}" --seed 9 --format jsonl --out "$work/post" --json >/dev/null
python3 - "$work/post" "$work/post.jsonl" <<'PY'
import glob, json, random, sys, time
src, dst = sys.argv[1:3]
rng, t0 = random.Random(3), int(time.time() * 1000) + 1000
with open(dst, "w") as out:
    for path in sorted(glob.glob(f"{src}/events/events-*.jsonl")):
        for line in open(path):
            e = json.loads(line)
            e["ts_start_ms"] = t0 + rng.randrange(120_000)
            e["ts_end_ms"] = min(e["ts_start_ms"] + e["ms_played"], t0 + 240_000)
            out.write(json.dumps(e, separators=(",", ":")) + "\n")
PY
"$bin" ingest "$work/post.jsonl" --data-dir "$data" --json >"$work/post-ingest.json"
post="$(python3 -c "import json; print(json.load(open('$work/post-ingest.json'))['accepted'])")"
rows="$(python3 -c "import json; print(json.load(open('$work/demo.json'))['log_rows'] + $post)")"
/usr/bin/time -v "$bin" experiments report home-mmr --data-dir "$data" --json >"$work/report.json" 2>"$work/time.txt"
python3 - "$work" "$rows" "$post" <<'PY'
import json, re, sys
w, rows, post = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
r = json.load(open(f"{w}/report.json"))
t = open(f"{w}/time.txt").read()
wall = re.search(r"Elapsed \(wall clock\) time.*: (\d+):([\d.]+)", t)
secs = int(wall.group(1)) * 60 + float(wall.group(2))
rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1))
r4 = lambda x: None if x is None else round(x, 4)
metrics = {m["metric"]: {"control": r4(m["control_mean"]), "treatment": r4(m["treatment_mean"]),
                          "lift": r4(m["cuped"]["lift"]), "p_value": r4(m["cuped"]["p_value"])}
           for m in r["results"]}
print(json.dumps({"bench": "experiment_report", "log_rows": rows, "post_exposure_plays": post,
                  "metrics": metrics, "exposed": r["exposed"],
                  "per_variant": r["per_variant"], "srm_p_value": r["srm_p_value"], "decision": r["decision"],
                  "seconds": secs, "rows_per_second": rows / secs, "peak_rss_mib": rss / 1024}))
PY
