"""`goldstream demo ...` commands: seed the four demo source systems and put load on them."""

from __future__ import annotations

from typing import Annotated

import psycopg
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cdc.demo import LoadProgress, LoadSummary, OpMix, SeedSummary, load, seed, status
from cdc.demo.systems import SYSTEMS
from cdc.pg import admin_dsn
from core.settings import Settings, load_settings

app = typer.Typer(no_args_is_help=True)
console = Console()
ALL_SYSTEMS = ",".join(SYSTEMS)

SystemsOpt = Annotated[
    str,
    typer.Option("--systems", help=f"Comma-separated subset of: {', '.join(SYSTEMS)}.", show_default=True),
]


def _systems(text: str) -> tuple[str, ...]:
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    unknown = [n for n in names if n not in SYSTEMS]
    if unknown or not names:
        raise typer.BadParameter(
            f"unknown system(s) {unknown}; choose from {', '.join(SYSTEMS)}", param_hint="--systems"
        )
    return names


def _unreachable(settings: Settings, exc: psycopg.OperationalError) -> typer.Exit:
    where = admin_dsn(settings, "<db>")
    console.print(f"[red]cannot reach the demo databases ({where}): {str(exc).strip()}[/red]")
    console.print("Is the local stack running? Try `goldstream stack up`.")
    return typer.Exit(code=1)


@app.command("seed")
def seed_cmd(
    people: Annotated[
        int, typer.Option(min=1, help="Real-world people to create (plus about 1/5 as many companies).")
    ] = 500,
    seed_: Annotated[
        int, typer.Option("--seed", help="Random seed: the same seed gives the same data.")
    ] = 42,
    systems: SystemsOpt = ALL_SYSTEMS,
    reset: Annotated[
        bool, typer.Option(help="Truncate the systems' tables first (Debezium sees truncates).")
    ] = False,
) -> None:
    """Fill the demo databases with the same people across systems, with realistic noise.

    Already-seeded systems are skipped (nothing is duplicated) unless --reset is given.
    """
    settings = load_settings()
    try:
        summary = seed(settings, people, seed_, systems=_systems(systems), reset=reset)
    except psycopg.OperationalError as exc:
        raise _unreachable(settings, exc) from exc
    _print_seed(summary)


def _print_seed(summary: SeedSummary) -> None:
    table = Table(
        title=f"demo seed: {summary.people} people, {summary.orgs} organisations, seed {summary.seed}"
    )
    table.add_column("system")
    table.add_column("status")
    table.add_column("rows per table")
    for r in summary.systems:
        colour = "green" if r.status == "seeded" else "yellow"
        rows = ", ".join(f"{t} {n}" for t, n in r.rows.items())
        table.add_row(r.system, f"[{colour}]{r.status}[/{colour}] {r.message}".strip(), rows)
    console.print(table)
    spread = ", ".join(f"{k} system{'s' if k != 1 else ''}: {v}" for k, v in summary.spread.items())
    console.print(f"people by systems known to: {spread} ({summary.multi_system_share:.0%} in 2+)")
    console.print(f"truth: {summary.truth_rows} rows in {summary.truth_path}  ({summary.elapsed_s:.2f} s)")


