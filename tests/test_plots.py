"""The long-tail plot's helpers (fastcurate.plots): thinned rank curves and plain decade labels."""

import numpy as np
import pytest

from fastcurate.plots import _decade_label, log_log_decades, plot_long_tail, rank_curve


def test_rank_curve_short_curve_is_every_rank():
    c = np.array([9.0, 4.0, 4.0, 1.0])
    r, v = rank_curve(c)
    assert r.tolist() == [1, 2, 3, 4] and v.tolist() == c.tolist()


@pytest.mark.parametrize("n", [2049, 10_000, 86_654])
def test_rank_curve_thins_log_spaced_with_both_ends(n):
    c = np.sort(np.random.default_rng(n).pareto(1.0, n))[::-1]
    r, v = rank_curve(c, points=512)
    assert len(r) <= 512
    assert r[0] == 1 and r[-1] == n  # the curve starts and ends where the full one does
    assert np.all(np.diff(r) > 0)
    assert np.array_equal(v, c[r - 1])  # points of the curve itself, not averages
    # log-spaced: consecutive kept ranks are neighbours or within a few percent of each other
    assert np.all((np.diff(r) == 1) | (r[1:] / r[:-1] < 1.05))


@pytest.mark.parametrize("v,label", [(1, "1"), (10, "10"), (100, "100"), (1e3, "1k"), (1e4, "10k"), (1e5, "100k"),
                                     (1e6, "1M"), (1e7, "10M"), (1e9, "1G"), (1e12, "1T"), (0.1, "0.1"),
                                     (20, ""), (0, ""), (-10, ""), (float("nan"), "")])
def test_decade_label(v, label):
    assert _decade_label(v) == label


def test_long_tail_axes_use_plain_decade_labels(tmp_path):
    from matplotlib.figure import Figure

    fig = Figure()
    ax = fig.subplots()
    c = np.sort(np.random.default_rng(0).pareto(1.0, 5000) * 10 + 1)[::-1]
    ax.plot(*rank_curve(c))
    log_log_decades(ax)
    fig.canvas.draw()  # type: ignore[attr-defined]
    labels = {t.get_text() for t in ax.get_xticklabels() if t.get_text()}
    assert {"1", "10", "100", "1k"} <= labels
    assert not any("$" in s for s in labels)  # no mathtext
    assert len(ax.xaxis.get_minor_locator().tick_values(1, 1e4)) == 0


def test_plot_long_tail_less_than_a_decade_still_labelled(tmp_path):
    # counts within one decade: our decade ticks would leave the axis bare, matplotlib's stay
    out = plot_long_tail(np.array([5, 3, 3, 2, 0]), np.array([3, 3, 3, 2, 0]), 3.0, tmp_path / "lt.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_long_tail_is_byte_reproducible(tmp_path):
    c = np.sort(np.random.default_rng(1).pareto(1.0, 86_654) * 10).astype(np.int64)[::-1]
    a = plot_long_tail(c, np.minimum(c, 50), 50.0, tmp_path / "a.png").read_bytes()
    b = plot_long_tail(c, np.minimum(c, 50), 50.0, tmp_path / "b.png").read_bytes()
    assert a == b
