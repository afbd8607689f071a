#!/usr/bin/python3
"""Peer timings for `graft bench gemm`: the same products in numpy, and numpy's memory read bandwidth.

Reads one JSON object on stdin:
  {"shapes": [{"name": str, "m": int, "n": int, "k": int, "trans_a": bool, "trans_b": bool}, ...],
   "bandwidth_bytes": int, "seconds_per_shape": float}
Writes one JSON object on stdout:
  {"numpy": version, "blas": {"kind": ..., "libraries": [...]}, "bandwidth_gbps": float,
   "results": [{"name": str, "seconds": median seconds, "best_seconds": fastest}, ...]}

The BLAS is read from /proc/self/maps after a product has run: numpy.show_config reports what numpy was
built against, not what the dynamic loader picked through Debian's alternatives at run time.
"""
import json
import os
import statistics
import sys
import threading
import time

import numpy as np


def loaded_blas():
    paths = set()
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            if len(fields) >= 6 and (".so" in fields[-1]) and any(
                    key in os.path.basename(fields[-1]) for key in ("blas", "lapack", "mkl", "blis", "atlas")):
                paths.add(os.path.realpath(fields[-1]))
    joined = " ".join(sorted(paths)).lower()
    if "openblas" in joined:
        kind = "openblas"
    elif "mkl" in joined:
        kind = "mkl"
    elif "blis" in joined:
        kind = "blis"
    elif "atlas" in joined:
        kind = "atlas"
    elif "/blas/" in joined or "libblas" in joined:
        kind = "reference"
    else:
        kind = "unknown"
    return {"kind": kind, "libraries": sorted(paths)}


def repeat_seconds(run, budget):
    run()  # warm-up: first call pays for thread start-up and page faults
    start = time.perf_counter()
    run()
    first = time.perf_counter() - start
    repeats = max(3, min(15, int(budget / max(first, 1e-9))))
    times = [first]
    for _ in range(repeats - 1):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def operands(shape, rng):
    m, n, k = shape["m"], shape["n"], shape["k"]
    a = rng.standard_normal((k, m) if shape["trans_a"] else (m, k), dtype=np.float32)
    b = rng.standard_normal((n, k) if shape["trans_b"] else (k, n), dtype=np.float32)
    return (a.T if shape["trans_a"] else a), (b.T if shape["trans_b"] else b)


def read_bandwidth(total_bytes, budget):
    """Sums an array of total_bytes with two threads (numpy releases the GIL inside the reduction)."""
    data = np.ones(total_bytes // 4, dtype=np.float32)
    halves = np.array_split(data, 2)

    def run():
        threads = [threading.Thread(target=np.add.reduce, args=(half,)) for half in halves]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    # The fastest pass, not the median: a ceiling that neighbours on a shared machine can only lower.
    seconds = min(repeat_seconds(run, budget))
    return total_bytes / seconds / 1e9


def main():
    request = json.load(sys.stdin)
    budget = float(request.get("seconds_per_shape", 1.0))
    rng = np.random.default_rng(0)
    results = []
    for shape in request["shapes"]:
        a, b = operands(shape, rng)
        out = np.empty((shape["m"], shape["n"]), dtype=np.float32)
        times = repeat_seconds(lambda: np.matmul(a, b, out=out), budget)
        results.append({"name": shape["name"], "seconds": statistics.median(times), "best_seconds": min(times)})
        del a, b, out
    bandwidth = read_bandwidth(int(request["bandwidth_bytes"]), budget) if request.get("bandwidth_bytes") else None
    json.dump({"numpy": np.__version__, "blas": loaded_blas(), "threads": os.cpu_count(),
               "bandwidth_gbps": bandwidth, "results": results}, sys.stdout)


if __name__ == "__main__":
    main()
