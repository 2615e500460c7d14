#!/usr/bin/env bash
# Personalization on the simulated world (issue: models): a 20k-listener, 30-day world is
# generated, ingested, and ALS is trained and compared with popularity on a holdout of each
# listener's streams (and on the last 7 days). Prints one JSON line per split.
#
#   benches/sim_world_models.sh [USERS] [DAYS]
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
trap 'rm -rf "$work"' EXIT
"$bin" demo --users "$users" --days "$days" --data-dir "$work/d" --json >"$work/demo.json"
for model in popularity als; do
  "$bin" eval --test-days 7 --model "$model" --data-dir "$work/d" --json >"$work/time-$model.json"
done
python3 - "$work" <<'PY'
import json, sys
w = sys.argv[1]
demo = json.load(open(f"{w}/demo.json"))
pop, als = demo["models"]
ndcg = lambda r: r["metrics"]["ndcg@10"]
print(json.dumps({"bench": "sim_world_models", "split": "holdout 20% per listener", "users": als["users"],
                  "items": als["items"], "als_ndcg@10": ndcg(als), "popularity_ndcg@10": ndcg(pop),
                  "ratio": ndcg(als) / ndcg(pop), "als_fit_seconds": als["fit_seconds"]}))
tp, ta = (json.load(open(f"{w}/time-{m}.json")) for m in ("popularity", "als"))
print(json.dumps({"bench": "sim_world_models", "split": "last 7 days", "users_evaluated": ta["users_evaluated"],
                  "als_ndcg@10": ndcg(ta), "popularity_ndcg@10": ndcg(tp), "ratio": ndcg(ta) / ndcg(tp)}))
PY
