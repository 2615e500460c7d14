#!/usr/bin/env bash
# Benchmark: simulated-world generation at the scale of 10M playback events (20,250 listeners x
# 30 days), in both event formats. Prints one JSON line per format with events/s and peak memory.
#
#   benches/sim_generate.sh [USERS] [DAYS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
users="${1:-20250}"
days="${2:-30}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/encore-target}"
cargo build --release --locked -q -p encore-cli
bin="$CARGO_TARGET_DIR/release/encore"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
for format in parquet jsonl; do
  /usr/bin/time -f '%M' -o "$out/rss" \
    "$bin" sim generate --users "$users" --days "$days" --seed 1 --format "$format" \
    --out "$out/$format" --json >"$out/report.json"
  python3 - "$out/report.json" "$out/rss" "$format" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
rss_kib = int(open(sys.argv[2]).read().split()[-1])
print(json.dumps({
    "bench": "sim_generate", "format": sys.argv[3], "users": r["users"], "days": r["days"],
    "playback_events": r["counts"]["playback_events"], "seconds": round(r["seconds"], 2),
    "events_per_second": round(r["events_per_second"]), "bytes": r["bytes"],
    "peak_rss_mib": round(rss_kib / 1024),
}))
PY
  rm -rf "${out:?}/$format"
done
