"""The JSON bodies of ``POST /v1/forecast``: what a request holds and what its answer holds.

Strict: numbers must be JSON numbers (no "1.5" strings, no booleans), unknown fields are refused, so a typo
("num_sample") is a 422 naming it rather than a setting silently ignored. ``null`` in ``values`` is a missing
value (NaN), as in the library.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class SeriesIn(BaseModel):
    """One series: its history, oldest first."""

    model_config = ConfigDict(extra="forbid", strict=True)

    id: str | int = Field(description="Unique within the request; a series' random stream follows its id.")
    values: list[float | None] = Field(min_length=1, description="History, oldest first; null = missing.")
    timestamps: list[str] | list[int] | None = Field(
        None,
        description="One per value (ISO dates or integer steps); the answer then carries the future timestamps.",
    )
    freq: str | int | None = Field(
        None, description="Pandas frequency alias (e.g. 'MS', 'D', 'h') or integer step; inferred when omitted."
    )


class ForecastRequest(BaseModel):
    """``POST /v1/forecast``: forecast ``h`` steps of every series."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "series": [{"id": "a", "values": [1.0, 3.0, 2.0, 4.0, 3.0, 5.0]}],
                    "h": 3,
                    "quantiles": [0.1, 0.9],
                    "seed": 0,
                }
            ]
        },
    )

    series: list[SeriesIn] = Field(min_length=1)
    h: int = Field(description="Horizon in steps.")
    quantiles: list[float] | None = Field(
        None, description="Quantile levels in (0, 1); default [0.1, 0.5, 0.9] (unless `levels`)."
    )
    levels: list[float] | None = Field(None, description="Prediction-interval levels in (0, 100), e.g. [80, 95].")
    num_samples: int | None = Field(None, description="Sample paths per series (default: the checkpoint's).")
    temperature: float | None = None
    top_k: int | None = Field(None, description="1 = greedy (mean decoding).")
    top_p: float | None = None
    seed: int | None = Field(
        None, description="Fixes the paths: the library's forecast with this seed. Unset: a fresh seed, returned."
    )
    season_length: int | None = Field(
        None,
        description="Season in steps for the seasonal adjustment; default: the frequency's usual season. Refused "
        "where the served model runs without the adjustment (house-patch-target).",
    )
    freq: str | int | None = Field(None, description="Frequency of series that name none.")
    return_samples: bool = Field(False, description="Also return every sample path ([num_samples][h] per series).")


class SeriesOut(BaseModel):
    id: str | int
    timestamps: list[str] | list[int] | None = Field(description="The h future timestamps, when the input had some.")
    mean: list[float]
    median: list[float]
    quantiles: dict[str, list[float]] | None = Field(description="Level (as given) -> [h].")
    intervals: dict[str, list[float]] | None = Field(description="'lo-80', 'hi-80', ... -> [h], when `levels`.")
    samples: list[list[float]] | None = Field(description="[num_samples][h], when `return_samples`.")


class ForecastResponse(BaseModel):
    model: str
    h: int
    num_samples: int
    seed: int = Field(description="The seed the paths were drawn with: send it back to get the same forecast.")
    series: list[SeriesOut]


class ErrorResponse(BaseModel):
    detail: str
