#!/usr/bin/env python3
"""OTLP traces at a fixed rate for a fixed time, with the server's online-evaluation counters
sampled as it goes (used by benches/evals_online.sh).

The traces are ../shared/bench/llm-obs/loadgen.py's "AI playlist" traces (4 spans each),
pre-encoded as protobuf, TRACES_PER_REQUEST per request. Requests are due at fixed times (open
loop): a late request is sent at once and its latency counts from when it was due. Every
SAMPLE_S seconds the script reads GET /v1/evals/online (spans sampled, scores, dropped,
pending); after the run it waits up to DRAIN_S for the queue to empty.

Only point it at a server you started on loopback.

    otlp_fixed_rate.py --base URL --loadgen DIR --rate TRACES_PER_S --seconds S --out FILE
"""
import argparse
import http.client
import json
import statistics
import sys
import threading
import time
import urllib.parse
import urllib.request


def online(base):
    with urllib.request.urlopen(base + "/v1/evals/online", timeout=10) as r:
        return json.load(r)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--loadgen", required=True, help="directory holding loadgen.py")
    ap.add_argument("--rate", type=float, default=1000.0, help="traces per second")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--traces-per-request", type=int, default=10)
    ap.add_argument("--connections", type=int, default=2)
    ap.add_argument("--sample-s", type=float, default=5.0)
    ap.add_argument("--drain-s", type=float, default=120.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    host = urllib.parse.urlsplit(a.base)
    if host.hostname not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("loopback servers only")
    sys.path.insert(0, a.loadgen)
    import loadgen

    traces = int(a.rate * a.seconds)
    args = argparse.Namespace(traces=traces, seed=a.seed, content="both", error_rate=0.02,
                              batch_size=4 * a.traces_per_request, gzip=False,
                              project=f"evals-online-{a.seed}")
    bodies, spans = loadgen.build_payloads(args, loadgen.make_resource(args))
    interval = a.traces_per_request / a.rate
    lock = threading.Lock()
    lat, failed, next_i = [], [0], [0]
    start = time.perf_counter() + 0.2

    def worker():
        conn = http.client.HTTPConnection(host.hostname, host.port, timeout=60)
        while True:
            with lock:
                i = next_i[0]
                next_i[0] += 1
            if i >= len(bodies):
                break
            due = start + i * interval
            now = time.perf_counter()
            if due > now:
                time.sleep(due - now)
            _, body = bodies[i]
            try:
                conn.request("POST", "/v1/traces", body=body,
                             headers={"Content-Type": "application/x-protobuf"})
                r = conn.getresponse()
                r.read()
                ok = 200 <= r.status < 300
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(host.hostname, host.port, timeout=60)
                ok = False
            with lock:
                if ok:
                    lat.append((time.perf_counter() - due) * 1e3)
                else:
                    failed[0] += 1
        conn.close()

    samples = []
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(a.connections)]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    while any(t.is_alive() for t in threads):
        time.sleep(a.sample_s)
        samples.append({"t_s": round(time.perf_counter() - t0, 1), **online(a.base)})
    sent_s = time.perf_counter() - start
    at_end = online(a.base)
    drained = None
    while time.perf_counter() - t0 - sent_s < a.drain_s:
        c = online(a.base)
        if c["pending"] == 0:
            drained = round(time.perf_counter() - start - sent_s, 1)
            break
        time.sleep(0.5)
    final = online(a.base)
    lat.sort()
    result = {
        "traces_per_s": a.rate, "seconds": round(sent_s, 1), "spans": spans,
        "spans_per_s_offered": round(spans / (traces / a.rate)),
        "spans_per_s_achieved": round(spans / sent_s),
        "requests_failed": failed[0],
        "ack_p50_ms": round(lat[len(lat) // 2], 2) if lat else None,
        "ack_p99_ms": round(lat[int(len(lat) * 0.99)], 2) if lat else None,
        "sampled_in_run": at_end["sampled"], "done_in_run": at_end["sampled"] - at_end["pending"] - at_end["dropped"],
        "scores_in_run": at_end["scores"],
        "backlog_at_end": at_end["pending"], "backlog_max": max([s["pending"] for s in samples] + [at_end["pending"]]),
        "dropped": final["dropped"], "drained_after_s": drained, "final": final,
        "backlog_by_time": [(s["t_s"], s["pending"]) for s in samples],
    }
    json.dump(result, open(a.out, "w"))
    print(json.dumps({k: v for k, v in result.items() if k != "backlog_by_time"}))


if __name__ == "__main__":
    main()
