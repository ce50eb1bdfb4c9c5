#!/usr/bin/env python3
"""Python's concurrent.futures and asyncio on the shapes polyexec's benches measure.

Run by scripts/bench.sh; prints one JSON object. Each figure is a median of several repetitions
in this process, so it can be set beside the Rust figures of the same run.

    python3 benches/peers.py [--quick]
"""

import asyncio
import concurrent.futures as cf
import json
import os
import statistics
import sys
import time
import tracemalloc

QUICK = "--quick" in sys.argv
WORKERS = 2
TASKS = 2_000 if QUICK else 10_000
LOCKSTEP = 200 if QUICK else 2_000
MAP_TASKS = 50_000 if QUICK else 400_000
REPEATS = 3 if QUICK else 7
SLEEPERS = 1_000 if QUICK else 10_000
SLEEP_S = 0.1


def trivial(x):
    return x + 1


def kernel(bounds):
    lo, hi = bounds
    count = 0
    for n in range(lo, hi):
        if n < 2:
            continue
        d = 2
        prime = True
        while d * d <= n:
            if n % d == 0:
                prime = False
                break
            d += 1
        count += prime
    return count


def kernel_chunks():
    limit = 20_000 if QUICK else 200_000
    return [(i, i + limit // 16) for i in range(0, limit, limit // 16)]


def median_time(fn):
    samples = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return {
        "median_s": statistics.median(samples),
        "min_s": min(samples),
        "max_s": max(samples),
    }


def submit_all(pool, n):
    futures = [pool.submit(trivial, i) for i in range(n)]
    for f in futures:
        f.result()


def lockstep(pool, n):
    for i in range(n):
        pool.submit(trivial, i).result()


async def async_trivial(x):
    return x + 1


async def async_submit_all(n):
    tasks = [asyncio.ensure_future(async_trivial(i)) for i in range(n)]
    await asyncio.gather(*tasks)


async def async_lockstep(n):
    for i in range(n):
        await asyncio.ensure_future(async_trivial(i))


def echo(payload):
    return payload


def payload_round_trips(pool):
    """Seconds per round trip of a bytes payload through a worker process, there and back."""
    out = {}
    for name, size in [("64B", 64), ("64KiB", 64 << 10), ("1MiB", 1 << 20), ("16MiB", 16 << 20)]:
        payload = bytes([0xA5]) * size
        n = 5 if size >= 1 << 20 else 200
        if QUICK:
            n = max(2, n // 4)

        def run():
            for _ in range(n):
                pool.submit(echo, payload).result()

        t = median_time(run)
        out[name] = {k: v / n for k, v in t.items()}
    return out


async def sleepers(n):
    await asyncio.gather(*(asyncio.sleep(SLEEP_S) for _ in range(n)))


def sleepers_memory(n):
    """Bytes allocated per pending sleeping task, measured with tracemalloc."""

    async def run():
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        tasks = [asyncio.ensure_future(asyncio.sleep(SLEEP_S)) for _ in range(n)]
        await asyncio.sleep(0)  # let every task start and reach its sleep
        pending = tracemalloc.get_traced_memory()[0] - base
        await asyncio.gather(*tasks)
        tracemalloc.stop()
        return pending / n

    return asyncio.run(run())


def main():
    out = {"python": sys.version.split()[0], "workers": WORKERS, "quick": QUICK}

    with cf.ThreadPoolExecutor(WORKERS) as pool:
        submit_all(pool, 100)
        out["thread_pool_submit_all"] = dict(
            tasks=TASKS, **median_time(lambda: submit_all(pool, TASKS))
        )
        out["thread_pool_lockstep"] = dict(
            tasks=LOCKSTEP, **median_time(lambda: lockstep(pool, LOCKSTEP))
        )
        out["thread_pool_map"] = dict(
            tasks=TASKS, **median_time(lambda: list(pool.map(trivial, range(TASKS))))
        )
        chunks = kernel_chunks()
        serial = median_time(lambda: [kernel(c) for c in chunks])["median_s"]
        threaded = median_time(lambda: list(pool.map(kernel, chunks)))["median_s"]
        out["thread_pool_cpu_speedup"] = serial / threaded

    start = time.perf_counter()
    with cf.ProcessPoolExecutor(WORKERS) as pool:
        pool.submit(trivial, 0).result()
        out["process_pool_start_s"] = time.perf_counter() - start
        out["process_pool_submit_all"] = dict(
            tasks=TASKS, **median_time(lambda: submit_all(pool, TASKS))
        )
        out["process_pool_lockstep"] = dict(
            tasks=LOCKSTEP, **median_time(lambda: lockstep(pool, LOCKSTEP))
        )
        out["process_pool_map_chunk256"] = dict(
            tasks=MAP_TASKS,
            **median_time(lambda: list(pool.map(trivial, range(MAP_TASKS), chunksize=256))),
        )
        out["process_pool_payload"] = payload_round_trips(pool)
        chunks = kernel_chunks()
        serial = median_time(lambda: [kernel(c) for c in chunks])["median_s"]
        parallel = median_time(lambda: list(pool.map(kernel, chunks)))["median_s"]
        out["process_pool_cpu_speedup"] = serial / parallel

    out["asyncio_submit_all"] = dict(
        tasks=TASKS, **median_time(lambda: asyncio.run(async_submit_all(TASKS)))
    )
    out["asyncio_lockstep"] = dict(
        tasks=LOCKSTEP, **median_time(lambda: asyncio.run(async_lockstep(LOCKSTEP)))
    )
    start = time.perf_counter()
    asyncio.run(sleepers(SLEEPERS))
    out["asyncio_sleepers"] = {
        "tasks": SLEEPERS,
        "sleep_s": SLEEP_S,
        "wall_s": time.perf_counter() - start,
        "bytes_per_task": sleepers_memory(SLEEPERS),
    }
    out["cpus"] = os.cpu_count()
    json.dump(out, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
