#!/usr/bin/env bash
# Hostile requests against a fresh `encore serve` (release build, temporary data directory), one
# JSON line: the status of each, and the server's peak RSS after all of them (issue: durability
# under every fault and hostile input). The gzip bomb is 1 GiB of zeros (about 1 MiB on the wire).
#
#   benches/hostile.sh
set -euo pipefail
# the server is on loopback and only this script calls it; benches/auth.sh measures API keys
export ENCORE__SERVER__AUTH=off
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/encore-target}"
cargo build --release --locked -q -p encore-cli
work="$(mktemp -d)"
server=""
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"' EXIT
"$CARGO_TARGET_DIR/release/encore" serve --bind 127.0.0.1:0 --data-dir "$work/d" >"$work/serve.out" 2>"$work/serve.err" &
server=$!
for _ in $(seq 200); do grep -q "^listening on " "$work/serve.out" && break; sleep 0.1; done
base="$(sed -n 's/^listening on \(http:[^ ]*\).*/\1/p' "$work/serve.out" | head -1)"
python3 - "$base" "$server" <<'PY'
import json, sys, time, urllib.request, urllib.error, zlib

base, pid = sys.argv[1], sys.argv[2]

def rss_peak_mb():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None

def call(method, path, body=None, headers=None):
    req = urllib.request.Request(base + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status
    except urllib.error.HTTPError as e:
        json.load(e)  # every error is the JSON error body
        return e.code

out = {"rss_mb_at_start": rss_peak_mb()}
gz = zlib.compressobj(9, zlib.DEFLATED, 31)
chunk = bytes(1 << 20)
bomb = b"".join(gz.compress(chunk) for _ in range(1024)) + gz.flush()
out["gzip_bomb_wire_bytes"] = len(bomb)
t = time.time()
out["gzip_bomb_1gib_status"] = call("POST", "/v1/traces", bomb,
    {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"})
out["gzip_bomb_seconds"] = round(time.time() - t, 3)
out["calibration_bins_1469635329"] = call("GET", "/v1/evals/calibration?judge=a&human=b&bins=1469635329")
out["calibration_bins_100000000"] = call("GET", "/v1/evals/calibration?judge=a&human=b&bins=100000000")
out["alerts_history_limit_2e63"] = call("GET", "/v1/alerts/history?limit=9223372036854775808")
out["evals_quality_limit_2e63"] = call("GET", "/v1/evals/quality?limit=9223372036854775808")
out["events_brotli"] = call("POST", "/v1/events", b"[]", {"Content-Encoding": "br"})
out["events_17mib"] = call("POST", "/v1/events", b" " * ((16 << 20) + 1))
out["healthz_after"] = call("GET", "/healthz")
out["rss_mb_peak"] = rss_peak_mb()
print(json.dumps(out))
PY
