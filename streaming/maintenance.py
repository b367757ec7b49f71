"""Lake maintenance for the streamed tables: compaction, manifest rewrite, snapshot expiry, orphan files.

The sink commits a small file per table and day every few seconds; the nightly batch wants few large
files and short metadata. pyiceberg 0.12 can expire snapshots but cannot compact, so this runs
Iceberg's own Spark procedures against the same catalog. They commit with Iceberg's optimistic
concurrency, so the sink keeps running meanwhile (a sink commit that loses a race simply retries).

One rule keeps exactly-once intact: expiry must never remove the newest snapshot that carries the
sink's Kafka offsets, since compaction snapshots do not carry them and the sink walks back to it.
Expiry therefore always retains every snapshot from the current one back to that one.

Expiry removes a snapshot when it is older than ``now - snapshot_max_age_h`` (``now``: taken once per
run, when its Spark session is up) and not among the ``retain_last`` newest ancestors of the current one;
the report gives the exact cutoff (``expired_older_than_ms``), to the millisecond like the snapshots'
own timestamps.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from pyiceberg.table import Table

from hybridrec.config import Settings
from hybridrec.contract import EVENTS, SEARCH_QUERIES, TableSpec
from hybridrec.lake import Lake
from hybridrec.streaming.sink import offsets_lineage

log = logging.getLogger(__name__)

STREAMED_TABLES = (EVENTS, SEARCH_QUERIES)


def snapshots_to_offsets(table: Table) -> int:
    """How many snapshots, counting back from the current one, reach the newest that carries offsets
    (0 if none does)."""
    for depth, (_, offsets) in enumerate(offsets_lineage(table), start=1):
        if offsets is not None:
            return depth
    return 0


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _to_millis(moment: datetime) -> datetime:
    """``moment`` in UTC, cut to the millisecond (the precision of Iceberg's snapshot timestamps)."""
    moment = moment.astimezone(timezone.utc)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _timestamp(moment: datetime) -> str:
    """A Spark SQL literal for ``moment`` (the session time zone is UTC), to the millisecond: cutting it
    to whole seconds would move a cutoff up to a second earlier than configured."""
    return f"TIMESTAMP '{_to_millis(moment):%Y-%m-%d %H:%M:%S.%f}'"


def maintain_table(spark, lake: Lake, spec: TableSpec, settings: Settings, now: datetime) -> dict[str, Any]:
    s = settings.streaming
    catalog, name = settings.lake.catalog_name, spec.qualified_name

    def call(procedure: str, arguments: str) -> dict[str, Any]:
        started = time.perf_counter()
        row = spark.sql(f"CALL {catalog}.system.{procedure}(table => '{name}', {arguments})").collect()
        result = row[0].asDict() if row else {}
        log.info("%s %s in %.1fs: %s", procedure, name, time.perf_counter() - started, result)
        return result

    files_before = len(lake.table(spec).inspect.files())
    report: dict[str, Any] = {"data_files_before": files_before}
    report["compaction"] = call("rewrite_data_files", (
        f"options => map('min-input-files', '{s.compaction_min_input_files}', "
        f"'target-file-size-bytes', '{s.compaction_target_file_mb * 1024 * 1024}')"))
    report["manifests"] = call("rewrite_manifests", "use_caching => false")
    retained = max(s.snapshots_retained, snapshots_to_offsets(lake.table(spec)))
    expire_before = _to_millis(now - timedelta(hours=s.snapshot_max_age_h))
    report["expiry"] = call("expire_snapshots",
                            f"older_than => {_timestamp(expire_before)}, retain_last => {retained}")
    orphans = spark.sql(f"CALL {catalog}.system.remove_orphan_files(table => '{name}', older_than => "
                        f"{_timestamp(now - timedelta(hours=s.orphan_file_age_h))})").collect()
    report["orphan_files_removed"] = len(orphans)
    report["data_files_after"] = len(lake.table(spec).inspect.files())
    report["snapshots_retained_at_least"] = retained
    report["expired_older_than_ms"] = (expire_before - _EPOCH) // timedelta(milliseconds=1)
    return report


def run_maintenance(settings: Settings, specs: tuple[TableSpec, ...] = STREAMED_TABLES) -> dict[str, dict[str, Any]]:
    """The `hybridrec stream maintain` command (hourly or nightly, next to the running sink)."""
    from hybridrec.spark import spark_session

    lake = Lake(settings)
    present = [spec for spec in specs if lake.exists(spec)]
    if not present:
        log.info("no streamed tables yet; nothing to maintain")
        return {}
    spark = spark_session(settings, app_name="hybridrec-lake-maintenance")
    now = datetime.now(timezone.utc)
    try:
        return {spec.qualified_name: maintain_table(spark, lake, spec, settings, now) for spec in present}
    finally:
        spark.stop()
