"""Honest pictures: colours that mean what they say, colour bars, clickable tiles, readable axes."""

from __future__ import annotations

import numpy as np
import pytest

from core.attention.layout import TokenLayout
from core.data.datasets import SHAPE_FACTORS, named_colours
from core.feature_maps import maps as fmaps
from core.feature_maps import weights as fweights
from ui.figures import attention as attention_figs
from ui.figures import feature_maps as figs
from ui.figures import projections as projection_figs
from ui.figures.common import DIVERGING, SEQUENTIAL, nearest_upscale

COLOUR = next(f for f in SHAPE_FACTORS if f.name == "colour")


def _rgb(css: str) -> tuple[int, ...]:
    """``"rgb(230, 38, 38)"`` -> ``(230, 38, 38)``."""
    return tuple(int(v) for v in css.removeprefix("rgb(").removesuffix(")").split(","))


def _marker_colours(fig) -> dict[str, str]:
    return {trace.name: trace.marker.color for trace in fig.data if trace.name}


# --- projections: categories that are colours are drawn in their colour -------------------------


def test_shapes_colour_factor_knows_the_colour_of_each_category() -> None:
    assert len(COLOUR.colours) == len(COLOUR.categories)
    red, yellow = (_rgb(COLOUR.colours[COLOUR.categories.index(n)]) for n in ("red", "yellow"))
    assert red[0] > 200 and red[1] < 80 and red[2] < 80
    assert yellow[0] > 200 and yellow[1] > 200 and yellow[2] < 80
    assert all(not f.colours for f in SHAPE_FACTORS if f.name != "colour")
    assert named_colours(("small", "large")) == ()


@pytest.mark.parametrize("colours", [None, COLOUR.colours])
def test_point_map_and_depth_strip_draw_red_in_red(colours) -> None:
    n = 80
    codes = np.arange(n) % len(COLOUR.categories)
    coords = np.random.default_rng(0).normal(size=(n, 2))
    point = projection_figs.point_map(
        coords, codes, list(COLOUR.categories), ["x"] * n, np.zeros(n, bool), colours=colours
    )
    strip = projection_figs.depth_strip(
        np.stack([coords, coords]), ["a", "b"], codes, list(COLOUR.categories), colours=colours
    )
    for fig in (point, strip):
        drawn = _marker_colours(fig)
        r, g, b = _rgb(drawn["red"])
        assert r > 200 and g < 80 and b < 80
        assert drawn["blue"] == COLOUR.colours[COLOUR.categories.index("blue")]


def test_other_categories_get_the_qualitative_palette() -> None:
    codes = np.array([0, 1, 2, 0])
    fig = projection_figs.point_map(
        np.zeros((4, 2)), codes, ["small", "medium", "large"], ["x"] * 4, np.zeros(4, bool)
    )
    assert list(_marker_colours(fig).values()) == projection_figs.PALETTE[:3]


# --- feature maps: one stated scheme, a colour bar, a key ---------------------------------------


def _grid(activation: np.ndarray) -> fmaps.ChannelGrid:
    return fmaps.channel_grid(activation, "layer", "channel", 0, 64)


def test_colour_scheme_and_key() -> None:
    assert fmaps.colour_scheme(np.array([0.0, 2.0, np.nan])) == fmaps.NONNEGATIVE
    assert fmaps.colour_scheme(np.array([-0.1, 2.0])) == fmaps.SIGNED
    assert fmaps.colour_scheme(np.full(3, np.nan)) == fmaps.NONNEGATIVE
    key = fmaps.colour_key(fmaps.SIGNED, per_map=True)
    assert "red positive" in key and "each map scaled to its own range" in key
    assert "one scale" in fmaps.colour_key(fmaps.NONNEGATIVE, per_map=False)
    mixed = fmaps.colour_key([fmaps.SIGNED, fmaps.NONNEGATIVE], per_map=True)
    assert "red" in mixed and "viridis" in mixed
    assert "\n" not in mixed


