#!/usr/bin/env python3
"""Writes docs/benchmarks.md and docs/benchmarks.svg from one run of scripts/bench.sh.

Inputs: criterion's estimates (target/criterion/**/new/{benchmark,estimates}.json), the JSON
files the non-criterion bench programs write (target/polyexec-bench/*.json), Python's figures
(python.json from benches/peers.py), machine.txt, and the hand-written notes file, which is
copied into the page below the generated tables.

Every figure is a ratio to a baseline measured in the same run. For criterion figures the ratio
is of the median estimates, and its spread is the widest ratio the two 95% confidence intervals
allow (low = a.low / b.high, high = a.high / b.low). For programs that measure contenders in
alternating rounds (coroutine_ratio, the subprocess round trip summary) the ratio is the median of
the per-round ratios and its spread their quartiles.
"""

import argparse
import glob
import html
import json
import math
import os
import sys


# --------------------------------------------------------------------------------------------
# Loading


def load_criterion(root):
    """full_id -> {ns, lo, hi, elements} (ns per iteration, median estimate and its 95% CI)."""
    out = {}
    for path in glob.glob(os.path.join(root, "**", "new", "benchmark.json"), recursive=True):
        with open(path) as f:
            bench = json.load(f)
        est_path = os.path.join(os.path.dirname(path), "estimates.json")
        if not os.path.exists(est_path):
            continue
        with open(est_path) as f:
            est = json.load(f)["median"]
        throughput = bench.get("throughput") or {}
        out[bench["full_id"]] = {
            "ns": est["point_estimate"],
            "lo": est["confidence_interval"]["lower_bound"],
            "hi": est["confidence_interval"]["upper_bound"],
            "elements": throughput.get("Elements"),
            "bytes": throughput.get("Bytes"),
        }
    return out


def load_json(path):
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


# --------------------------------------------------------------------------------------------
# Formatting


def fmt_time(seconds):
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "n/a"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    if seconds >= 1e-6:
        return f"{seconds * 1e6:.3g} µs"
    return f"{seconds * 1e9:.3g} ns"


def fmt_ratio(r, lo=None, hi=None, bold=False, unit="×"):
    if r is None:
        return "n/a"
    text = f"{r:.2f}{unit}"
    if bold:
        text = f"**{text}**"
    if lo is not None and hi is not None:
        text += f" [{lo:.2f}–{hi:.2f}]"
    return text


def fmt_rate(per_second):
    if per_second >= 1e6:
        return f"{per_second / 1e6:.3g} M/s"
    if per_second >= 1e3:
        return f"{per_second / 1e3:.3g} k/s"
    return f"{per_second:.3g}/s"


# --------------------------------------------------------------------------------------------
# The model: rows of (backend, shape, contender) with a per-task time and a ratio


class Row:
    def __init__(self, backend, shape, contender, kind, seconds=None, ratio=None, lo=None,
                 hi=None, note="", speedup=False, baseline=False):
        self.backend = backend
        self.shape = shape
        self.contender = contender
        self.kind = kind  # "polyexec", "baseline", "peer", "python"
        self.seconds = seconds
        self.ratio = ratio
        self.lo = lo
        self.hi = hi
        self.note = note
        self.speedup = speedup
        self.baseline = baseline


