"""Linear CKA: 1 with itself, invariant to orthogonal maps and isotropic scaling."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import ortho_group

from core.projections.similarity import centred_gram, cka_matrix, linear_cka


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(40, 12)).astype(np.float32)


def test_cka_of_a_representation_with_itself_is_one(x: np.ndarray) -> None:
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-6)


def test_cka_is_invariant_to_orthogonal_maps_and_scaling(x: np.ndarray) -> None:
    y = np.random.default_rng(1).normal(size=(40, 7)).astype(np.float32) + x[:, :7]
    q = ortho_group.rvs(12, random_state=2).astype(np.float32)
    base = linear_cka(x, y)
    assert linear_cka(x @ q, y) == pytest.approx(base, abs=1e-5)
    assert linear_cka(7.5 * x, y) == pytest.approx(base, abs=1e-5)
    assert 0.0 < base < 1.0


def test_cka_matches_the_feature_space_formula(x: np.ndarray) -> None:
    y = np.tanh(x[:, :5] * 2)
    xc, yc = x - x.mean(0), y - y.mean(0)
    expected = np.linalg.norm(yc.T @ xc) ** 2 / (
        np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc)
    )
    assert linear_cka(x, y) == pytest.approx(expected, rel=1e-4)


def test_cka_matrix_is_symmetric_with_unit_diagonal(x: np.ndarray) -> None:
    grams = [centred_gram(x), centred_gram(x[:, :4]), centred_gram(x**2)]
    m = cka_matrix(grams)
    np.testing.assert_allclose(m, m.T)
    np.testing.assert_allclose(np.diag(m), 1.0, atol=1e-6)
    assert cka_matrix(grams, grams[:2]).shape == (3, 2)


def test_different_sample_counts_raise(x: np.ndarray) -> None:
    with pytest.raises(ValueError, match="same samples"):
        linear_cka(x, x[:10])
