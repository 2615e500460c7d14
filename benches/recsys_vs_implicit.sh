#!/usr/bin/env bash
# The models against the anchor, in one run on one machine: implicit (../shared/bench/recsys,
# in a venv this script creates) and `encore eval` on the same HetRec Last.fm 2K split, single
# thread, 64 factors, 15 iterations, regularization 0.05, confidence 1 + ln(1 + plays).
# Prints one JSON line per side and one with the ratios (encore / implicit; < 1 = encore faster).
#
# Then the scale case (100k users x 50k items x 5M pairs, the data of ../shared/bench/recsys/scale.py):
# ALS fit and recommend-for-all, single thread, one run each (skip with SCALE=0).
#
#   benches/recsys_vs_implicit.sh [RUNS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
runs="${1:-3}"
shared="$(cd ../shared && pwd)"
venv="${ENCORE_BENCH_VENV:-$HOME/.cache/encore-bench-venv}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/encore-target}"
[ -x "$venv/bin/python" ] || python3.11 -m venv "$venv"
"$venv/bin/pip" install -q -r "$shared/bench/recsys/requirements.txt"
cargo build --release --locked -q -p encore-cli
bin="$CARGO_TARGET_DIR/release/encore"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

(cd "$shared/bench/recsys" && OPENBLAS_NUM_THREADS=1 "$venv/bin/python" baseline.py \
  --out-dir "$work" --no-ann --no-variants --runs "$runs") >"$work/implicit.json"
split="$shared/bench/recsys/splits/hetrec2011-lastfm-2k"
for i in $(seq "$runs"); do
  "$bin" eval --train "$split/train.tsv" --test "$split/test.tsv" --model als --threads 1 --json >"$work/als-$i.json"
done
"$bin" eval --train "$split/train.tsv" --test "$split/test.tsv" --model popularity --threads 1 --json >"$work/pop.json"
for i in $(seq "$runs"); do
  "$bin" eval --train "$split/train.tsv" --test "$split/test.tsv" --model bpr --threads 1 \
    --epochs 100 --learning-rate 0.01 --regularization 0.01 --json >"$work/bpr-$i.json"
done

"$venv/bin/python" - "$work" "$runs" <<'PY'
import json, statistics, sys
work, runs = sys.argv[1], int(sys.argv[2])
imp = json.load(open(f"{work}/implicit.json"))
als = imp["models"]["implicit_als_cg"]
t = als["timing"]["single_thread"]
implicit = {
    "side": "implicit", "model": "als_cg", "ndcg@10": als["quality"]["ndcg@10"],
    "precision@10": als["quality"]["precision@10"],
    "fit_cpu_seconds": statistics.median(t["fit_cpu_seconds_all"]),
    "fit_seconds": t["fit_seconds_median"],
    "recommend_cpu_seconds": statistics.median(t["recommend_cpu_seconds_all"]),
    "recommend_seconds": t["recommend_all_users_seconds_median"],
    "popularity_ndcg@10": imp["models"]["popularity"]["quality"]["ndcg@10"],
}
ours = [json.load(open(f"{work}/als-{i}.json")) for i in range(1, runs + 1)]
pop = json.load(open(f"{work}/pop.json"))
encore = {
    "side": "encore", "model": "als_cg", "ndcg@10": ours[0]["metrics"]["ndcg@10"],
    "precision@10": ours[0]["metrics"]["precision@10"],
    "fit_cpu_seconds": statistics.median(r["fit_cpu_seconds"] for r in ours),
    "fit_seconds": statistics.median(r["fit_seconds"] for r in ours),
    "recommend_cpu_seconds": statistics.median(r["recommend_cpu_seconds"] for r in ours),
    "recommend_seconds": statistics.median(r["recommend_seconds"] for r in ours),
    "popularity_ndcg@10": pop["metrics"]["ndcg@10"],
}
print(json.dumps(implicit))
print(json.dumps(encore))
def ratios(encore, implicit, label):
    ratio = lambda k: round(encore[k] / implicit[k], 3) if implicit[k] else None
    print(json.dumps({"side": f"ratio encore/implicit ({label})", "fit_cpu_seconds": ratio("fit_cpu_seconds"),
                      "fit_seconds": ratio("fit_seconds"), "recommend_cpu_seconds": ratio("recommend_cpu_seconds"),
                      "recommend_seconds": ratio("recommend_seconds"), "ndcg@10": ratio("ndcg@10")}))

ratios(encore, implicit, "als")
b = imp["models"]["implicit_bpr"]
bt = b["timing"]["single_thread"]
implicit_bpr = {
    "side": "implicit", "model": "bpr", "ndcg@10": b["quality_single_thread_run"]["ndcg@10"],
    "fit_cpu_seconds": statistics.median(bt["fit_cpu_seconds_all"]), "fit_seconds": bt["fit_seconds_median"],
    "recommend_cpu_seconds": statistics.median(bt["recommend_cpu_seconds_all"]),
    "recommend_seconds": bt["recommend_all_users_seconds_median"],
}
bpr = [json.load(open(f"{work}/bpr-{i}.json")) for i in range(1, runs + 1)]
encore_bpr = {
    "side": "encore", "model": "bpr", "ndcg@10": bpr[0]["metrics"]["ndcg@10"],
    "fit_cpu_seconds": statistics.median(r["fit_cpu_seconds"] for r in bpr),
    "fit_seconds": statistics.median(r["fit_seconds"] for r in bpr),
    "recommend_cpu_seconds": statistics.median(r["recommend_cpu_seconds"] for r in bpr),
    "recommend_seconds": statistics.median(r["recommend_seconds"] for r in bpr),
}
print(json.dumps(implicit_bpr))
print(json.dumps(encore_bpr))
ratios(encore_bpr, implicit_bpr, "bpr")
PY

[ "${SCALE:-1}" = 1 ] || exit 0
"$venv/bin/python" benches/recsys_scale.py "$shared/bench/recsys" "$work/scale.tsv" >"$work/scale-implicit.json"
"$bin" eval --train "$work/scale.tsv" --model als --threads 1 --json >"$work/scale-encore.json"
"$venv/bin/python" - "$work" <<'PY'
import json, sys
work = sys.argv[1]
imp = json.load(open(f"{work}/scale-implicit.json"))
enc = json.load(open(f"{work}/scale-encore.json"))
keys = ["fit_seconds", "fit_cpu_seconds", "recommend_seconds", "recommend_cpu_seconds"]
ours = {"side": "encore", "case": "scale", "users": enc["users"], "items": enc["items"], **{k: enc[k] for k in keys}}
print(json.dumps(imp))
print(json.dumps(ours))
print(json.dumps({"side": "ratio encore/implicit (scale, als)", **{k: round(ours[k] / imp[k], 3) for k in keys}}))
PY
