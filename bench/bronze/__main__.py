"""``python -m bench.bronze``: the bronze benchmark (see ``bench/README.md``).

Steps: make sure the bench topic holds ``--events`` Debezium change events (reused when a marker
says an identical generation is there), then ``--runs`` rounds of: the three ceiling variants
(consume only; consume+parse with one consumer; consume+parse with one consumer per partition)
and the bronze dataflow with each process count of ``--processes`` (1 worker each). The order
inside a round rotates from round to round, so slow drifts of a shared machine do not always hit
the same configuration. Medians go to the results file; ``ceiling_ev_per_s`` is the faster of the
two consume+parse variants (a ceiling must be the best plain loop, or the dataflow could beat it).
Then one extra, instrumented 1-process run records where the dataflow's time goes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import platform
import pstats
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import confluent_kafka

from bench.bronze.generate import DEFAULT_CHUNK, cleanup, ensure_topic
from bench.bronze.measure import run_ceiling, run_dataflow, wait_quiet
from cdc.connect_client import ConnectClient
from cdc.stack import load_secrets
from cdc.topics import probe_broker
from core.settings import Settings, load_settings

GOAL_RATIO = 0.7
DEFAULT_OUT = Path("bench/results/bronze.json")
CEILINGS = {  # step name -> ceiling.py mode
    "ceiling_consume": "consume",
    "ceiling_parse": "parse",
    "ceiling_parse_per_partition": "parse-pp",
}

Step = tuple[str, Callable[[], dict[str, Any]]]


def echo(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.bronze", description=__doc__.split("\n")[0])
    p.add_argument("--events", type=int, default=1_000_000, help="change events (default 1,000,000)")
    p.add_argument("--runs", type=int, default=3, help="rounds; medians are reported (default 3)")
    p.add_argument("--processes", default="1,2", help="dataflow process counts, 1 worker each (1,2)")
    p.add_argument("--batch-size", type=int, default=None, help="source batch size (settings default)")
    p.add_argument("--chunk", type=int, default=DEFAULT_CHUNK, help="changes per generator chunk")
    p.add_argument("--no-recovery", action="store_true", help="run the dataflow without recovery")
    p.add_argument("--regenerate", action="store_true", help="generate even if the topic matches")
    p.add_argument("--skip-ceiling", action="store_true", help="dataflow runs only (no ratio)")
    p.add_argument("--no-breakdown", action="store_true", help="skip the instrumented stage-time run")
    p.add_argument("--keep-delta", action="store_true", help="keep each run's Delta root")
    p.add_argument(
        "--quiet-cores",
        type=float,
        default=0.6,
        help="before each run wait until the rest of the machine uses fewer cores than this (0.6)",
    )
    p.add_argument("--quiet-wait", type=float, default=30.0, help="longest such wait, seconds (30)")
    p.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="also run one cProfiled 1-process dataflow; output to PATH.0.prof",
    )
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"results file ({DEFAULT_OUT})")
    p.add_argument(
        "--cleanup", action="store_true", help="remove the bench topic, table, slot and marker, then exit"
    )
    return p


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def _machine(settings: Settings) -> dict[str, Any]:
    try:
        with ConnectClient(settings.connect.url) as client:
            connect_version = str(client.info().get("version"))
    except Exception:
        connect_version = "unknown"
    return {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "bytewax": version("bytewax"),
        "deltalake": version("deltalake"),
        "confluent_kafka": version("confluent-kafka"),
        "librdkafka": confluent_kafka.libversion()[0],
        "pyarrow": version("pyarrow"),
        "msgspec": version("msgspec"),
        "kafka_connect": connect_version,
        "mem_total_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    }


def _ok(r: dict[str, Any]) -> bool:
    return bool(r.get("ok", r.get("check", {}).get("ok", True)))


def _fmt(r: dict[str, Any]) -> str:
    return (
        f"{r['seconds']:6.2f} s {r['ev_per_s']:>9,.0f} ev/s  peak RSS {r['peak_rss_mb']:>6,.0f} MB  "
        f"CPU {r['cpu_s']:5.1f} s (rest of machine {r['other_cpu_s']:5.1f} s)"
        + (f"  from ready {r['ev_per_s_from_ready']:,.0f} ev/s" if r.get("ev_per_s_from_ready") else "")
        + ("" if _ok(r) else "  CHECK FAILED")
    )


def _profile_top(path: Path, n: int = 30) -> list[str]:
    buf = io.StringIO()
    pstats.Stats(str(path), stream=buf).sort_stats("tottime").print_stats(n)
    return [line for line in buf.getvalue().splitlines() if line.strip()]


def _breakdown(run: dict[str, Any]) -> dict[str, Any]:
    """Stage seconds of the instrumented run, per million events, plus the unattributed rest."""
    stages: dict[str, Any] = run["stages"][0]["stages"] if run.get("stages") else {}
    span = run["stages"][0]["span_s"] if run.get("stages") else 0.0
    per_m = 1_000_000 / max(run["check"]["rows"], 1)
    worker = ("source.next_batch", "decode", "worker.prepare", "worker.wait_commit")
    attributed = sum(stages[k]["s"] for k in worker if k in stages)
    return {
        "note": "seconds per 1M events inside each stage of one 1-process run (not in the medians): "
        "wall, and the calling thread's CPU. Worker thread: source.next_batch, decode, worker.prepare "
        "(Arrow rows), worker.wait_commit (waiting for the previous batch's commit); commit thread: "
        "commit.append, of which commit.write_deltalake runs in delta-rs's own threads (its CPU is not "
        "the calling thread's). gc_* pauses happen inside the stages; 'bytewax_and_idle' is the rest "
        "of the worker thread's span",
        "run_seconds": run["seconds"],
        "run_ev_per_s": run["ev_per_s"],
        "run_cpu_s": run["cpu_s"],
        "run_other_cpu_s": run["other_cpu_s"],
        "per_1m_events_s": {
            **{k: round(v["s"] * per_m, 2) for k, v in stages.items()},
            "bytewax_and_idle": round((span - attributed) * per_m, 2),
        },
        "per_1m_events_cpu_s": {k: round(v.get("cpu_s", 0.0) * per_m, 2) for k, v in stages.items()},
    }


def run(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    started = time.monotonic()
    procs = [int(x) for x in args.processes.split(",") if x.strip()]
    batch_size = args.batch_size or settings.dataflow.batch_size
    data, reused = ensure_topic(settings, args.events, args.chunk, echo, regenerate=args.regenerate)
    workdir = settings.state_dir / "bench" / "runs"
    load_before = os.getloadavg()

    def dataflow(n: int, **extra: Any) -> dict[str, Any]:
        return run_dataflow(
            settings,
            data,
            processes=n,
            batch_size=batch_size,
            workdir=workdir,
            recovery=not args.no_recovery,
            keep=args.keep_delta,
            **extra,
        )

    steps: list[Step] = []
    if not args.skip_ceiling:
        for name, mode in CEILINGS.items():
            steps.append((name, lambda mode=mode: run_ceiling(settings, data, mode=mode)))  # type: ignore[misc]
    for n in procs:
        steps.append((f"dataflow_{n}p", lambda n=n: dataflow(n)))  # type: ignore[misc]
    results: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in steps}
    for rnd in range(args.runs):
        shift = rnd % len(steps)
        for name, step in steps[shift:] + steps[:shift]:
            busy = wait_quiet(max_busy_cores=args.quiet_cores, max_wait_s=args.quiet_wait)
            r = step()
            r["busy_cores_before"] = busy
            r["other_cores"] = round(r["other_cpu_s"] / r["seconds"], 2) if r["seconds"] else None
            results[name].append(r)
            echo(f"run {rnd + 1}/{args.runs} {name:<28} {_fmt(r)}")
            if not _ok(r):
                echo(f"  check: {r.get('check', r)}")

    breakdown: dict[str, Any] | None = None
    if not args.no_breakdown:
        r = dataflow(1, stage_times=True)
        echo(f"instrumented 1-process run (not in the medians) {_fmt(r)}")
        breakdown = _breakdown(r)
        cpu = breakdown["per_1m_events_cpu_s"]
        for k, v in breakdown["per_1m_events_s"].items():
            extra = f"  (thread CPU {cpu[k]:6.2f} s)" if k in cpu else ""
            echo(f"  {k:<40} {v:6.2f} s per 1M events{extra}")
    profile_top: list[str] | None = None
    if args.profile is not None:
        r = dataflow(1, profile=args.profile)
        echo(f"cProfiled 1-process run (not in the medians) {_fmt(r)}")
        profile_top = _profile_top(args.profile.with_suffix(".0.prof"))

    def rates(name: str, key: str = "ev_per_s") -> list[float]:
        return [r[key] for r in results.get(name, []) if r.get(key) is not None]

    def med(name: str, key: str) -> float | None:
        return _median([r[key] for r in results.get(name, []) if r.get(key) is not None])

    single = _median(rates("ceiling_parse")) or 0.0
    per_part = _median(rates("ceiling_parse_per_partition")) or 0.0
    ceiling_name = "ceiling_parse_per_partition" if per_part >= single else "ceiling_parse"
    ceiling = max(single, per_part)
    # like for like: the ceiling timed from its process launch, as the dataflow's ev_per_s is
    ceiling_launch = _median(rates(ceiling_name, "ev_per_s_from_launch")) or 0.0
    df = {n: _median(rates(f"dataflow_{n}p")) or 0.0 for n in procs}
    best = max(df.values()) if df else 0.0
    rss_all = [r["peak_rss_mb"] for n in procs for r in results[f"dataflow_{n}p"]]
    events = data.events

    def per_cpu_s(name: str) -> float | None:
        cpu = med(name, "cpu_s")
        return round(events / cpu) if cpu else None

    def ratio(x: float, base: float) -> float | None:
        return round(x / base, 3) if base else None

    out: dict[str, Any] = {
        "events": events,
        "ev_per_s_1_worker": df.get(1),
        "ev_per_s_2_workers": df.get(2),
        "ceiling_ev_per_s": ceiling,
        "ceiling_ev_per_s_from_launch": ceiling_launch or None,
        "ratio": ratio(best, ceiling_launch),
        "peak_rss_mb": round(max(rss_all), 1) if rss_all else None,
        "command": shlex.join([".venv/bin/python", "-m", "bench.bronze", *sys.argv[1:]]),
        "goal_ratio": GOAL_RATIO,
        "goal_met": bool(ceiling_launch and best / ceiling_launch >= GOAL_RATIO),
        # the timing used before: the dataflow from its launch, the ceiling after its imports
        "ratio_vs_ceiling_after_imports": ratio(best, ceiling),
        "ceiling_variant": ceiling_name,
        "ceiling_single_consumer_ev_per_s": single or None,
        "ceiling_per_partition_consumers_ev_per_s": per_part or None,
        "ceiling_consume_only_ev_per_s": _median(rates("ceiling_consume")),
        "ratio_1_worker": ratio(df.get(1, 0.0), ceiling),
        "ratio_2_workers": ratio(df.get(2, 0.0), ceiling),
        "ratio_vs_single_consumer_ceiling": ratio(best, single),
        # the dataflow timed like the ceiling: from "flow built" (imports done), not process launch
        "ev_per_s_2_workers_from_ready": _median(rates("dataflow_2p", "ev_per_s_from_ready")),
        "ratio_from_ready": ratio(
            max((_median(rates(f"dataflow_{n}p", "ev_per_s_from_ready")) or 0.0 for n in procs), default=0.0),
            ceiling,
        ),
        "peak_rss_mb_1_worker": med("dataflow_1p", "peak_rss_mb"),
        "peak_rss_mb_2_workers": med("dataflow_2p", "peak_rss_mb"),
        "ceiling_peak_rss_mb": med(ceiling_name, "peak_rss_mb"),
        "ratio_of_bests": ratio(
            max((max(rates(f"dataflow_{n}p"), default=0.0) for n in procs), default=0.0),
            max(
                max(rates("ceiling_parse"), default=0.0),
                max(rates("ceiling_parse_per_partition"), default=0.0),
            ),
        ),
        "ev_per_cpu_s": {name: per_cpu_s(name) for name in results},
        "cpu_ratio": ratio(per_cpu_s("dataflow_1p") or 0.0, per_cpu_s(ceiling_name) or 0.0),
        "all_checks_ok": all(_ok(r) for rs in results.values() for r in rs),
        "rest_of_machine_cores_median": _median(
            [r["other_cores"] for rs in results.values() for r in rs if r.get("other_cores") is not None]
        ),
        "medians": {
            name: {
                "ev_per_s": _median(rates(name)),
                "best_ev_per_s": max(rates(name), default=None),
                "seconds": med(name, "seconds"),
                "cpu_s": med(name, "cpu_s"),
                "other_cpu_s": med(name, "other_cpu_s"),
                "other_cores": med(name, "other_cores"),
                "peak_rss_mb": med(name, "peak_rss_mb"),
                **(
                    {
                        "startup_s": med(name, "startup_s"),
                        "first_commit_s": med(name, "first_commit_s"),
                        "ev_per_s_from_ready": _median(rates(name, "ev_per_s_from_ready")),
                    }
                    if name.startswith("dataflow")
                    else {}
                ),
            }
            for name in results
        },
        "breakdown_1_worker": breakdown,
        "runs": results,
        "params": {
            "runs": args.runs,
            "processes": procs,
            "workers_per_process": 1,
            "batch_size": batch_size,
            "batch_timeout_ms": settings.dataflow.batch_timeout_ms,
            "recovery": not args.no_recovery,
            "epoch_s": settings.dataflow.snapshot_interval_s,
            "generator_chunk": args.chunk,
            "nice": os.nice(0),
            "quiet_cores": args.quiet_cores,
            "quiet_wait_s": args.quiet_wait,
        },
        "topic": {
            **data.to_json(),
            "reused": reused,
            "avg_value_bytes": round(data.value_bytes / max(data.messages - data.tombstones, 1)),
        },
        "machine": _machine(settings),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "wall_s": round(time.monotonic() - started, 1),
    }
    if profile_top is not None:
        out["profile_top"] = profile_top
    return out


def _summary(out: dict[str, Any]) -> None:
    def num(x: float | None) -> str:
        return "-" if x is None else f"{x:,.0f}"

    echo(
        f"{out['events']:,} events; ceiling {num(out['ceiling_ev_per_s'])} ev/s ({out['ceiling_variant']}); "
        f"single consumer {num(out['ceiling_single_consumer_ev_per_s'])}, "
        f"consume only {num(out['ceiling_consume_only_ev_per_s'])}"
    )
    echo(
        f"dataflow: 1 worker {num(out['ev_per_s_1_worker'])} ev/s, "
        f"2 workers {num(out['ev_per_s_2_workers'])} ev/s"
    )
    if out.get("ratio") is not None:
        verdict = "meets" if out["goal_met"] else "is BELOW"
        echo(
            f"ratio {out['ratio']:.3f}, both timed from their process launch (ceiling "
            f"{num(out['ceiling_ev_per_s_from_launch'])} ev/s) ({verdict} the {GOAL_RATIO} goal); "
            f"dataflow from launch vs ceiling after its imports {out['ratio_vs_ceiling_after_imports']}; "
            f"peak RSS {out['peak_rss_mb']} MB"
        )
        if out.get("ratio_from_ready") is not None:
            echo(
                f"both timed after their imports (dataflow from flow built): 2 workers "
                f"{num(out['ev_per_s_2_workers_from_ready'])} ev/s, ratio {out['ratio_from_ready']:.3f}"
            )
    noise = out.get("rest_of_machine_cores_median")
    if noise is not None and noise > 0.5:
        echo(
            f"WARNING: the rest of the machine used {noise} cores (median over runs) while this ran; "
            "wall-clock numbers are contaminated, compare ev_per_cpu_s"
        )
    echo(f"wall time {out['wall_s']:.0f} s; checks {'ok' if out['all_checks_ok'] else 'FAILED'}")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    settings = load_settings()
    load_secrets(settings)
    if args.cleanup:
        cleanup(settings, echo)
        return 0
    if args.runs < 1 or args.events < 1:
        print("--runs and --events must be >= 1", file=sys.stderr)
        return 2
    probe_broker(settings.kafka.bootstrap_servers)
    out = run(args, settings)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    _summary(out)
    echo(f"results written to {args.out}")
    return 0 if out["all_checks_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