class Report:
    def __init__(self, crit):
        self.crit = crit
        self.rows = []
        self.goals = []
        self.missing = []

    def get(self, full_id):
        c = self.crit.get(full_id)
        if c is None:
            self.missing.append(full_id)
        return c

    def per_unit(self, c, per_elements=True):
        """Seconds per task (per element when the bench declared element throughput)."""
        n = c["elements"] if (per_elements and c["elements"]) else 1
        return c["ns"] / n * 1e-9, c["lo"] / n * 1e-9, c["hi"] / n * 1e-9

    def compare(self, backend, shape, baseline_id, baseline_name, contenders, python=None):
        """Rows for one shape: the baseline, then each (full_id, name, kind) as a ratio of
        per-task times; python = (name, seconds per task) or None."""
        base = self.get(baseline_id)
        if base is None:
            return None
        b, b_lo, b_hi = self.per_unit(base)
        self.rows.append(Row(backend, shape, baseline_name, "baseline", b, 1.0, baseline=True))
        result = {}
        for full_id, name, kind in contenders:
            c = self.get(full_id)
            if c is None:
                continue
            a, a_lo, a_hi = self.per_unit(c)
            row = Row(backend, shape, name, kind, a, a / b, a_lo / b_hi, a_hi / b_lo)
            self.rows.append(row)
            result[name] = row
        if python:
            name, seconds = python
            if seconds:
                self.rows.append(Row(backend, shape, name, "python", seconds, seconds / b))
        return result

    def speedups(self, backend, shape, serial_id, contenders, python=None):
        """CPU kernel: speedup over serial = serial / contender."""
        serial = self.get(serial_id)
        if serial is None:
            return {}
        s, s_lo, s_hi = self.per_unit(serial)
        self.rows.append(Row(backend, shape, "serial (same kernel, one thread)", "baseline", s,
                             1.0, speedup=True, baseline=True))
        result = {}
        for full_id, name, kind in contenders:
            c = self.get(full_id)
            if c is None:
                continue
            a, a_lo, a_hi = self.per_unit(c)
            row = Row(backend, shape, name, kind, a, s / a, s_lo / a_hi, s_hi / a_lo, speedup=True)
            self.rows.append(row)
            result[name] = row
        if python is not None:
            self.rows.append(Row(backend, shape, python[0], "python", None, python[1],
                                 speedup=True, note="speedup of Python's own serial run"))
        return result

    def goal(self, backend, text, measured, met):
        self.goals.append((backend, text, measured, met))


