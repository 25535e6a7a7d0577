"""Sparse autoencoders: exact sparsity rules, recovery of a planted dictionary, SAELens-layout
round trips, the health numbers by hand, AUCs against scikit-learn, splicing and steering."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from sklearn.metrics import roc_auc_score

from core.analysis import Batch
from core.dictionary import store
from core.dictionary.feature_page import (
    SAEOptions,
    SteerOptions,
    decoder_map,
    feature_maps,
    nearest_channels,
    steer,
)
from core.dictionary.features import FeatureStatsOptions, cofiring, feature_stats
from core.dictionary.ground_truth import auc_matrix, compare
from core.dictionary.sae import SAE, SAEParams, batch_topk_mask, topk_mask
from core.dictionary.tokens import from_tokens, splice, to_tokens, token_site
from core.dictionary.train import TrainOptions, train_sae
from core.hooks import count_hooks
from core.models.train import TrainConfig, train


def test_topk_keeps_exactly_k_per_row() -> None:
    pre = torch.randn(50, 40, generator=torch.Generator().manual_seed(0)) + 3  # all positive
    codes = topk_mask(pre, 7)
    assert ((codes > 0).sum(1) == 7).all()
    kept = torch.where(codes > 0, pre, -torch.inf)
    dropped = torch.where(codes == 0, pre, -torch.inf)
    assert (kept.masked_fill(codes == 0, torch.inf).min(1).values >= dropped.max(1).values).all()


def test_batch_topk_keeps_k_times_batch_in_total() -> None:
    pre = torch.randn(32, 64, generator=torch.Generator().manual_seed(1)) + 4
    codes, smallest = batch_topk_mask(pre, 5)
    assert int((codes > 0).sum()) == 5 * 32
    assert (codes > 0).sum(1).float().std() > 0  # not k per row: the batch decides
    assert float(smallest) == float(codes[codes > 0].min())
    assert float(pre[codes == 0].max()) <= float(smallest)


def _planted(n: int = 6000, d: int = 16, f: int = 32, seed: int = 0):
    """Tokens that are sparse non-negative combinations of ``f`` random unit directions."""
    rng = np.random.default_rng(seed)
    truth = rng.normal(size=(f, d))
    truth /= np.linalg.norm(truth, axis=1, keepdims=True)
    codes = np.zeros((n, f))
    for row in codes:
        active = rng.choice(f, 3, replace=False)
        row[active] = rng.uniform(1, 3, 3)
    return (codes @ truth).astype(np.float32), truth


class Identity(torch.nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.layer = torch.nn.Linear(d, d)
        with torch.no_grad():
            self.layer.weight.copy_(torch.eye(d))
            self.layer.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x.flatten(1))


def test_a_planted_sparse_dictionary_is_recovered() -> None:
    tokens, truth = _planted(d=32, f=48)
    model = Identity(32).eval()
    batch = Batch(tokens[:, None, None, :], np.zeros(len(tokens), np.int64))  # [N, 1, 1, 32]
    options = TrainOptions(layer="layer", k=3, expansion=2, steps=500, batch_tokens=1024, lr=0.004)
    params = train_sae(model, batch, options)
    assert params.W_dec.shape == (64, 32) and params.W_enc.shape == (32, 64)
    learned = params.W_dec / np.linalg.norm(params.W_dec, axis=1, keepdims=True)
    best = np.abs(truth @ learned.T).max(1)  # each true direction's closest feature
    assert np.median(best) > 0.99 and np.mean(best > 0.99) >= 0.9, np.sort(best)


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory: pytest.TempPathFactory):
    """A runs root holding one tiny cnn trained for an epoch on 240 shapes of 16x16."""
    root = tmp_path_factory.mktemp("sae-runs")
    config = TrainConfig(model="cnn", dataset="shapes", n_samples=240, epochs=1, image_size=16)
    train(config, name="tiny-sae", runs_root=root)
    return root


@pytest.fixture
def runs_root(tiny_root, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("LAYERSCOPE_RUNS", str(tiny_root))
    return "tiny-sae"


def _loaded(run: str):
    from core.models.runs import load_run

    loaded = load_run(run)
    data = loaded.dataset
    return loaded, Batch(data.images, data.labels, data.factors, loaded.info.dataset.class_names)


def test_save_load_round_trip_list_and_delete(runs_root: str) -> None:
    loaded, batch = _loaded(runs_root)
    params = train_sae(loaded.model, batch, TrainOptions(steps=20))
    sae_id = store.save_sae(runs_root, params, {"summary": {"fve": 0.5}})
    again = store.load_sae(store.sae_folder(runs_root, sae_id))
    for name in ("W_enc", "b_enc", "W_dec", "b_dec", "threshold", "history"):
        np.testing.assert_allclose(
            getattr(again, name), getattr(params, name), rtol=1e-5, atol=1e-6
        )
    assert (again.architecture, again.k, again.layer) == ("batchtopk", 16, params.layer)
    x = torch.randn(10, params.d_in)
    np.testing.assert_allclose(
        SAE.from_params(again)(x).detach(), SAE.from_params(params)(x).detach(), atol=1e-5
    )
    cfg = json.loads((store.sae_folder(runs_root, sae_id) / "cfg.json").read_text())
    assert cfg["architecture"] == "jumprelu" and cfg["d_sae"] == 8 * params.d_in
    listed = store.list_saes(runs_root)
    assert [s.id for s in listed] == [sae_id] and listed[0].summary == {"fve": 0.5}
    assert not listed[0].stale and listed[0].deletable
    second = store.save_sae(runs_root, params)
    assert second != sae_id and len(store.list_saes(runs_root)) == 2
    store.delete_sae(runs_root, sae_id)
    store.delete_sae(runs_root, second)
    assert store.list_saes(runs_root) == []


def test_a_cfg_written_by_saelens_loads(tmp_path) -> None:
    """A top-k SAE as SAELens 5 writes it (no input normalisation, b_dec applied to input)."""
    rng = np.random.default_rng(0)
    d_in, d_sae = 6, 12
    weights = {
        "W_enc": rng.normal(size=(d_in, d_sae)),
        "b_enc": rng.normal(size=d_sae),
        "W_dec": rng.normal(size=(d_sae, d_in)),
        "b_dec": rng.normal(size=d_in),
    }
    save_file({k: torch.tensor(v, dtype=torch.float32) for k, v in weights.items()},
              str(tmp_path / "sae_weights.safetensors"))  # fmt: skip
    cfg = {
        "architecture": "topk", "d_in": d_in, "d_sae": d_sae, "dtype": "float32",
        "device": "cpu", "model_name": "gpt2", "hook_name": "blocks.3.hook_resid_post",
        "hook_layer": 3, "hook_head_index": None, "activation_fn_str": "topk",
        "activation_fn_kwargs": {"k": 3}, "apply_b_dec_to_input": True,
        "finetuning_scaling_factor": False, "context_size": 128, "normalize_activations": "none",
    }  # fmt: skip
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    params = store.load_sae(tmp_path)
    assert (params.architecture, params.k, params.layer) == ("topk", 3, "blocks.3.hook_resid_post")
    x = rng.normal(size=(5, d_in)).astype(np.float32)
    pre = (x - weights["b_dec"]) @ weights["W_enc"] + weights["b_enc"]  # SAELens's encode
    codes = np.where(pre >= np.sort(pre, 1)[:, -3:-2], np.maximum(pre, 0), 0)
    expected = codes @ weights["W_dec"] + weights["b_dec"]
    got = SAE.from_params(params)(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    cfg.update(apply_b_dec_to_input=False, architecture="standard")
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    relu = SAE.from_params(store.load_sae(tmp_path))
    codes = np.maximum(x @ weights["W_enc"] + weights["b_enc"], 0)
    np.testing.assert_allclose(
        relu(torch.from_numpy(x)).detach().numpy(), codes @ weights["W_dec"] + weights["b_dec"],
        rtol=1e-4, atol=1e-4,
    )  # fmt: skip


def test_tokens_round_trip_and_splice_leaves_no_hook() -> None:
    from core.models.zoo import build_model

    for arch, shape, layer, kind in [
        ("cnn", (3, 16, 16), "block2", "spatial"),
        ("vit", (3, 16, 16), "blocks.0", "tokens"),
        ("mlp", (1, 8, 8), "fc1", "flat"),
    ]:
        model = build_model(arch, shape, 3).eval()
        site = token_site(model, shape, layer)
        assert site.kind == kind
        x = torch.rand(4, *shape)
        from core.activations import layer_output

        out = layer_output(model, x, layer).detach()
        tokens = to_tokens(out, site)
        assert tokens.shape == (4 * site.per_image, site.d_in)
        assert torch.equal(from_tokens(tokens, out, site), out)
        if kind == "tokens":
            assert site.extra == (0,)  # CLS is marked, not mixed in
        plain = model(x)
        with torch.no_grad(), splice(model, site, lambda t: t):
            same = model(x)
        torch.testing.assert_close(same, plain)
        with torch.no_grad(), splice(model, site, torch.zeros_like):
            zeroed = model(x)
        assert not torch.allclose(zeroed, plain)
        assert count_hooks(model) == 0


def test_health_numbers_by_hand_and_steering(runs_root: str) -> None:
    loaded, batch = _loaded(runs_root)
    params = train_sae(loaded.model, batch, TrainOptions(steps=40))
    sae_id = store.save_sae(runs_root, params)
    small = Batch(batch.images[:40], batch.labels[:40], {}, batch.class_names)
    stats = feature_stats(
        loaded.model, small, FeatureStatsOptions(runs_root, sae_id, batch_size=16)
    )
    site = token_site(loaded.model, batch.images.shape[1:], params.layer)
    from core.activations import layer_output

    with torch.no_grad():
        x = to_tokens(layer_output(loaded.model, torch.from_numpy(small.images), site.layer), site)
    sae = SAE.from_params(params)
    with torch.no_grad():
        codes = sae.encode(x)
        x_hat = sae.decode(codes)
    fve = 1 - ((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()
    assert stats.fve == pytest.approx(float(fve), abs=1e-4)
    assert stats.l0 == pytest.approx(float((codes > 0).sum(1).float().mean()), abs=1e-6)
    np.testing.assert_array_equal(stats.fire_counts, (codes > 0).sum(0).numpy())
    assert stats.dead_fraction == pytest.approx(float(((codes > 0).sum(0) == 0).float().mean()))
    assert stats.histogram.sum() == int((codes > 0).sum())
    np.testing.assert_array_equal(np.diag(stats.cofire), stats.fire_counts)
    with torch.no_grad():
        plain = loaded.model(torch.from_numpy(small.images)).argmax(1).numpy()
        with splice(loaded.model, site, sae):
            spliced = loaded.model(torch.from_numpy(small.images)).argmax(1).numpy()
    assert list(stats.correct) == [(plain == small.labels).sum(), (spliced == small.labels).sum()]
    others, jaccard = cofiring(stats, int(stats.fire_counts.argmax()))
    assert len(others) == 8 and (np.diff(jaccard) <= 0).all()
    maps = feature_maps(loaded.model, small, SAEOptions(runs_root, sae_id)).maps
    assert maps.shape == (40, params.d_sae, *site.map_shape)
    np.testing.assert_allclose(maps.max((2, 3)), stats.stats.maxima, rtol=1e-5, atol=1e-6)
    feature = int(stats.fire_counts.argmax())
    same = steer(loaded.model, small, SteerOptions(runs_root, sae_id, feature, 1.0))
    np.testing.assert_allclose(same.after, same.before, atol=1e-6)
    ablated = steer(loaded.model, small, SteerOptions(runs_root, sae_id, feature, 0.0))
    assert np.abs(ablated.after - ablated.before).max() > 0
    assert count_hooks(loaded.model) == 0
    channels, cosines = nearest_channels(params, feature, 3)
    row = params.W_dec[feature] / np.linalg.norm(params.W_dec[feature])
    assert channels[0] == np.abs(row).argmax() and cosines[0] == pytest.approx(row[channels[0]])
    assert decoder_map(params).shape == (params.d_sae, 2)


def test_aucs_match_sklearn_and_the_comparison_counts() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 200)
    colour = rng.integers(0, 4, 200)
    features = rng.normal(size=(200, 5))
    features[:, 0] = (colour == 2) + 0.01 * rng.normal(size=200)  # a perfect colour detector
    features[:, 1] = np.round(features[:, 1])  # ties
    channels = rng.normal(size=(200, 3))
    positive = np.stack([colour == 2, labels == 1], axis=1)
    auc = auc_matrix(features, positive)
    for f in range(5):
        for v in range(2):
            assert auc[f, v] == pytest.approx(roc_auc_score(positive[:, v], features[:, f]))
    truth = compare(features, channels, labels, {"colour": colour}, ("a", "b", "c"))
    assert truth.factors == ("class",) * 3 + ("colour",) * 4
    summary = truth.summary()
    assert summary["feature_detectors"] == 1 and summary["channel_detectors"] == 0
    assert summary["values"] == 7
    value, best = truth.most_associated()
    assert truth.factors[value[0]] == "colour" and truth.codes[value[0]] == 2 and best[0] > 0.99
    never = auc_matrix(features, np.zeros((200, 1), bool))
    assert np.isnan(never).all()


def test_sae_params_shapes() -> None:
    p = SAEParams("topk", 2, np.zeros((3, 6)), np.zeros(6), np.zeros((6, 3)), np.zeros(3),
                  np.zeros(6), 1.0, "x", np.zeros((0, 3)))  # fmt: skip
    assert (p.d_in, p.d_sae) == (3, 6)


def test_feature_vis_along_a_one_hot_direction_is_the_channel() -> None:
    from core.feature_maps.visualisation import FeatureVisOptions, feature_vis
    from core.models.zoo import build_model

    torch.manual_seed(0)
    model = build_model("cnn", (3, 16, 16), 3).eval()
    batch = Batch(np.random.default_rng(0).random((4, 3, 16, 16), dtype=np.float32), np.zeros(4))
    channel = feature_vis(model, batch, FeatureVisOptions(layer="block2", channel=3, steps=4))
    one_hot = tuple(float(c == 3) for c in range(32))
    along = feature_vis(model, batch, FeatureVisOptions(layer="block2", steps=4, direction=one_hot))
    np.testing.assert_allclose(along.objective, channel.objective, rtol=1e-5)
    with pytest.raises(ValueError, match="32 channels"):
        feature_vis(model, batch, FeatureVisOptions(layer="block2", steps=1, direction=(1.0,)))
