#!/usr/bin/env bash
# LLM-trace ingest and queries against the shared load generator (issue: LLM observability):
# a fresh `encore serve` (release build, temporary data directory) takes TRACES "AI playlist"
# traces (4 spans each) over OTLP/HTTP protobuf from ../shared/bench/llm-obs/loadgen.py, which
# measures ingest spans/s, time until every span is queryable, server RSS and CPU, and the
# latency of the listing queries. Phoenix's figures on this machine are in
# ../shared/bench/llm-obs/results-2026-11-29.json (same workload, same load generator).
#
#   benches/llm_obs.sh [TRACES] [MODE preencoded|sdk] [extra loadgen args...]
set -euo pipefail
# the server is on loopback and only this script calls it; benches/auth.sh measures API keys
export ENCORE__SERVER__AUTH=off
cd "$(dirname "${BASH_SOURCE[0]}")/.."
traces="${1:-2000}"; mode="${2:-preencoded}"; shift 2 || true
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/encore-target}"
cargo build --release --locked -q -p encore-cli
venv="${LLM_OBS_VENV:-$HOME/.cache/encore-llm-obs-venv}"
if ! "$venv/bin/python" -c "import opentelemetry.exporter.otlp.proto.http, psutil" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q opentelemetry-sdk opentelemetry-exporter-otlp-proto-http psutil
fi
work="$(mktemp -d)"
server=""
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"' EXIT
"$CARGO_TARGET_DIR/release/encore" serve --bind 127.0.0.1:0 --data-dir "$work/d" >"$work/serve.out" 2>"$work/serve.err" &
server=$!
for _ in $(seq 200); do grep -q "^listening on " "$work/serve.out" && break; sleep 0.1; done
base="$(sed -n 's/^listening on \(http:[^ ]*\).*/\1/p' "$work/serve.out" | head -1)"
# FILL=K: first send K batches of TRACES traces (to other projects, send only), so the measured
# run's queries run against a store that already holds K x TRACES x 4 spans
for i in $(seq 1 "${FILL:-0}"); do
  "$venv/bin/python" ../shared/bench/llm-obs/loadgen.py --target none --endpoint "$base/v1/traces" \
    --traces "$traces" --mode "$mode" --seed "$i" --project "fill-$i" --out "$work/fill.json" >/dev/null
done
"$venv/bin/python" ../shared/bench/llm-obs/loadgen.py --target http --endpoint "$base/v1/traces" \
  --count-url "$base/v1/spans/count?project={project}" --count-field count \
  --query "llm_spans_model_common=$base/v1/spans?project={project}&model={common_model}&limit=100" \
  --query "llm_spans_model_rare=$base/v1/spans?project={project}&model={rare_model}&limit=100" \
  --query "root_spans=$base/v1/spans?project={project}&root=true&limit=100" \
  --query "errors=$base/v1/spans?project={project}&status=error&limit=100" \
  --traces "$traces" --mode "$mode" --server-pid "$server" --label "encore" --out "$work/result.json" "$@" >/dev/null
kill -TERM "$server"; wait "$server" || true; server=""
bytes=$(du -sb "$work/d/traces" | cut -f1)
python3 - "$work/result.json" "$bytes" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); size = int(sys.argv[2])
spans = max(1, d.get("spans_exported_ok", 1))
keep = ["all_visible", "ingest_spans_per_s", "first_send_to_all_visible_s", "visible_after_send_done_s",
        "server_rss_baseline_mb", "server_rss_peak_mb", "server_cpu_ms_per_span", "spans_exported_ok",
        "export_failed_spans", "backpressure_responses_429_503"]
out = {k: d.get(k) for k in keep}
out["storage_bytes_per_span"] = round(size / spans, 1)
out["queries"] = {k: {"p50_ms": v.get("p50_ms"), "p95_ms": v.get("p95_ms"), "rows_last": v.get("rows_last")}
                  for k, v in d.get("queries", {}).items()}
print(json.dumps(out, indent=1))
PY