def build(report, results):
    py = load_json(os.path.join(results, "python.json")) or {}

    def py_per_task(key):
        v = py.get(key)
        if not v:
            return None
        return v["median_s"] / v["tasks"]

    # ---------------- thread pool
    T = "thread pool"
    r = report.compare(
        T, "submit 10,000 then join all", "thread/submit_all_join_all/crossbeam_raw/10000",
        "hand-written crossbeam pool (baseline)",
        [("thread/submit_all_join_all/polyexec/10000", "polyexec `ThreadPool`", "polyexec"),
         ("thread/submit_all_join_all/rayon_spawn/10000", "rayon `spawn` + oneshot", "peer"),
         ("thread/submit_all_join_all/tokio_spawn_blocking/10000", "tokio `spawn_blocking`",
          "peer")],
        ("Python `ThreadPoolExecutor`", py_per_task("thread_pool_submit_all")))
    if r and "polyexec `ThreadPool`" in r:
        row = r["polyexec `ThreadPool`"]
        report.goal(T, "spawn + join, submit all then join all: ≤ 1.15× the hand-written pool",
                    fmt_ratio(row.ratio, row.lo, row.hi), row.ratio <= 1.15)
    report.compare(
        T, "lockstep (spawn, join, repeat)", "thread/lockstep/crossbeam_raw",
        "hand-written crossbeam pool (baseline)",
        [("thread/lockstep/polyexec", "polyexec `ThreadPool`", "polyexec"),
         ("thread/lockstep/rayon_spawn", "rayon `spawn` + oneshot", "peer"),
         ("thread/lockstep/tokio_spawn_blocking", "tokio `spawn_blocking`", "peer")],
        ("Python `ThreadPoolExecutor`", py_per_task("thread_pool_lockstep")))
    report.compare(
        T, "`map` of 10,000 trivial inputs", "thread/submit_all_join_all/crossbeam_raw/10000",
        "hand-written crossbeam pool, one job per input (baseline)",
        [("thread/map/chunk/1", "polyexec `map`, chunk 1", "polyexec"),
         ("thread/map/chunk/64", "polyexec `map`, chunk 64", "polyexec"),
         ("thread/map/rayon_par_iter", "rayon `par_iter` (no per-input task)", "peer")],
        ("Python `ThreadPoolExecutor.map`", py_per_task("thread_pool_map")))
    report.speedups(
        T, "CPU kernel, 16 chunks, 2 workers: speedup over serial", "thread/cpu/serial",
        [("thread/cpu/polyexec", "polyexec `ThreadPool` `map`", "polyexec"),
         ("thread/cpu/rayon_par_iter", "rayon `par_iter`", "peer"),
         ("thread/cpu/tokio_spawn_blocking", "tokio `spawn_blocking`", "peer")],
        ("Python `ThreadPoolExecutor` (GIL)", py.get("thread_pool_cpu_speedup"))
        if py.get("thread_pool_cpu_speedup") else None)

    # ---------------- coroutine
    C = "coroutine"
    ratio = load_json(os.path.join(results, "coroutine_ratio.json")) or {}
    names = {"raw": "raw async-executor (baseline)",
             "raw+result": "raw, output `Result<u64, TaskError>`",
             "raw+handle": "raw + polyexec handle",
             "async": "`EventLoop::spawn_async`", "blocking": "`EventLoop::spawn`",
             "tokio": "tokio current_thread", "spawn_all": "`EventLoop::spawn_all`",
             "map": "`EventLoop::map` (chunk 64)"}
    kinds = {"raw+result": "polyexec", "raw+handle": "polyexec", "async": "polyexec", "blocking": "polyexec",
             "tokio": "peer", "spawn_all": "polyexec", "map": "polyexec"}
    shapes = {"on_the_loop": "spawn + await on the loop, interleaved rounds",
              "cross_thread": "submit all from another thread, then join, interleaved rounds",
              "batch": "batch from another thread (baseline: `spawn_many`), interleaved rounds"}
    for key, label in shapes.items():
        data = ratio.get(key)
        if not data:
            continue
        for who, v in sorted(data.items(), key=lambda kv: kv[0] != "raw"):
            base = who == "raw"
            report.rows.append(Row(
                C, label, names.get(who, who) if not (key == "batch" and base)
                else "raw async-executor `spawn_many` (baseline)",
                "baseline" if base else kinds.get(who, "polyexec"), v["best_s_per_task"],
                v["ratio_median"], None if base else v["ratio_q1"],
                None if base else v["ratio_q3"], baseline=base,
                note="" if base else f"ratio of best rounds {v['ratio_of_bests']:.2f}×"))
            if key == "on_the_loop" and who in ("async", "blocking"):
                report.goal(C, f"spawn + await ≤ 1.10× raw async-executor ({names[who]}, on the "
                            "loop, median of per-round ratios)",
                            fmt_ratio(v["ratio_median"], v["ratio_q1"], v["ratio_q3"]),
                            v["ratio_median"] <= 1.10)
    report.compare(
        C, "criterion: submit 10,000 from another thread, then await all",
        "coroutine/submit_all_await_all/async_executor_raw/10000",
        "raw async-executor (baseline)",
        [("coroutine/submit_all_await_all/polyexec_spawn_async/10000",
          "`EventLoop::spawn_async`", "polyexec"),
         ("coroutine/submit_all_await_all/polyexec_spawn/10000", "`EventLoop::spawn`",
          "polyexec"),
         ("coroutine/submit_all_await_all/tokio_current_thread/10000", "tokio current_thread",
          "peer")],
        ("Python asyncio (`ensure_future` + `gather`)", py_per_task("asyncio_submit_all")))
    report.compare(
        C, "criterion: spawn + await on the loop", "coroutine/on_the_loop/async_executor_raw/10000",
        "raw async-executor (baseline)",
        [("coroutine/on_the_loop/polyexec_spawn_async/10000", "`EventLoop::spawn_async`",
          "polyexec"),
         ("coroutine/on_the_loop/polyexec_spawn/10000", "`EventLoop::spawn`", "polyexec"),
         ("coroutine/on_the_loop/tokio_current_thread/10000", "tokio current_thread", "peer")])
    report.compare(
        C, "criterion: lockstep from another thread", "coroutine/lockstep/async_executor_raw",
        "raw async-executor (baseline)",
        [("coroutine/lockstep/polyexec_spawn_async", "`EventLoop::spawn_async`", "polyexec"),
         ("coroutine/lockstep/polyexec_spawn", "`EventLoop::spawn`", "polyexec"),
         ("coroutine/lockstep/tokio_current_thread", "tokio current_thread", "peer")],
        ("Python asyncio (await each)", py_per_task("asyncio_lockstep")))
    report.compare(
        C, "criterion: batch and `map` with chunking, 10,000 inputs",
        "coroutine/batch/async_executor_spawn_many/10000",
        "raw async-executor `spawn_many` (baseline)",
        [("coroutine/batch/polyexec_spawn_all/10000", "`EventLoop::spawn_all`", "polyexec"),
         ("coroutine/batch/polyexec_map_chunk/1", "`map`, chunk 1", "polyexec"),
         ("coroutine/batch/polyexec_map_chunk/16", "`map`, chunk 16", "polyexec"),
         ("coroutine/batch/polyexec_map_chunk/64", "`map`, chunk 64 (default)", "polyexec")])
    report.speedups(
        C, "CPU kernel, 16 chunks, loop of 2 threads: speedup over serial", "coroutine/cpu/serial",
        [("coroutine/cpu/polyexec_2_threads", "`EventLoop` (2 threads) `map`", "polyexec")])

    sleep = load_json(os.path.join(results, "sleep.json"))
    sleep_rows = []
    if sleep:
        cont = sleep["contenders"]
        base = cont.get("async_executor_raw")
        labels = [("async_executor_raw", "raw async-executor (baseline)", "baseline"),
                  ("polyexec_event_loop", "polyexec `EventLoop` (1 thread)", "polyexec"),
                  ("tokio_current_thread", "tokio current_thread", "peer"),
                  ("polyexec_thread_pool_2", "polyexec `ThreadPool` (2 workers)", "polyexec"),
                  ("polyexec_process_pool_2", "polyexec `ProcessPool` (2 workers)¹", "polyexec")]
        for key, label, kind in labels:
            v = cont.get(key)
            if v:
                sleep_rows.append((label, v, v["wall_s"] / base["wall_s"] if base else None))
        py_sleep = py.get("asyncio_sleepers")
        if py_sleep:
            sleep_rows.append(("Python asyncio" + (f" ({py_sleep['tasks']:,} tasks)" if
                                                   py_sleep["tasks"] != sleep["tasks"] else ""),
                               {"wall_s": py_sleep["wall_s"],
                                "bytes_per_task": py_sleep["bytes_per_task"]}, None))
        ev = cont.get("polyexec_event_loop")
        if ev:
            report.goal(C, "10,000 × 100 ms sleeps on one loop thread: wall ≤ 110 ms",
                        f"{ev['wall_s'] * 1e3:.1f} ms (rounds {ev['wall_min_s'] * 1e3:.1f}–"
                        f"{ev['wall_max_s'] * 1e3:.1f})", ev["wall_s"] <= 0.110)
            report.goal(C, "… and ≤ 400 B per pending task",
                        f"{ev['bytes_per_task']:.0f} B", ev["bytes_per_task"] <= 400)
    report.sleep_rows = sleep_rows

    # ---------------- subprocess
    S = "subprocess"
    inter = load_json(os.path.join(results, "subprocess_interleaved.json"))
    if inter:
        cont = inter["contenders"]
        labels = {"ipc_channel_raw": ("raw ipc-channel round trip (baseline)", "baseline"),
                  "polyexec": ("polyexec `ProcessPool`, 1 worker", "polyexec"),
                  "procspawn_pool": ("procspawn `Pool`, 1 worker", "peer")}
        for key, (label, kind) in labels.items():
            v = cont.get(key)
            if not v:
                continue
            base = key == "ipc_channel_raw"  # listed first in `labels`
            report.rows.append(Row(
                S, f"warm round trip of a trivial task, alternating batches ({inter['batches']} × "
                   f"{inter['per_batch']})", label, kind, v["median_s"], v["ratio_median"],
                None if base else v["ratio_q1"], None if base else v["ratio_q3"], baseline=base))
        pv = cont.get("polyexec")
        if pv:
            report.goal(S, "warm round trip ≤ 1.3× a raw ipc-channel round trip (alternating "
                        "batches)", fmt_ratio(pv["ratio_median"], pv["ratio_q1"], pv["ratio_q3"]),
                        pv["ratio_median"] <= 1.3)
        py_rt = py_per_task("process_pool_lockstep")
        if py_rt and cont.get("ipc_channel_raw"):
            report.rows.append(Row(
                S, f"warm round trip of a trivial task, alternating batches ({inter['batches']} × "
                   f"{inter['per_batch']})", "Python `ProcessPoolExecutor` (separate run)",
                "python", py_rt, py_rt / cont["ipc_channel_raw"]["median_s"]))
    report.compare(
        S, "criterion: warm round trip of a trivial task", "subprocess/round_trip/ipc_channel_raw",
        "raw ipc-channel round trip (baseline)",
        [("subprocess/round_trip/polyexec", "polyexec `ProcessPool`, 1 worker", "polyexec"),
         ("subprocess/round_trip/procspawn_pool", "procspawn `Pool`, 1 worker", "peer")],
        ("Python `ProcessPoolExecutor`", py_per_task("process_pool_lockstep")))
    r = report.compare(
        S, "trivial tasks submitted all at once, then joined, 1 worker",
        "subprocess/submit_all/ipc_channel_raw_pipelined/20000",
        "raw ipc-channel, 32 in flight (baseline)",
        [("subprocess/submit_all/polyexec/20000", "polyexec `spawn_all` + join", "polyexec"),
         ("subprocess/submit_all/procspawn_pool/200", "procspawn `spawn` × 200 + join", "peer")],
        ("Python `ProcessPoolExecutor` (2 workers)", py_per_task("process_pool_submit_all")))
    if r and "polyexec `spawn_all` + join" in r:
        row = r["polyexec `spawn_all` + join"]
        report.goal(S, "≥ 100k trivial tasks/s per worker, submitted all at once",
                    fmt_rate(1 / row.seconds), 1 / row.seconds >= 100e3)
    m = report.get("subprocess/map/polyexec_2_workers_chunk/128")
    py_map = py_per_task("process_pool_map_chunk256")
    map_rows = []
    for chunk in (16, 128):
        c = report.crit.get(f"subprocess/map/polyexec_2_workers_chunk/{chunk}")
        if c:
            map_rows.append((f"polyexec `map`, chunk {chunk}", c["elements"] / (c["ns"] * 1e-9),
                             c["elements"] / (c["hi"] * 1e-9), c["elements"] / (c["lo"] * 1e-9)))
    if py_map:
        map_rows.append(("Python `ProcessPoolExecutor.map`, chunksize 256", 1 / py_map, None,
                         None))
    report.map_rows = map_rows
    if m:
        rate = m["elements"] / (m["ns"] * 1e-9)
        report.goal(S, "`map` with batching ≥ 2 M trivial tasks/s on 2 workers (chunk 128)",
                    fmt_rate(rate), rate >= 2e6)
    # Issue 15's payload goals, from the alternating batches: sustained (each contender's
    # placement settled) is the verdict; the first calls after each switch are shown beside it.
    pl = load_json(os.path.join(results, "subprocess_payload_interleaved.json"))
    if pl and "phases" in (pl["sizes"].get("1MiB") or {}):
        def phase_ratio(size, phase, label):
            q1, r, q3 = pl["sizes"][size]["phases"][phase]["ratios_q1_median_q3"][label]
            return r, q1, q3

        def payload_goal(size, label, limit, text):
            r, q1, q3 = phase_ratio(size, "sustained", label)
            moved = label.replace("polyexec ", "polyexec_moved ")
            m = phase_ratio(size, "sustained", moved)[0]
            e = phase_ratio(size, "after_switch", label)[0]
            em = phase_ratio(size, "after_switch", moved)[0]
            report.goal(S, text, f"{fmt_ratio(r, q1, q3)} (without the bench's clone "
                        f"{m:.2f}×; first calls after a switch {e:.2f}× / {em:.2f}×)",
                        r <= limit)

        payload_goal("1MiB", "polyexec / ipc_channel_raw", 1.0,
                     "1 MiB byte payload round trip ≤ 1.0× raw ipc-channel (alternating "
                     "batches, sustained)")
        payload_goal("16MiB", "polyexec / ipc_channel_raw", 1.0,
                     "16 MiB byte payload round trip ≤ 1.0× raw ipc-channel (alternating "
                     "batches, sustained)")
        payload_goal("16MiB", "polyexec / memcpy_twice", 3.0,
                     "16 MiB byte payload round trip ≤ 3× an in-process round trip copying it "
                     "twice (alternating batches, sustained)")
    payload_py = py.get("process_pool_payload") or {}
    for name in ("64B", "64KiB", "1MiB", "16MiB"):
        p = payload_py.get(name)
        r = report.compare(
            S, f"payload round trip, {name} (`ByteBuf` there and back)",
            f"subprocess/payload/ipc_channel_raw/{name}", "raw ipc-channel bytes (baseline)",
            [(f"subprocess/payload/polyexec/{name}", "polyexec `ProcessPool`", "polyexec"),
             (f"subprocess/payload/procspawn_pool/{name}", "procspawn `Pool`", "peer")],
            ("Python `ProcessPoolExecutor` (bytes)", p["median_s"] if p else None))
        if name == "1MiB" and r and "polyexec `ProcessPool`" in r:
            row = r["polyexec `ProcessPool`"]
            report.goal(S, "1 MiB byte payload round trip ≤ 1.5 ms", fmt_time(row.seconds),
                        row.seconds <= 1.5e-3)
    start = report.get("subprocess/worker_start/polyexec_build")
    if start:
        py_start = py.get("process_pool_start_s")
        report.compare(
            S, "worker start (1 worker)", "subprocess/worker_start/polyexec_build",
            "polyexec `build()`: spawn, exec, handshake (baseline)",
            [("subprocess/worker_start/polyexec_first_task", "polyexec `build()` + first task",
              "polyexec"),
             ("subprocess/worker_start/procspawn_first_task", "procspawn `Pool::new` + first task",
              "peer")],
            ("Python `ProcessPoolExecutor` + first task", py_start))
        report.goal(S, "worker start ≤ 2 ms", fmt_time(start["ns"] * 1e-9),
                    start["ns"] * 1e-9 <= 2e-3)
    report.speedups(
        S, "CPU kernel, 16 chunks, 2 workers: speedup over serial", "subprocess/cpu/serial",
        [("subprocess/cpu/polyexec_2_workers", "polyexec `ProcessPool` `map`", "polyexec"),
         ("subprocess/cpu/procspawn_pool_2_workers", "procspawn `Pool`", "peer")],
        ("Python `ProcessPoolExecutor`", py.get("process_pool_cpu_speedup"))
        if py.get("process_pool_cpu_speedup") else None)
    return py


