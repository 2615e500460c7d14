#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer through cargo fuzz) of every decoder and parser that takes
# outside input: OTLP protobuf and JSON (decode + normalize), JSON lines and CSV events through the
# data contracts, feature definitions, the config file, and WAL recovery. One JSON line per target:
# seconds, executions, corpus size, and whether it crashed (the crash input is kept under
# $FUZZ_WORK/artifacts).
#
#   benches/fuzz.sh [SECONDS_PER_TARGET (600)] [TARGET...]
#
# Seeds come from a small simulated world, the README's feature example, the config template,
# and ../shared's OTLP fixtures when present (read, never copied into the repo). The toolchain is
# stable: RUSTC_BOOTSTRAP lets cargo fuzz pass its -Z flags.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo="$(pwd)"
secs="${1:-600}"; shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(otlp_protobuf otlp_json events_jsonl events_csv feature_toml config_toml wal_recovery)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/encore-target}"
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked -q
work="${FUZZ_WORK:-$HOME/.cache/encore-fuzz}"
mkdir -p "$work/artifacts"

# seeds (once)
if [ ! -d "$work/corpus" ]; then
  mkdir -p "$work/corpus" "$work/seeds"
  for t in otlp_protobuf otlp_json events_jsonl events_csv feature_toml config_toml wal_recovery; do
    mkdir -p "$work/corpus/$t"
  done
  cargo build --locked -q -p encore-cli
  encore="$CARGO_TARGET_DIR/debug/encore"
  "$encore" sim generate --users 20 --days 1 --seed 3 --out "$work/seeds/world" --format jsonl >/dev/null
  for f in "$work"/seeds/world/events/*.jsonl; do
    head -n 50 "$f" >"$work/corpus/events_jsonl/$(basename "$f").seed"
  done
  python3 - "$work/corpus/events_jsonl" "$work/corpus/events_csv" <<'PY'
import csv, io, json, os, sys
src, dst = sys.argv[1:3]
for name in os.listdir(src):
    rows = [json.loads(l) for l in open(os.path.join(src, name)) if l.strip()]
    flat = [{k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in r.items()} for r in rows]
    if flat:
        out = io.StringIO()
        w = csv.DictWriter(out, fieldnames=list(flat[0].keys()), extrasaction="ignore")
        w.writeheader(); w.writerows(flat)
        open(os.path.join(dst, name + ".csv"), "w").write(out.getvalue())
PY
  (cd "$work/seeds" && "$encore" config init >/dev/null 2>&1 && cp encore.toml "$work/corpus/config_toml/template.toml") || true
  cp crates/encore-config/tests/fixtures/wrongkey.toml "$work/corpus/config_toml/"
  awk '/^```toml$/{p=1;next} /^```$/{if(p){exit}} p' README.md | grep -v '^$' >"$work/corpus/feature_toml/readme.toml" || true
  if [ -d ../shared/datasets/llm-observability-fixtures ]; then
    find ../shared/datasets/llm-observability-fixtures -name 'trace.json' -o -name '*span*.json' \
      | head -20 | while read -r f; do cp "$f" "$work/corpus/otlp_json/$(basename "$f")"; done
  fi
  python3 - "$work/corpus/wal_recovery/two-records.wal" <<'PY'
import struct, sys, zlib
out = bytearray(b"ENCWAL02")
for payload in (b"first record", b"\xff\xff\xff\xff second"):
    ln = struct.pack("<I", len(payload))
    out += struct.pack("<I", 0x57434E45) + ln + struct.pack("<I", zlib.crc32(ln + payload)) + payload
open(sys.argv[1], "wb").write(out)
PY
fi

cd fuzz
crashes=0
for t in "${targets[@]}"; do
  log="$work/$t.log"
  status=0
  cargo fuzz run -s none --target-dir "$HOME/.cache/encore-fuzz-target" "$t" "$work/corpus/$t" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=20 \
    -artifact_prefix="$work/artifacts/$t-" -print_final_stats=1 >"$log" 2>&1 || status=$?
  python3 - "$t" "$secs" "$status" "$log" "$work/corpus/$t" <<'PY'
import json, os, re, sys
t, secs, status, log, corpus = sys.argv[1:6]
text = open(log, errors="replace").read()
def stat(name):
    m = re.findall(r"stat::%s:\s+(\d+)" % name, text)
    return int(m[-1]) if m else None
print(json.dumps({"target": t, "seconds": int(secs), "execs": stat("number_of_executed_units"),
                  "execs_per_s": stat("average_exec_per_sec"), "corpus": len(os.listdir(corpus)),
                  "crashed": int(status) != 0, "exit": int(status)}))
PY
  if [ "$status" != 0 ]; then tail -40 "$log" >&2; crashes=$((crashes + 1)); fi
done
[ "$crashes" = 0 ]