@app.command("load")
def load_cmd(
    rate: Annotated[
        float, typer.Option(help="Row changes per second across all systems; 0 = as fast as possible.")
    ] = 200,
    duration: Annotated[float, typer.Option(min=0.1, help="Seconds to run.")] = 60,
    seed_: Annotated[int | None, typer.Option("--seed", help="Random seed for the op sequence.")] = None,
    systems: SystemsOpt = ALL_SYSTEMS,
    mix: Annotated[str, typer.Option(help="insert/update/delete weights.")] = "60/35/5",
    truth: Annotated[
        bool, typer.Option(help="Keep <state>/demo/truth.parquet up to date at the end.")
    ] = True,
) -> None:
    """Put a steady stream of inserts, updates and deletes on the demo systems."""
    settings = load_settings()
    try:
        op_mix = OpMix.parse(mix)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--mix") from exc
    names = _systems(systems)
    target = int(rate * duration) if rate > 0 else None
    columns = [
        TextColumn("[bold]load[/bold] {task.description}"),
        BarColumn(),
        MofNCompleteColumn() if target else TextColumn("{task.completed:.0f} events"),
        TextColumn("{task.fields[rate]:>7.0f}/s"),
        TextColumn("[red]{task.fields[errors]} errors[/red]"),
        TimeElapsedColumn(),
    ]
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(",".join(names), total=target, rate=0.0, errors=0)

        def report(p: LoadProgress) -> None:
            progress.update(task, completed=p.done, rate=p.rate, errors=p.errors)

        try:
            summary = load(
                settings,
                rate,
                duration,
                seed=seed_,
                systems=names,
                mix=op_mix,
                on_progress=report,
                update_truth=truth,
            )
        except psycopg.OperationalError as exc:
            raise _unreachable(settings, exc) from exc
    _print_load(summary)


def _print_load(summary: LoadSummary) -> None:
    table = Table(title="demo load: events (row-level statements) per system and op")
    table.add_column("system")
    for op in ("insert", "update", "delete"):
        table.add_column(op, justify="right")
    table.add_column("total", justify="right")
    for system in sorted({s for s, _ in summary.by_system_op}):
        counts = [summary.by_system_op.get((system, op), 0) for op in ("insert", "update", "delete")]
        table.add_row(system, *(str(c) for c in counts), str(sum(counts)))
    console.print(table)
    target = f" of {summary.target}" if summary.target is not None else ""
    console.print(f"{summary.total}{target} events in {summary.elapsed_s:.1f} s = {summary.rate:.0f}/s")
    if summary.errors:
        console.print(f"[red]{summary.errors} events failed[/red]; first: {summary.first_error}")
    if summary.truth_path:
        console.print(f"truth: {summary.truth_rows} rows in {summary.truth_path}")


@app.command("status")
def status_cmd(systems: SystemsOpt = ALL_SYSTEMS) -> None:
    """Row counts per table and the seed parameters of each demo database."""
    settings = load_settings()
    try:
        states = status(settings, systems=_systems(systems))
    except psycopg.OperationalError as exc:
        raise _unreachable(settings, exc) from exc
    table = Table(title="demo source systems")
    table.add_column("system")
    table.add_column("seeded with")
    table.add_column("rows per table")
    for s in states:
        seeded = f"people={s.marker.get('people')} seed={s.marker.get('seed')}" if s.marker else "-"
        table.add_row(s.system, seeded, ", ".join(f"{t} {n}" for t, n in s.rows.items()))
    console.print(table)


def _layers_table(df: object) -> Table:
    import polars as pl

    assert isinstance(df, pl.DataFrame)
    table = Table("layer", "table", "rows", "detail")
    for row in df.iter_rows(named=True):
        table.add_row(row["layer"], row["table"], str(row["rows"]), row["detail"])
    return table


def _summary_table(df: object) -> Table:
    import polars as pl

    assert isinstance(df, pl.DataFrame)
    table = Table("bronze table", "rows", "r", "c", "u", "d", "t", "last source commit (UTC)")
    for row in df.iter_rows(named=True):
        ts = row["last_source_ts"]
        table.add_row(
            row["table"],
            *(str(row[k]) for k in ("rows", "r", "c", "u", "d", "t")),
            str(ts)[:19] if ts else "-",
        )
    return table