# --------------------------------------------------------------------------------------------
# Markdown


def markdown(report, py, machine, notes, args):
    out = []
    w = out.append
    w("# Benchmarks")
    w("")
    w("<!-- Generated by scripts/bench.sh (scripts/bench_report.py). Edit docs/benchmarks-notes.md"
      " for the hand-written part; the rest is overwritten by the next run. -->")
    w("")
    w("Reproduce (about 15 minutes on 2 cores; `--quick` about 5):")
    w("")
    w("```sh")
    w("scripts/bench.sh            # or: scripts/bench.sh --quick")
    w("```")
    w("")
    w("Every figure is a **ratio to a baseline measured in the same run**: the machine is shared "
      "and noisy, so absolute times mean little and are given only for scale. A ratio's spread "
      "(in brackets) is the widest ratio allowed by the two criterion 95% confidence intervals "
      "of the medians, or, for contenders measured in alternating rounds, the quartiles of the "
      "per-round ratios. Lower is better, except for speedups. Speed goals are checked here, "
      "never in tests.")
    w("")
    w("This run:")
    w("")
    w("```text")
    w(machine.strip())
    w("```")
    w("")
    w("![ratios to baseline](benchmarks.svg)")
    w("")
    w("## Goals")
    w("")
    w("| backend | goal | this run | |")
    w("|---|---|---|---|")
    for backend, text, measured, met in report.goals:
        w(f"| {backend} | {text} | {measured} | {'met' if met else '**missed**'} |")
    w("")
    w("Why a goal is missed, and what was done about it, is in the notes below.")
    for backend in ("thread pool", "coroutine", "subprocess"):
        w("")
        w(f"## {backend[0].upper()}{backend[1:]}")
        shape = None
        for row in report.rows:
            if row.backend != backend:
                continue
            if row.shape != shape:
                shape = row.shape
                w("")
                w(f"**{shape}**")
                w("")
                if row.speedup:
                    w("| contender | time | speedup over serial |")
                else:
                    w("| contender | per task | ratio to baseline [spread] |")
                w("|---|---|---|")
            name = row.contender
            if row.kind == "python":
                name = f"*{name}*"
            ratio = fmt_ratio(row.ratio, row.lo, row.hi, bold=row.kind == "polyexec")
            if row.baseline:
                ratio = "1.00× (baseline)" if not row.speedup else "1.00×"
            if row.note:
                ratio += f" ({row.note})"
            w(f"| {name} | {fmt_time(row.seconds)} | {ratio} |")
        if backend == "coroutine" and getattr(report, "sleep_rows", None):
            w("")
            w("**10,000 tasks × 100 ms sleep, all submitted at once (median of 5 interleaved "
              "rounds)**")
            w("")
            w("| contender | wall | wall / raw | bytes per pending task |")
            w("|---|---|---|---|")
            for label, v, rel in report.sleep_rows:
                rel_text = f"{rel:.3f}×" if rel is not None else ""
                if label.startswith("Python"):
                    label = f"*{label}*"
                w(f"| {label} | {v['wall_s'] * 1e3:.1f} ms | {rel_text} | "
                  f"{v['bytes_per_task']:.0f} |")
            w("")
            w("¹ Its bytes are this process's heap growth (handles, task table, frames) plus the "
              "growth of the workers' resident memory, 50 ms after submission; Python's are "
              "tracemalloc's count.")
        if backend == "subprocess" and getattr(report, "map_rows", None):
            w("")
            w("**`map` of 1,000,000 trivial inputs on 2 workers (throughput)**")
            w("")
            w("| contender | inputs per second [spread] |")
            w("|---|---|")
            for label, rate, lo, hi in report.map_rows:
                spread = f" [{fmt_rate(lo)}–{fmt_rate(hi)}]" if lo else ""
                if label.startswith("Python"):
                    label = f"*{label}*"
                w(f"| {label} | {fmt_rate(rate)}{spread} |")
    if py:
        w("")
        w(f"Python figures: CPython {py.get('python', '?')}, {py.get('workers', 2)} workers, "
          "from `benches/peers.py` in the same run (each a median of several repetitions in "
          "one process; Python rows show their ratio to the Rust baseline of the same shape).")
    if report.missing:
        w("")
        w("Not measured in this run (no criterion estimate found): " +
          ", ".join(f"`{m}`" for m in sorted(set(report.missing))) + ".")
    w("")
    w(notes.rstrip())
    w("")
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# SVG chart: one horizontal bar per non-baseline row, log scale of the ratio to the baseline