@pytest.mark.parametrize("shared", [True, False])
def test_signed_grid_is_diverging_around_zero_with_a_colour_bar(shared: bool) -> None:
    activation = np.random.default_rng(0).normal(size=(12, 5, 5)).astype(np.float32)
    grid = _grid(activation)
    heat = figs.channel_grid_figure(grid, 3, shared).data[0]
    assert heat.colorscale == figs.go.Heatmap(colorscale=DIVERGING).colorscale
    assert heat.zmid == 0 and heat.showscale
    if shared:
        assert "one scale" in figs.grid_key(grid, True)
    else:
        assert (heat.zmin, heat.zmax) == (-1, 1)
        assert list(heat.colorbar.ticktext) == ["−peak", "0", "+peak"]
        assert "each map scaled to its own range" in figs.grid_key(grid, False)


def test_non_negative_grid_is_viridis_from_zero() -> None:
    activation = np.abs(np.random.default_rng(0).normal(size=(12, 5, 5))).astype(np.float32)
    grid = _grid(activation)
    for shared in (True, False):
        heat = figs.channel_grid_figure(grid, None, shared).data[0]
        assert heat.colorscale == figs.go.Heatmap(colorscale=SEQUENTIAL).colorscale
        assert heat.zmin == 0 and heat.zmid is None and heat.showscale
    assert "viridis" in figs.grid_key(grid, False)


def test_one_negative_value_anywhere_makes_every_page_signed() -> None:
    activation = np.ones((130, 2, 2), np.float32)
    activation[129, 0, 0] = -1
    assert fmaps.channel_grid(activation, "l", "channel", 0, 64).scheme == fmaps.SIGNED


def test_overlay_strip_and_weights_have_colour_bars_and_keys() -> None:
    image = np.random.default_rng(0).random((3, 8, 8)).astype(np.float32)
    heat = np.linspace(-1, 1, 64, dtype=np.float32).reshape(8, 8)
    overlay = figs.channel_overlay_figure(image, heat, "c")
    assert overlay.data[1].showscale and overlay.data[1].zmid == 0
    assert "red" in figs.overlay_key(heat)
    relu = figs.channel_overlay_figure(image, np.abs(heat))
    assert relu.data[1].zmin == 0 and "viridis" in figs.overlay_key(np.abs(heat))

    maps = {"conv": heat[None], "relu": np.abs(heat)[None]}
    sample = fmaps.SampleMaps(image, maps, np.zeros(2))
    strip = fmaps.depth_strip(sample, ["conv", "relu"], "max")
    fig = figs.depth_strip_figure(strip)
    assert [t.coloraxis for t in fig.data] == ["coloraxis", "coloraxis2"]
    assert fig.layout.coloraxis.showscale and fig.layout.coloraxis2.showscale
    assert fig.layout.coloraxis.cmin == -1 and fig.layout.coloraxis2.cmin == 0
    assert "each map scaled to its own range" in figs.depth_strip_key(strip)

    weights = np.random.default_rng(1).normal(size=(4, 1, 3, 3)).astype(np.float32)
    grey = figs.weights_figure(fweights.WeightImages("w", weights, fweights._as_images(weights)))
    assert grey.data[0].showscale and grey.data[0].zmid == 0
    rgb_weights = np.repeat(weights, 3, axis=1)
    rgb = fweights.WeightImages("w", rgb_weights, fweights._as_images(rgb_weights))
    assert any(
        getattr(t, "marker", None) and t.marker.showscale for t in figs.weights_figure(rgb).data
    )
    assert "grey 0" in figs.weights_key(rgb)


# --- clickable channel tiles --------------------------------------------------------------------


def test_clicked_channel_reads_the_tile_point() -> None:
    activation = np.random.default_rng(0).random((20, 4, 4)).astype(np.float32)
    grid = fmaps.channel_grid(activation, "l", "mean", 0, 64)
    fig = figs.channel_grid_figure(grid, None, False)
    tiles = fig.data[1]
    assert tiles.type == "scatter" and len(tiles.x) == 20
    assert fig.layout.clickmode == "event+select"
    custom = list(tiles.customdata[5])
    event = {"selection": {"points": [{"curve_number": 1, "point_index": 5, "customdata": custom}]}}
    assert figs.clicked_channel(event) == int(grid.channels[5])
    # what Streamlit hands back when customdata went to the browser as a typed array
    typed = {"0": float(grid.channels[7]), "1": 0.2, "2": 2.3}
    assert figs.clicked_channel({"selection": {"points": [{"customdata": typed}]}}) == int(
        grid.channels[7]
    )
    assert figs.clicked_channel({"selection": {"points": [{"customdata": 7}]}}) == 7
    assert figs.clicked_channel({"selection": {"points": []}}) is None
    assert figs.clicked_channel(None) is None


