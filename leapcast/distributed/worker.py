"""One worker of the actor pool: a model loaded once per process, forecasting batches of whole series.

Ray Data calls a ``BatchForecaster`` with one block of long-frame rows at a time; the pipeline
(``leapcast.distributed.pipeline``) hash-partitions the rows by series id first, so a block holds every row of
each series in it. A batch is forecast with ``Forecaster.forecast``, exactly as on one machine.

A series that fails validation (a ValueError or TypeError from the library's checks, which name the series) does
not stop the others: the batch is split in halves until the failing series stand alone, and those go to the
errors folder as (id, message) rows, one Parquet file per batch, named after the batch so a retried batch
rewrites its own file rather than adding a second one.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import numpy as np
import pandas as pd

from leapcast.checks import cli_spelling
from leapcast.engine.sampling import stream_key
from leapcast.forecaster import Forecaster

ERROR_COLUMN = "error"
BATCH = "__leapcast_batch"  # the column the pipeline partitions rows by: the planned batch of each row's series


class BatchForecaster:
    """Called by Ray Data's actor pool: a block of rows [rows, (id_col, time_col, target_col)] -> their forecast
    frame, as ``Forecaster.forecast`` returns it.

    model, load: ``Forecaster.from_pretrained(model, **load)``, once per process. forecast: the keywords of
    ``Forecaster.forecast`` (h, id_col, seed, ...). threads: torch CPU threads in this process (the actor's CPUs, so
    that actors on one machine do not oversubscribe its cores). errors: a folder for the (id, message) rows of
    series that fail validation; None raises the first failure instead. cli: messages name options as the
    command line spells them (``--freq``).
    """

    def __init__(
        self, model: str | None, load: dict, forecast: dict, threads: int, errors: str | None, cli: bool
    ) -> None:
        import torch

        torch.set_num_threads(threads)
        with contextlib.suppress(RuntimeError):  # set once per process; a reused process has it already
            torch.set_num_interop_threads(1)
        self.cli = cli
        with self._spelling():
            self.fc = Forecaster.from_pretrained(model, **load)
        self.kwargs = forecast
        self.id_col = forecast.get("id_col", "unique_id")
        self.errors = errors

    def __call__(self, block: pd.DataFrame) -> Iterator[pd.DataFrame]:
        """block [rows, (id_col, time_col, target_col, BATCH)]: one or more planned batches of whole series."""
        if len(block) == 0:
            return
        frames: list[pd.DataFrame] = []
        failed: list[tuple[object, str]] = []
        with self._spelling():
            for _, batch in block.groupby(BATCH, sort=True) if BATCH in block else [(0, block)]:
                rows = batch.groupby(self.id_col, sort=True).indices  # id -> its row positions, ids as forecast sorts
                self._forecast(batch, list(rows.items()), frames, failed)
        if failed:
            self._write_errors(failed, block)
        if frames:
            yield pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]

    def _forecast(
        self,
        batch: pd.DataFrame,
        series: list[tuple[object, np.ndarray]],
        frames: list[pd.DataFrame],
        failed: list[tuple[object, str]],
    ) -> None:
        """Forecast ``series`` (id, row positions in ``batch``) together; on a validation failure, each half on its
        own, split at a whole number of engine batches while there are more, so halves keep their engine batches."""
        positions = np.concatenate([rows for _, rows in series])
        try:
            frames.append(self.fc.forecast(batch.iloc[np.sort(positions)], **self.kwargs))
            return
        except (ValueError, TypeError) as err:
            if self.errors is None:
                raise
            if len(series) == 1:
                failed.append((series[0][0], str(err)))
                return
        engine = self.kwargs.get("batch_size", 32)
        half = max(engine, len(series) // 2 // engine * engine) if len(series) > engine else len(series) // 2
        self._forecast(batch, series[:half], frames, failed)
        self._forecast(batch, series[half:], frames, failed)

    def _write_errors(self, failed: list[tuple[object, str]], block: pd.DataFrame) -> None:
        """[failed, (id_col, error)] -> <errors>/batch-<the block's first batch>.parquet (a retry rewrites it)."""
        import pyarrow as pa
        import pyarrow.parquet as pq
        from pyarrow import fs

        assert self.errors is not None
        frame = pd.DataFrame({self.id_col: [i for i, _ in failed], ERROR_COLUMN: [m for _, m in failed]})
        if "://" in self.errors:
            filesystem, root = fs.FileSystem.from_uri(self.errors)
        else:
            filesystem, root = fs.LocalFileSystem(), os.path.abspath(self.errors)
        filesystem.create_dir(root, recursive=True)
        key = f"{int(block[BATCH].min()):06d}" if BATCH in block else f"{stream_key(block[self.id_col].iloc[0]):016x}"
        pq.write_table(
            pa.Table.from_pandas(frame, preserve_index=False), f"{root}/batch-{key}.parquet", filesystem=filesystem
        )

    def _spelling(self):
        return cli_spelling() if self.cli else contextlib.nullcontext()
