#!/usr/bin/env bash
# Online evaluation's cost to ingest (issue: LLM evaluation): the same OTLP load
# (../shared/bench/llm-obs/loadgen.py's "AI playlist" traces of 4 spans, protobuf over HTTP)
# into a fresh release `encore serve`, in interleaved rounds of these cases:
#   off       no rules;
#   heuristic a rule scoring every span that has an output (rate 1.0) with four evaluators:
#             refusal, length bounds, JSON validity and a regex;
#   sampled   the same rule at rate 0.1;
#   judge     a rule sending 10 % of spans to an LLM judge (a local OpenAI-compatible stub that
#             answers in 20 ms), the rest of the pipeline as in production.
# Two modes:
#   sustained (the default): RATE traces/s for SECONDS_RUN (at least 60) at fixed times
#             (benches/otlp_fixed_rate.py, open loop); reports per case the spans/s achieved,
#             acknowledgement latency, the evaluation backlog sampled every 5 s and at the end,
#             spans dropped because the queue was full, evaluations done within the run and
#             how long the backlog took to drain after it;
#   burst     (MODE=burst, the first version): TRACES traces as fast as the server takes them;
#             reports ingest spans/s per case and round, the ratio to `off`, and the online
#             counters 2 s later. The evaluators yield to ingest, so most of their work lands
#             after the measured burst: this measures ingest beside evaluation, not evaluation.
#
#   [MODE=sustained] [RATE=1000] [SECONDS_RUN=60] benches/evals_online.sh [TRACES] [ROUNDS]
#   (CASES="off heuristic" for a subset)
set -euo pipefail
# the server is on loopback and only this script calls it; benches/auth.sh measures API keys
export ENCORE__SERVER__AUTH=off
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mode="${MODE:-sustained}"
traces="${1:-2000}"; rounds="${2:-$([ "$mode" = burst ] && echo 2 || echo 1)}"
rate="${RATE:-1000}"; seconds="${SECONDS_RUN:-60}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/encore-target}"
cargo build --release --locked -q -p encore-cli
venv="${LLM_OBS_VENV:-$HOME/.cache/encore-llm-obs-venv}"
if ! "$venv/bin/python" -c "import opentelemetry.exporter.otlp.proto.http, psutil" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q opentelemetry-sdk opentelemetry-exporter-otlp-proto-http psutil
fi
work="$(mktemp -d)"
server=""; judge=""
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; [ -n "$judge" ] && kill "$judge" 2>/dev/null; rm -rf "$work"' EXIT

# the judge stub: every verdict "factual" after 20 ms
cat >"$work/judge.py" <<'PY'
import json, sys, time
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
class H(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        time.sleep(0.02)
        body = json.dumps({"model": "gpt-4o-mini", "choices": [{"message": {"role": "assistant",
               "content": "{\"score\": 1, \"label\": \"factual\"}"}}],
               "usage": {"prompt_tokens": 300, "completion_tokens": 12}}).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body))); self.end_headers()
        try: self.wfile.write(body)
        except BrokenPipeError: pass  # the server stopped while the judge was answering
    def log_message(self, *a): pass
s = ThreadingHTTPServer(("127.0.0.1", 0), H); print(s.server_address[1], flush=True); s.serve_forever()
PY
python3 "$work/judge.py" >"$work/judge.port" &
judge=$!
for _ in $(seq 50); do [ -s "$work/judge.port" ] && break; sleep 0.1; done
judge_url="http://127.0.0.1:$(cat "$work/judge.port")/v1"

heuristic='{"name": "heuristic", "rate": 1.0, "evaluators": [{"kind": "refusal"}, {"kind": "length_bounds", "min": 1, "max": 4000}, {"kind": "json_valid"}, {"kind": "regex", "pattern": "(?i)playlist|track"}]}'
sampled='{"name": "sampled", "rate": 0.1, "evaluators": [{"kind": "refusal"}, {"kind": "length_bounds", "min": 1, "max": 4000}, {"kind": "json_valid"}, {"kind": "regex", "pattern": "(?i)playlist|track"}]}'
judged='{"name": "judged", "rate": 0.1, "evaluators": [{"kind": "judge", "rubric": "hallucination"}]}'

run_case() { # label rule-json round
  local label="$1" rule="$2" round="$3" d="$work/d-$1-$3"
  ENCORE__EVALS__JUDGE__BASE_URL="$judge_url" ENCORE__EVALS__JUDGE__MODEL="gpt-4o-mini" \
    "$CARGO_TARGET_DIR/release/encore" serve --bind 127.0.0.1:0 --data-dir "$d" >"$work/serve.out" 2>"$work/serve.err" &
  server=$!
  for _ in $(seq 200); do grep -q "^listening on " "$work/serve.out" && break; sleep 0.1; done
  local base; base="$(sed -n 's/^listening on \(http:[^ ]*\).*/\1/p' "$work/serve.out" | head -1)"
  if [ -n "$rule" ]; then
    curl -sf -X POST -H 'Content-Type: application/json' -d "$rule" "$base/v1/evals/rules" >/dev/null
  fi
  if [ "$mode" = burst ]; then
    "$venv/bin/python" ../shared/bench/llm-obs/loadgen.py --target http --endpoint "$base/v1/traces" \
      --count-url "$base/v1/spans/count?project={project}" --count-field count \
      --traces "$traces" --mode preencoded --seed "$round" --server-pid "$server" --label "$label" \
      --out "$work/$label-$round.json" >/dev/null
    sleep 2
    curl -sf "$base/v1/evals/online" >"$work/$label-$round.online.json"
  else
    echo -n "{\"case\": \"$label\", \"round\": $round, \"result\": "
    "$venv/bin/python" benches/otlp_fixed_rate.py --base "$base" --loadgen ../shared/bench/llm-obs \
      --rate "$rate" --seconds "$seconds" --seed "$round" --out "$work/$label-$round.json" | tr -d '\n'
    echo "}"
  fi
  kill -TERM "$server"; wait "$server" || true; server=""
}

cases="${CASES:-off heuristic sampled judge}"
for r in $(seq 1 "$rounds"); do
  for c in $cases; do
    case "$c" in
      off) run_case off "" "$r" ;;
      heuristic) run_case heuristic "$heuristic" "$r" ;;
      sampled) run_case sampled "$sampled" "$r" ;;
      judge) run_case judge "$judged" "$r" ;;
    esac
  done
done
[ "$mode" = burst ] || exit 0
python3 - "$work" "$rounds" "$cases" <<'PY'
import json, sys, statistics
work, rounds, cases = sys.argv[1], int(sys.argv[2]), sys.argv[3].split()
res = {}
for label in cases:
    rates, online, cpu = [], [], []
    for r in range(1, rounds + 1):
        d = json.load(open(f"{work}/{label}-{r}.json"))
        rates.append(d["ingest_spans_per_s"])
        cpu.append(d.get("server_cpu_ms_per_span"))
        online.append(json.load(open(f"{work}/{label}-{r}.online.json")))
        res.setdefault("spans", d.get("spans_exported_ok"))
    res[label] = {"ingest_spans_per_s": rates, "median": statistics.median(rates),
                  "server_cpu_ms_per_span": cpu, "online": online}
for label in [c for c in cases if c != "off"]:
    res[label]["ratio_to_off"] = round(res[label]["median"] / res["off"]["median"], 3)
print(json.dumps(res, indent=1))
PY
