"""The lake: Apache Iceberg tables behind one small interface.

pyiceberg serves the Python side (generator, streaming sink, notebooks) and Spark reads and writes
the same tables through the same catalog (see :mod:`hybridrec.spark`). Every write is one Iceberg
commit stamped with the run id and config hash, so a crash mid-write leaves nothing visible and a
re-run of the same step replaces instead of duplicating.
"""

from __future__ import annotations

import logging
import sqlite3
import warnings
from collections.abc import Iterable, Iterator
from contextlib import closing
from pathlib import Path
from urllib.parse import urlparse

import pyarrow as pa
from pyiceberg.catalog import Catalog, load_catalog
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.expressions import AlwaysTrue, BooleanExpression
from pyiceberg.table import Table

from hybridrec.config import Settings
from hybridrec.contract import NAMESPACES, TableSpec
from hybridrec.runinfo import RunContext

log = logging.getLogger(__name__)


def catalog_unreachable(error: BaseException) -> bool:
    """True if ``error`` says the catalog's server refused or dropped the connection (restarting, shutting
    down, out of connections): a long-running writer waits that out. SQLite's errors (a local file: a lock,
    a missing table) and refused commits are not that."""
    from sqlalchemy.exc import DBAPIError, OperationalError

    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, OperationalError) and not isinstance(error.orig, sqlite3.Error)


def pyiceberg_catalog_properties(settings: Settings) -> dict[str, str]:
    """Catalog properties in pyiceberg's terms; the Spark twin is ``spark.catalog_conf``."""
    props = {"type": settings.lake.kind, "uri": settings.catalog_uri, "warehouse": settings.warehouse_uri}
    props.update(settings.lake.properties)
    return props


def _ensure_local_dirs(settings: Settings) -> None:
    if settings.catalog_uri.startswith("sqlite:///"):
        database = Path(settings.catalog_uri.removeprefix("sqlite:///"))
        database.parent.mkdir(parents=True, exist_ok=True)
        # WAL: Spark's JDBC connection may sit in an open read transaction, which in SQLite's
        # default journal mode would lock pyiceberg's commits out ("database is locked").
        with closing(sqlite3.connect(database)) as connection:
            connection.execute("PRAGMA journal_mode=WAL")
    warehouse = urlparse(settings.warehouse_uri)
    if warehouse.scheme == "file":
        Path(warehouse.path).mkdir(parents=True, exist_ok=True)


class Lake:
    """Tables of the data contract in one Iceberg catalog."""

    def __init__(self, settings: Settings):
        _ensure_local_dirs(settings)
        self.settings = settings
        self.catalog: Catalog = load_catalog(settings.lake.catalog_name, **pyiceberg_catalog_properties(settings))

    def ensure_namespaces(self, namespaces: Iterable[str] = NAMESPACES) -> None:
        """Create the contract's namespaces (raw, truth, derived, ops), reserving derived/ops for later stages."""
        for namespace in namespaces:
            self.catalog.create_namespace_if_not_exists(namespace)

    def exists(self, spec: TableSpec) -> bool:
        return self.catalog.table_exists(spec.identifier)

    def table(self, spec: TableSpec) -> Table:
        """The table of ``spec``, created with the contract's schema and partitioning if missing."""
        try:
            return self.catalog.load_table(spec.identifier)
        except NoSuchTableError:
            self.ensure_namespaces([spec.namespace])
            log.info("creating table %s.%s", *spec.identifier)
            return self.catalog.create_table_if_not_exists(
                spec.identifier,
                schema=spec.iceberg_schema,
                partition_spec=spec.partition_spec,
                properties={"format-version": "2", "write.parquet.compression-codec": "zstd"},
            )

    def replace(self, spec: TableSpec, batches: Iterable[pa.Table], run: RunContext) -> int:
        """Replace the table's contents with ``batches`` in one atomic commit; returns rows written."""
        return self._commit(spec, batches, run, overwrite=True)

    def append(self, spec: TableSpec, batches: Iterable[pa.Table], run: RunContext,
               extra_properties: dict[str, str] | None = None) -> int:
        """Append ``batches`` in one atomic commit; returns rows written."""
        return self._commit(spec, batches, run, overwrite=False, extra_properties=extra_properties)

    def _commit(self, spec: TableSpec, batches: Iterable[pa.Table], run: RunContext, overwrite: bool,
                extra_properties: dict[str, str] | None = None) -> int:
        table = self.table(spec)
        properties = {**run.stamp(), **(extra_properties or {})}
        rows = 0
        with warnings.catch_warnings(), table.transaction() as tx:
            # Overwriting an empty table is normal on a first run, not worth pyiceberg's warning.
            warnings.filterwarnings("ignore", message="Delete operation did not match any records")
            first = True
            for batch in batches:
                batch = _conform(spec, batch)
                if first and overwrite:
                    tx.overwrite(batch, snapshot_properties=properties)
                else:
                    tx.append(batch, snapshot_properties=properties)
                first = False
                rows += batch.num_rows
            if first and overwrite:
                tx.delete(AlwaysTrue(), snapshot_properties=properties)
        log.info("%s %s.%s: %d rows (run %s)", "replaced" if overwrite else "appended", *spec.identifier, rows, run.run_id)
        return rows

    def scan(self, spec: TableSpec, row_filter: BooleanExpression | str = AlwaysTrue(),
             columns: tuple[str, ...] = ("*",)) -> pa.Table:
        return self.table(spec).scan(row_filter=row_filter, selected_fields=columns).to_arrow()

    def scan_batches(self, spec: TableSpec, row_filter: BooleanExpression | str = AlwaysTrue(),
                     columns: tuple[str, ...] = ("*",)) -> Iterator[pa.RecordBatch]:
        """Stream a scan in record batches, for tables that need not fit in memory."""
        yield from self.table(spec).scan(row_filter=row_filter, selected_fields=columns).to_arrow_batch_reader()

    def count(self, spec: TableSpec) -> int:
        snapshot = self.table(spec).current_snapshot()
        if snapshot is None or snapshot.summary is None:
            return 0
        return int(snapshot.summary.additional_properties.get("total-records", 0))

    def snapshot_properties(self, spec: TableSpec) -> dict[str, str]:
        """Summary of the current snapshot (run id, config hash, and e.g. consumed offsets)."""
        snapshot = self.table(spec).current_snapshot()
        return dict(snapshot.summary.additional_properties) if snapshot and snapshot.summary else {}


def _conform(spec: TableSpec, batch: pa.Table) -> pa.Table:
    """Cast a batch to the contract's schema; a column mismatch is a contract violation."""
    if batch.schema.names != spec.column_names:
        raise ValueError(f"{spec.name}: columns {batch.schema.names} do not match the contract {spec.column_names}")
    return batch.cast(spec.arrow_schema)
