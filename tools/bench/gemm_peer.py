#!/usr/bin/python3
"""Peer timings for `graft bench gemm`: the same products in numpy (OpenBLAS), and numpy's memory read bandwidth.

Reads one JSON object on stdin:
  {"shapes": [{"name": str, "m": int, "n": int, "k": int, "trans_a": bool, "trans_b": bool}, ...],
   "bandwidth_bytes": int, "seconds_per_shape": float}
Writes one JSON object on stdout:
  {"numpy": version, "blas": {"kind": ..., "libraries": [...], "core": openblas_get_corename(), "threads": int},
   "bandwidth_gbps": float,
   "results": [{"name": str, "seconds": median seconds, "best_seconds": fastest, "rows": base64 f32 of C's rows 0, m/2, m-1}, ...]}

The operands are the pattern Graft's side fills too (pattern() below), so C can be compared. The caller sets
OPENBLAS_CORETYPE=SkylakeX on AVX-512 CPUs: Debian's OpenBLAS 0.3.21 does not recognise newer CPUs and silently runs
its SSE3 "Prescott" kernels otherwise; the kernel it really runs is reported from openblas_get_corename().

The BLAS is read from /proc/self/maps after a product has run: numpy.show_config reports what numpy was
built against, not what the dynamic loader picked through Debian's alternatives at run time.
"""
import base64
import ctypes
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
    report = {"kind": kind, "libraries": sorted(paths), "core": None, "threads": None}
    for path in sorted(paths):
        try:
            library = ctypes.CDLL(path)
            library.openblas_get_corename.restype = ctypes.c_char_p
            report["core"] = library.openblas_get_corename().decode()
            report["threads"] = library.openblas_get_num_threads()
            break
        except (OSError, AttributeError):
            continue
    return report


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


def pattern(shape, salt):
    """Values in [-0.5, 0.5) from the element's index in storage order, computed in float64, rounded to float32."""
    count = shape[0] * shape[1]
    index = np.arange(count, dtype=np.int64)
    return (((index * 7919 + salt * 104729) % 2003) / 2003.0 - 0.5).astype(np.float32).reshape(shape)


def operands(shape):
    m, n, k = shape["m"], shape["n"], shape["k"]
    a = pattern((k, m) if shape["trans_a"] else (m, k), 1)
    b = pattern((n, k) if shape["trans_b"] else (k, n), 2)
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
    results = []
    for shape in request["shapes"]:
        a, b = operands(shape)
        out = np.empty((shape["m"], shape["n"]), dtype=np.float32)
        times = repeat_seconds(lambda: np.matmul(a, b, out=out), budget)
        m = shape["m"]
        rows = np.ascontiguousarray(out[[0, m // 2, m - 1]], dtype=np.float32)
        results.append({"name": shape["name"], "seconds": statistics.median(times), "best_seconds": min(times),
                        "rows": base64.b64encode(rows.tobytes()).decode()})
        del a, b, out
    bandwidth = read_bandwidth(int(request["bandwidth_bytes"]), budget) if request.get("bandwidth_bytes") else None
    json.dump({"numpy": np.__version__, "blas": loaded_blas(), "threads": os.cpu_count(),
               "bandwidth_gbps": bandwidth, "results": results}, sys.stdout)


if __name__ == "__main__":
    main()
