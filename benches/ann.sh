#!/usr/bin/env bash
# Retrieval: HNSW (encore-index over usearch, inner product, longest vectors inserted first)
# against exact inner-product search, single-threaded queries, on
#   1. the HetRec ALS item factors (64 factors, trained on the shared split's train.tsv; queries
#      = the ALS user vectors, as in ../shared/bench/recsys/baseline.py's ANN section), and
#   2. a 1M x 64 synthetic catalogue with the statistics of ALS factors (SCALE=0 skips it; the
#      graph build takes several minutes on 2 cores): near-isotropic (one shared direction and
#      noise around it), then clustered (1,000 cluster directions, items and queries near
#      one each, as genres and scenes make them: the harder case for a graph index).
# Recall@10 is against exact top-10 over all items; the index is saved and memory-mapped back
# before it is queried.
#
#   benches/ann.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
shared="$(cd ../shared && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/encore-target}"
cargo build --release --locked -q -p encore-cli
bin="$CARGO_TARGET_DIR/release/encore"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
split="$shared/bench/recsys/splits/hetrec2011-lastfm-2k"
"$bin" train --train "$split/train.tsv" --model als --threads 1 --no-eval --data-dir "$work/data" \
  --out "$work/hetrec-als.encore" >/dev/null
taskset -c 0 "$bin" bench ann --artifact "$work/hetrec-als.encore"
[ "${SCALE:-1}" = 1 ] || exit 0
# ANN_SETS="isotropic clustered" (the default) or one of them
for set in ${ANN_SETS:-isotropic clustered}; do
  case "$set" in
    isotropic) "$bin" bench ann --synthetic 1000000 --width 64 --queries 1000 --ef 20,64,128,256 ;;
    clustered) "$bin" bench ann --synthetic 1000000 --width 64 --clusters "${CLUSTERS:-1000}" --queries 1000 --ef 20,64,128,256 ;;
    *) echo "unknown set $set" >&2; exit 2 ;;
  esac
done