def test_page_of_channel() -> None:
    by_index = np.arange(256)
    assert fmaps.page_of_channel(254, by_index, 64) == 3
    assert fmaps.page_of_channel(0, by_index, 64) == 0
    assert fmaps.page_of_channel(64, by_index, 64) == 1
    activation = np.zeros((256, 1, 1), np.float32)
    activation[254] = 10  # strongest: first in mean/max order
    order = fmaps.channel_order(activation, "mean")
    assert fmaps.page_of_channel(254, order, 64) == 0
    with pytest.raises(ValueError, match="no channel 300"):
        fmaps.page_of_channel(300, by_index, 64)


# --- attention ----------------------------------------------------------------------------------


def test_attention_matrix_has_sparse_token_ticks() -> None:
    layout = TokenLayout(n_tokens=65, patch_start=1, grid=(8, 8), patch=(4, 4), image=(32, 32))
    labels = [layout.token_label(t) for t in range(65)]
    probs = np.full((65, 65), 1 / 65)
    fig = attention_figs.token_matrix_figure(probs, labels, 3, 1)
    for axis in (fig.layout.xaxis, fig.layout.yaxis):
        assert axis.showticklabels is not False
        assert axis.ticktext[0] == "CLS" and "r1 c0" in axis.ticktext
        assert 5 <= len(axis.tickvals) <= 13
        assert labels[axis.tickvals[1]].startswith("patch (row 1, col 0")
    ticks, texts = attention_figs.token_ticks([f"t{i}" for i in range(200)])
    assert len(ticks) <= 13 and texts[0] == "t0"


def test_head_statistic_reference_is_a_legend_entry_not_text_over_points() -> None:
    values = np.random.default_rng(0).random((5, 3, 2))
    fig = attention_figs.head_statistic_figure(values, "t", "px", (0.5, "uniform over the image"))
    assert not fig.layout.annotations
    assert any(t.name and t.name.startswith("uniform over the image") for t in fig.data)


# --- report card --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("layers", "targets"),
    [
        (["(input)", "relu1", "relu2", "head"], ["label"]),
        (["(input)", *[f"blocks.{i} (CLS)" for i in range(4)], "head"], ["label", "colour"]),
    ],
)
def test_report_heatmaps_grow_with_rows_and_keep_labels_horizontal(layers, targets) -> None:
    acc = np.full((len(layers), len(targets)), 0.5)
    fig = projection_figs.factor_heatmap(layers, targets, acc, np.full(len(targets), 0.1))
    assert list(fig.data[0].y) == layers and fig.data[0].z.shape == (len(layers), len(targets))
    assert fig.layout.height >= 26 * len(layers) + 60
    assert fig.layout.yaxis.automargin and fig.layout.yaxis.tickangle is None
    assert len(fig.data[0].colorbar.tickvals) == 3
    cka = projection_figs.cka_heatmap(np.eye(len(layers)), layers, layers, "a", "b")
    assert cka.layout.xaxis.automargin and len(cka.data[0].colorbar.tickvals) == 3
    assert cka.layout.height > 14 * len(layers) + 60


# --- crisp small images -------------------------------------------------------------------------


def test_nearest_upscale_keeps_pixels_square_and_sharp() -> None:
    image = np.random.default_rng(0).random((1, 8, 8)).astype(np.float32)
    big = nearest_upscale(image, 96)
    assert big.shape == (96, 96, 3) and big.dtype == np.uint8
    block = big[:12, :12]
    assert (block == block[0, 0]).all()
    assert (big[::12, ::12, 0] == np.round(image[0] * 255)).all()
    large = np.zeros((3, 200, 100), np.float32)
    assert nearest_upscale(large, 96).shape == (200, 100, 3)
    assert nearest_upscale(np.zeros((3, 4, 8), np.float32), 96).shape == (48, 96, 3)
