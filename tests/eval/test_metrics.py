"""Each vectorised metric against a slow, obvious loop (and utilsforecast where it agrees)."""

import itertools

import numpy as np
import pytest

from leapcast.eval import metrics as M

rng = np.random.default_rng(0)
N, H, S = 5, 7, 9
Y = rng.normal(10, 3, (N, H))
Y[1, 3] = np.nan
F = Y + rng.normal(0, 1, (N, H))
SAMPLES = Y[:, None, :] + rng.normal(0, 2, (N, S, H))
LEVELS = [0.1, 0.5, 0.9]
Q = np.quantile(SAMPLES, LEVELS, axis=1).transpose(1, 2, 0)  # [N, H, Q]
HIST = [rng.normal(10, 3, 30 + i) for i in range(N)]


def cells():
    return [(i, t) for i in range(N) for t in range(H) if not np.isnan(Y[i, t])]


def test_mae_mse_smape():
    c = cells()
    assert M.mae(Y, F) == pytest.approx(sum(abs(Y[i, t] - F[i, t]) for i, t in c) / len(c))
    assert M.mse(Y, F) == pytest.approx(sum((Y[i, t] - F[i, t]) ** 2 for i, t in c) / len(c))
    assert M.smape(Y, F) == pytest.approx(
        sum(200 * abs(Y[i, t] - F[i, t]) / (abs(Y[i, t]) + abs(F[i, t])) for i, t in c) / len(c)
    )


def test_mase_against_a_loop():
    season = 4
    per = []
    for i in range(N):
        scale = np.mean([abs(HIST[i][t] - HIST[i][t - season]) for t in range(season, len(HIST[i]))])
        errs = [abs(Y[i, t] - F[i, t]) for t in range(H) if not np.isnan(Y[i, t])]
        per.append(np.mean(errs) / scale)
    assert M.mase(Y, F, HIST, season) == pytest.approx(np.mean(per))


def test_wql_against_a_loop():
    total = sum(abs(Y[i, t]) for i, t in cells())
    per_level = []
    for q_i, q in enumerate(LEVELS):
        loss = sum(max(q * (Y[i, t] - Q[i, t, q_i]), (q - 1) * (Y[i, t] - Q[i, t, q_i])) for i, t in cells())
        per_level.append(2 * loss / total)
    assert M.wql(Y, Q, LEVELS) == pytest.approx(np.mean(per_level))


def test_crps_against_pairs():
    vals = []
    for i, t in cells():
        x = SAMPLES[i, :, t]
        first = np.mean(np.abs(x - Y[i, t]))
        second = np.mean([abs(a - b) for a, b in itertools.product(x, x)])
        vals.append(first - second / 2)
    assert M.crps_samples(Y, SAMPLES) == pytest.approx(np.mean(vals))


def test_point_mass_crps_is_mae():
    assert M.crps_samples(Y, np.repeat(F[:, None], 4, axis=1)) == pytest.approx(M.mae(Y, F))


def test_geometric_mean_relative():
    assert M.geometric_mean_relative({"a": 1.0, "b": 4.0}, {"a": 2.0, "b": 2.0}) == pytest.approx(1.0)


@pytest.mark.oracle
def test_mae_and_mse_agree_with_utilsforecast():
    pd = pytest.importorskip("pandas")
    losses = pytest.importorskip("utilsforecast.losses")
    y, f = np.nan_to_num(Y, nan=5.0), np.nan_to_num(F, nan=4.0)
    df = pd.DataFrame({"unique_id": np.repeat(np.arange(N), H), "y": y.ravel(), "m": f.ravel()})
    assert losses.mae(df, ["m"])["m"].mean() == pytest.approx(M.mae(y, f))
    assert losses.mse(df, ["m"])["m"].mean() == pytest.approx(M.mse(y, f))


def test_a_nan_forecast_fails_the_metric_and_a_nan_actual_is_left_out():
    """A forecast that failed (NaN where the actual is known) makes every metric NaN, never a perfect score; a
    missing actual only leaves its step out."""
    y = np.array([[1.0, 2.0, np.nan], [3.0, 4.0, 5.0]])
    point = y + 1
    point[0, 2] = 7.0  # beside a missing actual: not scored
    history = [np.arange(10.0), np.arange(10.0)]
    quantiles = np.repeat(point[..., None], 3, axis=-1)
    assert M.mae(y, point) == 1.0 and M.mse(y, point) == 1.0 and M.mase(y, point, history, 1) == 1.0
    failed = point.copy()
    failed[1, 0] = np.nan
    failed_q = quantiles.copy()
    failed_q[1, 0, 0] = np.nan
    for value in (
        M.mae(y, failed),
        M.mse(y, failed),
        M.smape(y, failed),
        M.mase(y, failed, history, 1),
        M.wql(y, failed_q, [0.1, 0.5, 0.9]),
    ):
        assert np.isnan(value)
    assert np.isnan(M.geometric_mean_relative({"a": 1.0, "b": float("nan")}, {"a": 2.0, "b": 1.0}))
    assert M.geometric_mean_relative({"a": 1.0, "b": 4.0}, {"a": 2.0, "b": 2.0}) == 1.0


def test_shapes_that_do_not_match_are_refused_not_broadcast():
    y, p = np.ones((2, 3)), np.zeros((2, 3))
    with pytest.raises(ValueError, match="`point` has shape"):
        M.mae(np.array([1.0, 2.0]), np.array([[1.0, 2.0], [3.0, 4.0]]))
    with pytest.raises(ValueError, match="`insample`"):
        M.mase(y, p, [np.arange(5.0)], 1)  # one history for two series
    with pytest.raises(ValueError, match="`season`"):
        M.mase(y, p, [np.arange(5.0)] * 2, 0)
    with pytest.raises(ValueError, match="`quantiles` has shape"):
        M.wql(y, p[..., None], [0.1, 0.5, 0.9])  # one quantile column for three levels
    with pytest.raises(ValueError, match="`samples`"):
        M.crps_samples(y, np.zeros((2, 4, 5)))


def test_a_data_set_without_a_baseline_fails_the_aggregate():
    assert np.isnan(M.geometric_mean_relative({"a": 2.0, "b": 0.5}, {"a": 1.0}))
    assert np.isnan(M.geometric_mean_relative({"a": 1.0, "b": 1.0}, {"a": 1.0, "b": 0.0}))