COLORS = {"polyexec": "#2b6cb0", "peer": "#dd6b20", "python": "#718096"}


def svg(report):
    rows = [r for r in report.rows if not r.baseline and r.ratio and not r.speedup]
    speed = [r for r in report.rows if not r.baseline and r.ratio and r.speedup]
    label_w, bar_w, row_h, top = 520, 420, 16, 60
    lo_exp, hi_exp = -1, 3  # 0.1× .. 1000×
    x0 = label_w

    def x_of(ratio):
        ratio = min(max(ratio, 10 ** lo_exp), 10 ** hi_exp)
        return x0 + (math.log10(ratio) - lo_exp) / (hi_exp - lo_exp) * bar_w

    items = []
    current = None
    for r in rows:
        key = (r.backend, r.shape)
        if key != current:
            items.append(("header", f"{r.backend}: {r.shape}"))
            current = key
        items.append(("row", r))
    items.append(("gap", None))
    items.append(("title2", "speedup over serial (linear, higher is better)"))
    current = None
    for r in speed:
        key = (r.backend, r.shape)
        if key != current:
            items.append(("header", f"{r.backend}: {r.shape}"))
            current = key
        items.append(("speed", r))
    height = top + len(items) * row_h + 40
    width = label_w + bar_w + 120
    e = []
    e.append(f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">')
    e.append(f'<rect width="{width}" height="{height}" fill="white"/>')
    e.append('<text x="10" y="20" font-size="14" font-weight="bold">polyexec: time per task as '
             'a ratio to the baseline of the same run (log scale, lower is better)</text>')
    legend_x = 10
    for kind, color in COLORS.items():
        e.append(f'<rect x="{legend_x}" y="30" width="10" height="10" fill="{color}"/>')
        e.append(f'<text x="{legend_x + 14}" y="39">{kind}</text>')
        legend_x += 90
    # grid
    grid_bottom = top + sum(1 for i in items if i[0] in ("header", "row")) * row_h
    for exp in range(lo_exp, hi_exp + 1):
        for mult in (1, 2, 5):
            v = mult * 10 ** exp
            if v > 10 ** hi_exp:
                continue
            x = x_of(v)
            stroke = "#999" if mult == 1 else "#e2e2e2"
            e.append(f'<line x1="{x:.1f}" y1="{top - 6}" x2="{x:.1f}" y2="{grid_bottom}" '
                     f'stroke="{stroke}" stroke-width="1"/>')
            if mult == 1 or v in (2, 5):
                e.append(f'<text x="{x:.1f}" y="{top - 9}" text-anchor="middle">{v:g}×</text>')
    x1 = x_of(1)
    e.append(f'<line x1="{x1:.1f}" y1="{top - 6}" x2="{x1:.1f}" y2="{grid_bottom}" '
             'stroke="black" stroke-width="1.5"/>')
    y = top
    max_speed = max([r.ratio for r in speed] + [2.0])
    for kind, item in items:
        if kind == "header":
            e.append(f'<text x="10" y="{y + 12}" font-weight="bold">{html.escape(item)}</text>')
        elif kind == "title2":
            e.append(f'<text x="10" y="{y + 12}" font-size="13" font-weight="bold">'
                     f'{html.escape(item)}</text>')
        elif kind == "row":
            r = item
            label = r.contender.replace("`", "")
            e.append(f'<text x="{label_w - 8}" y="{y + 11}" text-anchor="end">'
                     f'{html.escape(label)}</text>')
            xr = x_of(r.ratio)
            left, right = min(x1, xr), max(x1, xr)
            e.append(f'<rect x="{left:.1f}" y="{y + 2}" width="{max(right - left, 1):.1f}" '
                     f'height="{row_h - 5}" fill="{COLORS[r.kind]}"/>')
            if r.lo is not None and r.hi is not None:
                e.append(f'<line x1="{x_of(r.lo):.1f}" y1="{y + row_h / 2:.1f}" '
                         f'x2="{x_of(r.hi):.1f}" y2="{y + row_h / 2:.1f}" stroke="black"/>')
            e.append(f'<text x="{max(xr, x1) + 4:.1f}" y="{y + 11}">{r.ratio:.2f}×</text>')
        elif kind == "speed":
            r = item
            label = r.contender.replace("`", "")
            e.append(f'<text x="{label_w - 8}" y="{y + 11}" text-anchor="end">'
                     f'{html.escape(label)}</text>')
            wpx = r.ratio / max_speed * bar_w
            e.append(f'<rect x="{x0}" y="{y + 2}" width="{wpx:.1f}" height="{row_h - 5}" '
                     f'fill="{COLORS[r.kind]}"/>')
            e.append(f'<text x="{x0 + wpx + 4:.1f}" y="{y + 11}">{r.ratio:.2f}×</text>')
        y += row_h
    e.append("</svg>")
    return "\n".join(e) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", default="target/polyexec-bench")
    ap.add_argument("--criterion", default="target/criterion")
    ap.add_argument("--notes", default="docs/benchmarks-notes.md")
    ap.add_argument("--out", default="docs/benchmarks.md")
    ap.add_argument("--svg", default="docs/benchmarks.svg")
    args = ap.parse_args()
    report = Report(load_criterion(args.criterion))
    py = build(report, args.results)
    machine_path = os.path.join(args.results, "machine.txt")
    machine = open(machine_path).read() if os.path.exists(machine_path) else "(unknown)"
    notes = open(args.notes).read() if os.path.exists(args.notes) else ""
    with open(args.out, "w") as f:
        f.write(markdown(report, py, machine, notes, args))
    with open(args.svg, "w") as f:
        f.write(svg(report))
    if report.missing:
        print("missing criterion results: " + ", ".join(sorted(set(report.missing))),
              file=sys.stderr)


if __name__ == "__main__":
    main()
