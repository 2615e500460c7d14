#!/usr/bin/env python3
"""The scale case of ../shared/bench/recsys/scale.py beside encore: the same synthetic data
(100k users x 50k items x 5M pairs, seed 7, common.generate_synthetic), implicit ALS with the
benchmark protocol (64 factors, reg 0.05, 15 iterations, CG, 1 + ln(1 + w)), single thread:
fit and one recommend-for-all-users (top 10, training items excluded).

Writes the pairs as TSV (user, item, weight) for `encore eval --train` and prints implicit's
timings as one JSON object.

    recsys_scale.py SHARED_RECSYS_DIR OUT_TSV [--runs N]
"""

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

ap = argparse.ArgumentParser()
ap.add_argument("shared")
ap.add_argument("tsv")
ap.add_argument("--runs", type=int, default=1)
ap.add_argument("--users", type=int, default=100_000)
ap.add_argument("--items", type=int, default=50_000)
ap.add_argument("--interactions", type=int, default=5_000_000)
args = ap.parse_args()
sys.path.insert(0, args.shared)

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

import common as C  # noqa: E402
from baseline import make_als  # noqa: E402

threadpool_limits(1, "blas")
u, i, w = C.generate_synthetic(args.users, args.items, args.interactions, seed=7)
users, uidx = C.build_index(u)
items, iidx = C.build_index(i)
plays = C.csr(uidx, iidx, w, (users.size, items.size))
conf = C.log_confidence(plays, alpha=1.0)

# the same pairs for encore, with the original ids (encore indexes them the same way: sorted)
coo = plays.tocoo()
with open(args.tsv, "w") as f:
    f.write("userID\tartistID\tweight\n")
    np.savetxt(f, np.column_stack([users[coo.row], items[coo.col], coo.data.astype(np.int64)]),
               fmt="%d", delimiter="\t")

fit_wall, fit_cpu, model = [], [], None
for _ in range(args.runs):
    c0, t0 = time.process_time(), time.perf_counter()
    model = make_als(1, 42)
    model.fit(conf, show_progress=False)
    fit_wall.append(time.perf_counter() - t0)
    fit_cpu.append(time.process_time() - c0)
allu = np.arange(conf.shape[0], dtype=np.int32)
c0, t0 = time.process_time(), time.perf_counter()
model.recommend(allu, conf, N=10, filter_already_liked_items=True)
rec_wall, rec_cpu = time.perf_counter() - t0, time.process_time() - c0
print(json.dumps({
    "side": "implicit", "case": "scale", "users": int(conf.shape[0]), "items": int(conf.shape[1]),
    "nnz": int(conf.nnz), "fit_seconds": statistics.median(fit_wall),
    "fit_cpu_seconds": statistics.median(fit_cpu), "recommend_seconds": rec_wall,
    "recommend_cpu_seconds": rec_cpu,
}))