@app.command("run")
def run_cmd(
    people: Annotated[int, typer.Option(min=1, help="People to seed if the systems are empty.")] = 500,
    rate: Annotated[float, typer.Option(help="Load: row changes per second across the systems.")] = 100,
    duration: Annotated[float, typer.Option(help="Load: seconds of changes after seeding (0: none).")] = 30,
    keep_running: Annotated[
        bool, typer.Option(help="Keep the dataflow running (live summary) until Ctrl-C.")
    ] = True,
) -> None:
    """The main job: stack up, seed, apply connectors, run ingest + propagation, show every layer."""
    import time

    from rich.console import Group
    from rich.live import Live

    from cdc.connectors import load_connectors
    from cdc.stack import up
    from core.errors import TerminalError
    from flows.cli.common import friendly_errors, settings
    from flows.cli.connectors import apply_connectors
    from flows.demo_job import BackgroundFlow, bronze_summary, example_golden_id, layers_summary

    def view(s: Settings) -> tuple[Group, int]:
        bronze, layers = bronze_summary(s), layers_summary(s)
        total = (int(bronze["rows"].sum()) if bronze.height else 0) + (
            int(layers["rows"].sum()) if layers.height else 0
        )
        return Group(_summary_table(bronze), _layers_table(layers)), total

    @friendly_errors
    def body() -> None:
        s = settings()
        console.rule("1/5 local stack")
        up(s, echo=lambda line: console.print(f"  {line}"))
        s = settings()  # the first `up` may have just created the password
        console.rule("2/5 demo source systems")
        _print_seed(seed(s, people=people, seed=42))
        console.rule("3/5 Debezium connectors")
        apply_connectors(s, load_connectors(s.config_dir / "connectors"), wait=True, log=console)
        console.rule("4/5 dataflows: ingest (bronze, silver, resolution, gold) and propagation (CRM, ERP)")
        flow = BackgroundFlow.start(s, "ingest")
        console.print(
            f"  ingest started (pid {flow.proc.pid}); log {flow.log}; "
            f"metrics http://127.0.0.1:{s.dataflow.metrics_port}/metrics"
        )
        sync_port = s.dataflow.metrics_port + 10
        sync = BackgroundFlow.start(s, "propagate", f"--metrics-port={sync_port}")
        console.print(
            f"  propagation started (pid {sync.proc.pid}); log {sync.log}; "
            f"metrics http://127.0.0.1:{sync_port}/metrics"
        )
        try:
            if duration > 0:
                console.rule(f"5/5 load: {rate:g} changes/s for {duration:g}s")
                _print_load(load(s, rate=rate, duration=duration, on_progress=None))
            console.rule("Delta tables (refreshing)")
            stable_since, last_total = time.monotonic(), -1
            first, _ = view(s)
            with Live(first, console=console, refresh_per_second=1) as live:
                while True:
                    for f in (flow, sync):
                        if not f.alive():
                            raise TerminalError(f"a dataflow stopped; {f.log} ends with:\n{f.tail()}")
                    shown, total = view(s)
                    live.update(shown)
                    if total != last_total:
                        stable_since, last_total = time.monotonic(), total
                    if not keep_running and time.monotonic() - stable_since > 8:
                        break
                    time.sleep(2)
        except KeyboardInterrupt:
            pass
        finally:
            sync.stop()
            flow.stop()
        root = s.delta_root
        example = example_golden_id(s)
        console.print(
            "\nQuery the tables with any Delta reader, e.g. polars:\n"
            f"  .venv/bin/python -c \"import polars as pl; print(pl.read_delta('{root}/gold/golden_customer')"
            ".filter(pl.col('members').list.len() > 2).head())\"\n"
            f"Silver: {root}/silver/<entity>; gold: {root}/gold/golden_customer, _history, crosswalk, "
            "links, lineage; golden changes on Kafka topic golden.customer; every push to the CRM/ERP "
            f"in {root}/sync_log.\n"
            + (
                f"Why a golden record looks the way it does: .venv/bin/goldstream explain {example}\n"
                if example
                else ""
            )
            + "The dataflows resume where they stopped: `goldstream run ingest`, `goldstream run propagate`.",
            markup=False,
        )

    body()
