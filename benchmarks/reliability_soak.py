"""The long reliability run against the running node over DDS: 2,000+ fuzz cases, a 10,000-frame soak.

    .venv/bin/python benchmarks/reliability_soak.py [--cases 2200] [--frames 10000] [--plot docs/reliability_rss.png]

Prints cases per category, crashes, frames lost, RSS growth from frame 1,000 to the end, and writes
the RSS-vs-frame plot when matplotlib is installed. The short version runs in CI:
test/test_ros2_reliability.py.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test"))

from ros_runtime import SKIP_REASON, RosClient  # noqa: E402

import fuzz_cases as fz  # noqa: E402
from reliability_drive import FuzzTarget, soak  # noqa: E402


def fuzz(client: RosClient, count: int, seed: int, batch: int = 25) -> dict:
    raw, packed = FuzzTarget(client, "sam3_bench_fuzz"), FuzzTarget(client, "sam3_bench_fuzzc", compressed=True)
    crashes, counters = 0, {}
    try:
        for target in (raw, packed):
            target.bring_up()
        for start in range(0, count, batch):
            for case in fz.cases(seed + start, batch):
                (packed if case.category == "compressed" else raw).send(case)
            for target in (raw, packed):
                try:
                    counters[target.name] = target.check_alive_and_working(start)
                except (AssertionError, TimeoutError) as err:
                    crashes += 1
                    print(f"batch {start} on {target.name}: {err}", flush=True)
    finally:
        codes = [raw.close(), packed.close()]
    sent = raw.sent + packed.sent
    return {"cases": sum(sent.values()), "per_category": dict(sorted(sent.items())), "crashes": crashes,
            "exit_codes": codes, "client_refused": dict(raw.client_refused + packed.client_refused),
            "node_counters": {name: {k: v for k, v in values.items() if k.startswith(("frames", "bad", "failed",
                                                                                       "camera"))}
                              for name, values in counters.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=2200)
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--plot", default="docs/reliability_rss.png")
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    if SKIP_REASON:
        print(SKIP_REASON)
        return 2
    client = RosClient("sam3_reliability_bench")
    try:
        report = {"fuzz": fuzz(client, args.cases, args.seed)}
        print(json.dumps(report["fuzz"], indent=1), flush=True)
        target = FuzzTarget(client, "sam3_bench_soak")
        target.bring_up()
        result = soak(target, args.frames, reset_every=500,
                      progress=lambda n, r: n % 1000 == 1 and print(f"frame {n}: RSS {r.rss_kib[-1][1] / 1024:.0f} MiB",
                                                                    flush=True))
        alive = target.process.alive
        report["soak"] = {"frames": result.frames, "lost": result.lost, "seconds": round(result.seconds, 1),
                          "track_ids": result.track_ids, "resets": result.resets,
                          "id_order_violations": result.id_order_violations,
                          "stamp_mismatches": result.stamp_mismatches, "alive": alive, "exit_code": target.close(),
                          "rss_growth_1000_to_end": round(result.rss_growth(1000), 4), "rss_kib": result.rss_kib}
    finally:
        client.close()
    print(json.dumps({**report, "soak": {k: v for k, v in report["soak"].items() if k != "rss_kib"}}, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    plot(report["soak"]["rss_kib"], args.plot)
    return 0


def plot(samples: list[tuple[int, int]], path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot")
        return
    frames, kib = zip(*samples)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(frames, [k / 1024 for k in kib], marker=".")
    ax.axvline(1000, color="grey", linestyle=":")
    ax.set_xlabel("frame")
    ax.set_ylabel("node RSS (MiB)")
    ax.set_title("sam3_node RSS over the soak (tiny model, CPU)")
    ax.set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"plot: {path}")


if __name__ == "__main__":
    sys.exit(main())
