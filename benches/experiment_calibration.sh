#!/usr/bin/env bash
# Calibration of experiment analysis end to end (issue: experimentation): a simulated world of
# USERS listeners with 14 days of history is ingested; a weak model (ALS, 12 factors, 2 iterations)
# becomes `production`, a good one (ALS, 64 factors) `candidate`; a real server runs in the
# process. 200 A/A experiments (rounds of 20, each in its own domain) and 50 A/B experiments
# (control: production, treatment: candidate) are served to every listener, their reactions drawn
# from the simulator's response model and posted as events, and each report read over HTTP.
# Prints the A/A false-positive rate, the A/B ship rate, the mean lifts, and the time taken.
#
#   benches/experiment_calibration.sh [USERS] [EXTRA FLAGS...]   (e.g. --organic true)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
users="${1:-2000}"
shift || true
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/encore-target}"
cargo build --release --locked -q -p encore-cli
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$CARGO_TARGET_DIR/release/encore" --data-dir "$work/d" experiments simulate \
  --users "$users" --aa 200 --ab 50 --json "$@" >"$work/out.json" 2>"$work/log"
python3 - "$work/out.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
aa, ab = r["aa"], r["ab"]
ps = aa.pop("p_values")
quarters = [sum(1 for p in ps if q / 4 <= p < (q + 1) / 4) for q in range(4)]
print(json.dumps({
    "users": r["users"], "seconds": round(r["seconds"], 1),
    "aa": {**aa, "p_value_quarters": quarters},
    "ab": ab,
}, indent=1))
PY
