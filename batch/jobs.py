"""Batch jobs of the foundation: the synthetic world, Gowalla, and the quick-start main job."""

from __future__ import annotations

import logging
import os
import resource
import time
from pathlib import Path
from typing import Any

from hybridrec.batch.gowalla import gowalla_tables, load_gowalla
from hybridrec.synthetic import summarize_world
from hybridrec.batch.world import write_world
from hybridrec.benchmarks import write_result
from hybridrec.config import Settings
from hybridrec.contract import ALL_TABLES, EVENTS, INTERACTIONS, TableSpec
from hybridrec.lake import Lake
from hybridrec.pipeline import Step, run_steps
from hybridrec.runinfo import new_run

log = logging.getLogger(__name__)


def generate_world_job(settings: Settings, seed: int | None = None, n_events: int | None = None) -> dict[str, int]:
    overrides = {k: v for k, v in {"seed": seed, "n_events": n_events}.items() if v is not None}
    if overrides:
        settings = settings.model_copy(update={"synthetic": settings.synthetic.model_copy(update=overrides)})
    return write_world(Lake(settings), settings.synthetic, new_run(settings, "generate-world"))


def load_gowalla_job(settings: Settings, data_dir: Path | None = None) -> dict[str, int]:
    folder = Path(data_dir) if data_dir else settings.gowalla.data_dir
    return load_gowalla(Lake(settings), folder, new_run(settings, "load-gowalla"))


def describe_lake(settings: Settings, sample_rows: int = 3, specs: tuple[TableSpec, ...] | None = None) -> str:
    """Counts, producing run and a few rows per table: what a person looks at after a job."""
    lake = Lake(settings)
    lines = [f"{'table':<28} {'rows':>10}  run"]
    samples = []
    for spec in specs or ALL_TABLES + gowalla_tables():
        if not lake.exists(spec):
            lines.append(f"{spec.namespace + '.' + spec.name:<28} {'(missing)':>10}")
            continue
        props = lake.snapshot_properties(spec)
        lines.append(f"{spec.namespace + '.' + spec.name:<28} {int(props.get('total-records', 0)):>10,}  "
                     f"{props.get('hybridrec.run-id', '-')}")
        if sample_rows and props:
            head = lake.table(spec).scan(limit=sample_rows).to_pandas()
            samples.append(f"\n-- {spec.qualified_name} (first {len(head)} rows)\n{head.to_string(max_colwidth=48)}")
    return "\n".join(lines + samples)


def spark_event_summary(settings: Settings) -> list[dict[str, Any]]:
    """Spark reads the events pyiceberg wrote, through the same catalog: events per surface and type."""
    from hybridrec.spark import spark_job

    with spark_job(settings, "hybridrec-lake-check") as spark:
        rows = spark.sql(
            f"SELECT surface, event_type, count(*) AS events, count(DISTINCT user_id) AS users "
            f"FROM {EVENTS.qualified_name} GROUP BY surface, event_type ORDER BY surface, events DESC"
        ).collect()
    return [row.asDict() for row in rows]


def synthetic_benchmark(settings: Settings) -> dict[str, Any]:
    """Generator speed in memory, then generation plus the Iceberg writes; events/s and table sizes."""
    cfg, load_at_start = settings.synthetic, os.getloadavg()
    in_memory = summarize_world(cfg)
    started = time.perf_counter()
    counts = generate_world_job(settings)
    seconds = time.perf_counter() - started
    events = counts[EVENTS.qualified_name]
    metrics = {
        "events": events,
        "seconds": round(seconds, 2),
        "events_per_s": round(events / seconds),
        "generate_only_seconds": round(in_memory.seconds, 2),
        "generate_only_events_per_s": round(in_memory.events / in_memory.seconds),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "rows": counts,
    }
    dataset = (f"synthetic seed={cfg.seed} users={cfg.n_users} places={cfg.n_places} clips={cfg.n_clips} "
               f"events={cfg.n_events} days={cfg.n_days} taste_weight={cfg.taste_weight}")
    path = write_result("synthetic_world", "synthetic_world", dataset, "hybridrec bench synthetic", metrics, settings,
                        load_at_start)
    log.info("synthetic world: %d events generated in %.1fs, generated and written to Iceberg in %.1fs "
             "(%.0f events/s) -> %s", events, in_memory.seconds, seconds, events / seconds, path)
    return metrics


