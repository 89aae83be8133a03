"""TensorZero peer for `cargo xtask bench --peers`: drives the embedded
gateway of the `tensorzero` PyPI package (observability off) against the
bench mock, and prints JSON figures in the harness's units (µs, RPS).

usage: tensorzero_driver.py MOCK_URL SLOW_URL C1_REQUESTS RATE_SECS RATES...
"""

import asyncio
import json
import os
import sys
import tempfile
import time

from tensorzero import AsyncTensorZeroGateway, TensorZeroGateway

CONFIG = """
[gateway.observability]
enabled = false

[models.bench]
routing = ["mock"]

[models.bench.providers.mock]
type = "openai"
model_name = "bench-model"
api_base = "{url}/v1/"

[models.slow]
routing = ["mock"]

[models.slow.providers.mock]
type = "openai"
model_name = "bench-model"
api_base = "{slow}/v1/"
"""

INPUT = {"messages": [{"role": "user", "content": "hi"}]}


def pct(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round((len(xs) - 1) * p))]


async def open_loop(client, model, rate, secs):
    """Sends at a constant rate (latency measured from the scheduled send
    time, like oha --latency-correction)."""
    lat, errors, tasks = [], 0, []
    start = time.perf_counter()
    total = int(rate * secs)

    async def one(scheduled):
        nonlocal errors
        try:
            await client.inference(model_name=model, input=INPUT)
            lat.append((time.perf_counter() - scheduled) * 1e6)
        except Exception:  # noqa: BLE001 - any failure is an error row
            errors += 1

    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled)))
    await asyncio.gather(*tasks)
    took = time.perf_counter() - start
    return {"rps": round(len(lat) / took), "p50_us": pct(lat, 0.5), "p99_us": pct(lat, 0.99),
            "errors": errors, "requests": total}


async def main():
    url, slow, n, secs = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    rates = [int(r) for r in sys.argv[5:]]
    os.environ.setdefault("OPENAI_API_KEY", "sk-bench")
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write(CONFIG.format(url=url, slow=slow))
        path = f.name
    out = {}
    sync = TensorZeroGateway.build_embedded(config_file=path)
    for _ in range(200):
        sync.inference(model_name="bench", input=INPUT)
    lat = []
    for _ in range(n):
        t = time.perf_counter()
        sync.inference(model_name="bench", input=INPUT)
        lat.append((time.perf_counter() - t) * 1e6)
    out["c1"] = {"p50_us": pct(lat, 0.5), "p99_us": pct(lat, 0.99), "requests": n}
    client = await AsyncTensorZeroGateway.build_embedded(config_file=path)
    out["rate_2000"] = await open_loop(client, "bench", 2000, secs)
    sustained, steps = 0, []
    for rate in rates:
        r = await open_loop(client, "slow", rate, secs)
        held = r["errors"] <= r["requests"] * 0.001 and r["p99_us"] is not None and r["p99_us"] < 1e6 and r["rps"] >= rate * 0.95
        steps.append({"rate": rate, "load": r, "held": held})
        if not held:
            break
        sustained = rate
    out["sustained_20ms_rps"] = sustained
    out["sustained_steps"] = steps
    print(json.dumps(out))


asyncio.run(main())
