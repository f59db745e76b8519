"""A client of ``leapcast serve``: ``Client(url).forecast(df, h, ...)`` returns the frame ``Forecaster.forecast``
returns for the same arguments (the frame travels both ways as an Arrow IPC stream, so its types are kept).

>>> from leapcast.client import Client
>>> with Client("http://127.0.0.1:8000") as client:
...     fc = client.forecast(df, h=12, level=[80], seed=0)   # unique_id, ds, <model>, <model>-lo-80, <model>-hi-80
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import pandas as pd

ARROW_STREAM = "application/vnd.apache.arrow.stream"


class ServerError(RuntimeError):
    """An answer other than 200: ``status`` and the server's ``detail`` (what was wrong, naming the value)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


class Client:
    """``url``: the server's base URL; ``timeout``: seconds for one request; ``retries``: how many times a 429
    (queue full) or 503 (not ready yet) is retried, after the server's Retry-After; ``http``: an
    ``httpx.Client`` to send with instead (e.g. fastapi's TestClient of an app in this process)."""

    def __init__(self, url: str = "http://127.0.0.1:8000", timeout: float = 300.0, retries: int = 3, http=None) -> None:
        import httpx

        self.retries = retries
        self._own = http is None  # a client given to us is the caller's to close
        self._http = httpx.Client(base_url=url, timeout=timeout) if http is None else http

    def forecast(
        self,
        df,
        h: int,
        *,
        quantiles: Sequence[float] | None = None,
        level: Sequence[float] | None = None,
        point: str = "median",
        id_col: str = "unique_id",
        time_col: str = "ds",
        target_col: str = "y",
        freq: str | int | None = None,
        season_length: int | None = None,
        num_samples: int | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
    ) -> pd.DataFrame:
        """Forecast every series of a long frame on the server; arguments and result as ``Forecaster.forecast``."""
        quantiles = None if quantiles is None else list(quantiles)  # once: an iterator is read only once
        level = None if level is None else list(level)
        for name, values in (("quantiles", quantiles), ("level", level)):
            if values is not None and len(values) == 0:  # an empty list would not reach the server at all
                raise ValueError(f"`{name}` is empty; pass at least one value, or leave it out")
        params = {
            "h": h,
            "quantiles": quantiles,
            "level": level,
            "point": point,
            "id_col": id_col,
            "time_col": time_col,
            "target_col": target_col,
            "freq": freq,
            "season_length": season_length,
            "num_samples": num_samples,
            "temperature": temperature,
            "top_k": top_k,
            "top_p": top_p,
            "seed": seed,
        }
        params = {k: v for k, v in params.items() if v is not None}
        columns = [id_col, time_col, target_col]
        # only the columns a forecast reads (others may not even convert to Arrow); a missing one the server names
        body = _arrow_bytes(df[columns] if all(c in df.columns for c in columns) else df)
        response = self._post("/v1/forecast/frame", body, params)
        import pyarrow as pa

        return pa.ipc.open_stream(response.content).read_all().to_pandas()

    def ready(self) -> bool:
        """Whether the server has its model loaded and warmed up."""
        import httpx

        try:
            return self._http.get("/readyz").status_code == 200
        except httpx.TransportError:
            return False

    def _post(self, path: str, body: bytes, params: dict):
        headers = {"content-type": ARROW_STREAM, "accept": ARROW_STREAM}
        for attempt in range(self.retries + 1):
            response = self._http.post(path, content=body, params=params, headers=headers)
            if response.status_code == 200:
                return response
            if response.status_code in (429, 503) and attempt < self.retries:
                time.sleep(float(response.headers.get("retry-after", 1)))
                continue
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise ServerError(response.status_code, str(detail))
        raise AssertionError("unreachable")  # the loop returns or raises

    def close(self) -> None:
        if self._own:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _arrow_bytes(df) -> bytes:
    """A pandas (or polars) frame as an Arrow IPC stream."""
    import pyarrow as pa

    if isinstance(df, pd.DataFrame):
        try:
            table = pa.Table.from_pandas(df, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
            raise TypeError(f"`df` could not be sent as an Arrow table ({err}); give each column one type") from None
    elif type(df).__module__.split(".")[0] == "polars":
        table = df.to_arrow()
    else:
        raise TypeError(f"`df` must be a pandas (or polars) DataFrame, got {type(df).__name__}")
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()