def quickstart_job(settings: Settings) -> dict[str, Any]:
    """The README's main job. Later stages append their steps here until it ends with a feed."""
    from hybridrec.infra import manager

    def infra_up(_: dict) -> dict:
        statuses = manager.up(settings)
        broken = [s for s in statuses if not s.healthy]
        if broken:
            raise RuntimeError("; ".join(f"{s.name}: {s.detail} (log: {s.log})" for s in broken))
        return {"services": [f"{s.name}:{s.port}" for s in statuses]}

    def world(_: dict) -> dict:
        return {"world": generate_world_job(settings)}

    def gowalla(_: dict) -> dict:
        return {"gowalla": load_gowalla_job(settings)}

    def spark_check(_: dict) -> dict:
        return {"spark_summary": spark_event_summary(settings)}

    def stream_demo(_: dict) -> dict:
        from hybridrec.streaming.demo import run_demo

        return {"stream_demo": run_demo(settings, seconds=20)}

    def extract(_: dict) -> dict:
        from hybridrec.batch.extract import extract_job

        return {"extract": extract_job(settings)}

    def distill(_: dict) -> dict:
        from hybridrec.batch.distill import distill_job

        result = distill_job(settings)
        return {"distill": {"run_id": result["run"].run_id, "metrics": result["metrics"]}}

    def llm(_: dict) -> dict:
        from hybridrec.batch.llm_sample import llm_sample

        return {"llm_sample": llm_sample(settings)}

    def retrain(_: dict) -> dict:
        from hybridrec.batch.retrain import retrain_job

        result = retrain_job(settings)
        return {"retrain": {"run_id": result["run"].run_id, "metrics": result["headline"], "indices": result["indices"]}}

    steps = [
        Step("infra-up", infra_up, "Kafka, OpenSearch (k-NN) and the Spark/Iceberg jars, on loopback"),
        Step("synthetic-world", world, "users, places, clips, reviews, queries, events + ground truth into Iceberg"),
        Step("load-gowalla", gowalla, "Gowalla LightGCN split into gowalla.events_train/test"),
        Step("spark-lake-check", spark_check, "Spark reads the Iceberg tables pyiceberg wrote"),
        Step("extract", extract, "keywords, tags, query intent and content embeddings from reviews, clips, queries"),
        Step("distill", distill, "teacher labels queries; query student + topic classifier for the cold start"),
        Step("llm-sample", llm, "the local language model on a few real reviews and search-log queries, beside the "
                                "offline reader and the student"),
        Step("retrain", retrain, "nightly pipeline: CF, candidates, LightGBM ranker, evaluation, publish"),
        Step("stream-demo", stream_demo, "replay recorded activity through Kafka; watch one user's context change"),
    ]
    context = run_steps("quickstart", steps, {})
    print("\n" + describe_lake(settings, sample_rows=2))
    print("\nSpark over raw.events (surface, type, events, users):")
    for row in context["spark_summary"]:
        print(f"  {row['surface']:<6} {row['event_type']:<7} {row['events']:>9,} {row['users']:>7,}")
    retrained = context["retrain"]
    print(f"\nretrain {retrained['run_id']}: NDCG@{settings.retrain.eval_k} on held-out users")
    for name, metrics in retrained["metrics"].items():
        print(f"  {name:<20} ndcg {metrics[f'ndcg@{settings.retrain.eval_k}']:.4f}  "
              f"recall {metrics[f'recall@{settings.retrain.eval_k}']:.4f}")
    distilled = context["distill"]["metrics"]
    print(f"\ndistill {context['distill']['run_id']}: gold set v{distilled['gold_version']} "
          f"tag F1 teacher {distilled['teacher']['tag_f1']:.3f} / student {distilled['student']['tag_f1']:.3f}, "
          f"intent accuracy {distilled['teacher']['intent_accuracy']:.3f} / {distilled['student']['intent_accuracy']:.3f}, "
          f"agreement on held-out texts {distilled['holdout_agreement']:.3f}")
    reviews = distilled["review_student"]
    print(f"review student: {reviews['train_texts']} real reviews learned, aspect tags as the teacher on "
          f"{reviews['agreement_holdout_tags']:.1%} of {reviews['holdout_texts']} held out, keyword F1 vs teacher "
          f"{reviews['keyword_f1_vs_teacher']:.3f}, {reviews['review_student_reviews_per_s']:.0f} reviews/s "
          f"(offline reader {reviews['offline_reviews_per_s']:.0f}/s on the same texts)")
    from hybridrec.batch.experiment_report import experiment_report, format_report

    print("\n" + format_report(experiment_report(settings)))
    print("(the synthetic world's engagement does not depend on the arm, so no lift is expected here: this shows "
          "the configured split and its sample-ratio check; live arms are in /metrics as hybridrec_feeds_total)")
    print("\nstep timings (s):", context["timings"])
    show_sample_feeds(settings)
    return context


def sample_user(settings: Settings) -> str:
    """An active user of both surfaces, so the printed feeds show personalisation on each."""
    interactions = Lake(settings).scan(INTERACTIONS, columns=("user_id", "surface", "confidence")).to_pandas()
    positive = interactions[interactions["confidence"] > 0]
    per_surface = positive.groupby(["user_id", "surface"]).size().unstack(fill_value=0)
    return str(per_surface.min(axis=1).idxmax())


def show_sample_feeds(settings: Settings, limit: int = 10) -> None:
    """Print a real feed for a sample user on both surfaces, through the serving pipeline."""
    from hybridrec.serving.commands import print_feed

    user_id = sample_user(settings)
    for surface in ("place", "clip"):
        print()
        print_feed(settings, user_id, surface, limit, print)
