#!/usr/bin/env bash
# Phoenix and encore in one run, same load generator and workload (issue: LLM observability):
# installs Arize Phoenix in a venv (once, ~1 GB), runs ../shared/bench/llm-obs/run_phoenix.sh
# (Phoenix in a private network namespace, SQLite store) and then benches/llm_obs.sh, and prints
# both results side by side.
#
#   benches/llm_obs_vs_phoenix.sh [TRACES] [MODE preencoded|sdk]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
traces="${1:-2000}"; mode="${2:-preencoded}"
venv="${PHOENIX_VENV:-$HOME/.cache/encore-phoenix-venv}"
if ! "$venv/bin/python" -c "import phoenix, opentelemetry.exporter.otlp.proto.http, psutil" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q arize-phoenix opentelemetry-sdk opentelemetry-exporter-otlp-proto-http psutil
fi
runs="$(mktemp -d)"
trap 'rm -rf "$runs"' EXIT
PHOENIX_VENV="$venv" PHOENIX_RUNS="$runs" ../shared/bench/llm-obs/run_phoenix.sh "$traces" "$mode" 1 >/dev/null
LLM_OBS_VENV="$venv" benches/llm_obs.sh "$traces" "$mode" >"$runs/encore.json"
python3 - "$runs" <<'PY'
import glob, json, sys
runs = sys.argv[1]
phx = json.load(open(sorted(glob.glob(f"{runs}/phoenix-*rep1-*.json"))[-1]))
enc = json.load(open(f"{runs}/encore.json"))
rows = [("ingest spans/s", "ingest_spans_per_s", "ingest_spans_per_s"),
        ("visible after the last send (s)", "visible_after_send_done_s", "visible_after_send_done_s"),
        ("server RSS peak (MB)", "server_rss_peak_mb", "server_rss_peak_mb"),
        ("stored bytes per span", "server_storage_bytes_per_span", "storage_bytes_per_span")]
print(f"{'':34} {'Phoenix':>12} {'encore':>12}")
for name, p, e in rows:
    print(f"{name:34} {phx.get(p)!s:>12} {enc.get(e)!s:>12}")
print("queries p50/p95 ms, Phoenix:", {k: (v['p50_ms'], v['p95_ms']) for k, v in phx.get('queries', {}).items()})
print("queries p50/p95 ms, encore: ", {k: (v['p50_ms'], v['p95_ms']) for k, v in enc['queries'].items()})
PY
