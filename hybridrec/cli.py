"""The `hybridrec` command. It only parses arguments and calls one function per verb."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from hybridrec.config import Settings, load_settings
from hybridrec.logs import configure_logging


def _settings(ctx: click.Context) -> Settings:
    return ctx.obj


@click.group()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Config file (default: $HYBRIDREC_CONFIG or configs/default.yaml).")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """hybridrec: hybrid recommender for places and short-form clips."""
    try:
        settings = load_settings(config_path)
    except (FileNotFoundError, ValueError) as err:
        raise click.ClickException(f"invalid configuration: {err}") from err
    configure_logging(settings.log_level)
    ctx.obj = settings


@cli.group()
def infra() -> None:
    """Start, inspect and stop the local Kafka, OpenSearch and Spark/Iceberg set-up."""


def _print_statuses(statuses) -> None:
    for s in statuses:
        state = "healthy" if s.healthy else ("running, unhealthy" if s.running else "stopped")
        click.echo(f"{s.name:<12} port {s.port if s.port else '-':<6} {state:<20} {s.detail}  (log: {s.log})")


@infra.command("up")
@click.pass_context
def infra_up(ctx: click.Context) -> None:
    """Fetch (cached), start and health-check every service; safe to call twice."""
    from hybridrec.infra import manager

    statuses = manager.up(_settings(ctx))
    _print_statuses(statuses)
    if not all(s.healthy for s in statuses):
        sys.exit(1)


@infra.command("status")
@click.pass_context
def infra_status(ctx: click.Context) -> None:
    """Print each service, its port and health."""
    from hybridrec.infra import manager

    statuses = manager.status(_settings(ctx))
    _print_statuses(statuses)
    if not all(s.healthy for s in statuses):
        sys.exit(3)


@infra.command("down")
@click.pass_context
def infra_down(ctx: click.Context) -> None:
    """Stop what `infra up` started (by pid files); leaves data in place."""
    from hybridrec.infra import manager

    _print_statuses(manager.down(_settings(ctx)))


@cli.command("generate")
@click.option("--seed", type=int, default=None, help="Override synthetic.seed.")
@click.option("--events", type=int, default=None, help="Override synthetic.n_events.")
@click.pass_context
def generate(ctx: click.Context, seed: int | None, events: int | None) -> None:
    """Generate the synthetic world (with ground truth) into the lake."""
    from hybridrec.batch.jobs import generate_world_job

    counts = generate_world_job(_settings(ctx), seed=seed, n_events=events)
    click.echo(json.dumps(counts, indent=2))


@cli.command("load-gowalla")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.pass_context
def load_gowalla_cmd(ctx: click.Context, data_dir: Path | None) -> None:
    """Load the Gowalla benchmark split into the lake (gowalla.events_train / events_test)."""
    from hybridrec.batch.jobs import load_gowalla_job

    click.echo(json.dumps(load_gowalla_job(_settings(ctx), data_dir), indent=2))


@cli.command("tables")
@click.option("--sample", type=int, default=3, help="Rows to show per table.")
@click.pass_context
def tables(ctx: click.Context, sample: int) -> None:
    """Row counts, producing run and a sample of rows of every table in the lake."""
    from hybridrec.batch.jobs import describe_lake

    click.echo(describe_lake(_settings(ctx), sample_rows=sample))


@cli.command("quickstart")
@click.pass_context
def quickstart(ctx: click.Context) -> None:
    """The main job: services up, synthetic world, Gowalla, Spark over the lake, and a look at the result."""
    from hybridrec.batch.jobs import quickstart_job

    quickstart_job(_settings(ctx))


@cli.group()
def bench() -> None:
    """Benchmarks: print figures and write benchmarks/results/<name>.json."""


@bench.command("synthetic")
@click.pass_context
def bench_synthetic(ctx: click.Context) -> None:
    """Generator speed on the configured world (events/s, table sizes)."""
    from hybridrec.batch.jobs import synthetic_benchmark

    click.echo(json.dumps(synthetic_benchmark(_settings(ctx)), indent=2))


@cli.command("config")
@click.pass_context
def show_config(ctx: click.Context) -> None:
    """Print the effective configuration and its hash."""
    settings = _settings(ctx)
    click.echo(json.dumps({"config_hash": settings.config_hash(), **settings.model_dump(mode="json")}, indent=2))


def main() -> None:
    from hybridrec.infra.services import ServiceError
    from hybridrec.pipeline import StepFailed

    try:
        cli(prog_name="hybridrec")
    except (ServiceError, StepFailed) as err:
        click.echo(f"hybridrec: {err}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
