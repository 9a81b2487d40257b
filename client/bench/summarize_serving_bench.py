#!/usr/bin/env python3
"""Summarises a run_serving_bench.sh output folder as Markdown tables.

For every (mode, max concurrency) point: the median and the minimum over the
runs of throughput and latency figures from openelm_bench_serve's JSON, plus
the server's own step figures from /metrics deltas taken around each run.
"""
import glob
import json
import os
import re
import statistics
import sys
from collections import defaultdict


def parse_prom(path):
    samples = {}
    with open(path) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            series, _, value = line.rstrip("\n").rpartition(" ")
            try:
                samples[series] = float(value)
            except ValueError:
                pass
    return samples


def delta(before, after, name):
    return after.get(name, 0.0) - before.get(name, 0.0)


def main(out_dir):
    points = defaultdict(list)
    for path in sorted(glob.glob(os.path.join(out_dir, "*-c*-r*.json"))):
        tag = os.path.basename(path)[:-5]
        m = re.match(r"(.+)-c(\d+)-r(\d+)$", tag)
        if not m:
            continue
        mode, c = m.group(1), int(m.group(2))
        with open(path) as f:
            r = json.load(f)
        before = parse_prom(os.path.join(out_dir, tag + ".before.prom"))
        after = parse_prom(os.path.join(out_dir, tag + ".after.prom"))
        steps = delta(before, after, "openelm_step_duration_seconds_count")
        step_s = delta(before, after, "openelm_step_duration_seconds_sum")
        rows = delta(before, after, "openelm_step_batch_size_sum")
        # Absent in scrapes from servers older than these histograms: NaN.
        fwd_s, sample_s = (
            delta(before, after, name) if name in after else float("nan")
            for name in ("openelm_step_forward_seconds_sum", "openelm_step_sample_seconds_sum"))
        queue_n = delta(before, after, "openelm_queue_time_seconds_count")
        queue_s = delta(before, after, "openelm_queue_time_seconds_sum")
        r["_steps"] = steps
        r["_step_ms"] = 1e3 * step_s / steps if steps else float("nan")
        r["_rows_per_step"] = rows / steps if steps else float("nan")
        r["_busy"] = step_s / r["duration_s"] if r["duration_s"] else float("nan")
        r["_forward_pct"] = 100 * fwd_s / step_s if step_s else float("nan")
        r["_sample_pct"] = 100 * sample_s / step_s if step_s else float("nan")
        r["_queue_ms"] = 1e3 * queue_s / queue_n if queue_n else float("nan")
        r["_overhead_ms"] = r["mean_e2el_ms"] - r.get("mean_server_e2el_ms", float("nan"))
        points[(mode, c)].append(r)

    cols = [
        ("req/s", "request_throughput", "{:.3f}"),
        ("out tok/s", "output_throughput", "{:.1f}"),
        ("total tok/s", "total_token_throughput", "{:.1f}"),
        ("mean TTFT ms", "mean_ttft_ms", "{:.0f}"),
        ("p99 TTFT ms", "p99_ttft_ms", "{:.0f}"),
        ("median TPOT ms", "median_tpot_ms", "{:.1f}"),
        ("mean ITL ms", "mean_itl_ms", "{:.1f}"),
        ("mean E2E ms", "mean_e2el_ms", "{:.0f}"),
        ("p99 E2E ms", "p99_e2el_ms", "{:.0f}"),
    ]
    print("### Throughput and latency (median / min over runs)\n")
    print("| mode | max conc. | runs | requests | " + " | ".join(c[0] for c in cols) + " |")
    print("|---" * (4 + len(cols)) + "|")
    for (mode, c) in sorted(points, key=lambda k: (k[0], k[1])):
        rs = points[(mode, c)]
        cells = []
        for _, key, fmt in cols:
            vals = [x[key] for x in rs if x.get(key) is not None]
            cells.append(fmt.format(statistics.median(vals)) + " / " + fmt.format(min(vals)))
        print(f"| {mode} | {c} | {len(rs)} | {rs[0]['completed'] + rs[0]['failed']} | "
              + " | ".join(cells) + " |")

    print("\n### Server step figures (median over runs)\n")
    print("| mode | max conc. | steps/run | mean step ms | rows/step | engine busy % "
          "| forward % of step | sample % of step | mean queue ms | client-server E2E gap ms |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (mode, c) in sorted(points, key=lambda k: (k[0], k[1])):
        rs = points[(mode, c)]
        med = lambda k: statistics.median([x[k] for x in rs])
        print(f"| {mode} | {c} | {med('_steps'):.0f} | {med('_step_ms'):.1f} | "
              f"{med('_rows_per_step'):.2f} | {100 * med('_busy'):.0f} | "
              f"{med('_forward_pct'):.1f} | {med('_sample_pct'):.1f} | "
              f"{med('_queue_ms'):.0f} | {med('_overhead_ms'):.1f} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/openelm-bench-serving")
