"""Tests of the visual-concept counting (SPEC section 3)."""

import math

import pytest
import torch

from kdconcepts.quantify import background_baseline, concept_counts, downsample_mask


def test_counts_follow_the_threshold_rule():
    entropy = torch.tensor([[[-3.0, -2.5, -2.0],
                             [-2.9, -2.1, -2.0],
                             [-2.0, -2.0, -2.0]]])
    fg = torch.tensor([[[True, True, False],
                        [False, True, False],
                        [False, False, False]]])
    counts = concept_counts(entropy, fg, h_bar=-2.0, b=0.2)
    # H_bar - H > 0.2: (0,0) 1.0 fg, (0,1) 0.5 fg, (1,0) 0.9 bg; (1,1) 0.1 is not.
    assert counts.n_fg.tolist() == [2] and counts.n_bg.tolist() == [1]
    assert counts.fg_ratio.tolist() == [pytest.approx(2 / 3)]
    expected = torch.zeros(1, 3, 3, dtype=torch.bool)
    expected[0, 0, 0] = expected[0, 0, 1] = expected[0, 1, 0] = True
    assert torch.equal(counts.is_concept, expected)
    # Strictly greater: a difference of exactly b (representable values) is no concept.
    edge = concept_counts(torch.tensor([[[-2.25]]]), torch.tensor([[[True]]]), -2.0, b=0.25)
    assert edge.n_fg.tolist() == [0]


def test_per_image_baseline_nan_maps_and_no_concepts():
    entropy = torch.stack([torch.full((2, 2), -3.0), torch.full((2, 2), math.nan)])
    fg = torch.tensor([[True, False], [False, False]]).expand(2, 2, 2).clone()
    counts = concept_counts(entropy, fg, h_bar=torch.tensor([-2.0, -2.0]))
    assert counts.n_fg.tolist() == [1, 0] and counts.n_bg.tolist() == [3, 0]
    assert counts.fg_ratio.tolist() == [0.25, 0.0]  # no concepts: contributes 0
    high = concept_counts(entropy, fg, h_bar=-3.1)
    assert high.n_fg.tolist() == [0, 0] and high.n_bg.tolist() == [0, 0]


def test_background_baseline_averages_per_image_means():
    entropy = torch.tensor([[[-1.0, -3.0], [-2.0, -4.0]],
                            [[-9.0, -2.0], [-2.0, -2.0]],
                            [[math.nan] * 2] * 2])
    fg = torch.tensor([[[True, False], [False, False]]] * 3)
    # image 0: background mean (-3 - 2 - 4) / 3 = -3; image 1: -2; image 2 (NaN) left out
    assert background_baseline(entropy, fg) == pytest.approx(-2.5)
    assert math.isnan(background_baseline(entropy[2:], fg[2:]))


def test_downsample_mask_nearest():
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[0, :4, :2] = True
    small = downsample_mask(mask, 4)
    assert small.shape == (1, 4, 4) and small.dtype == torch.bool
    assert small[0, :2, 0].all() and small.sum() == 2
    assert downsample_mask(mask[0], 4).shape == (4, 4)


def test_bad_inputs():
    with pytest.raises(ValueError, match="bool"):
        concept_counts(torch.zeros(1, 2, 2), torch.zeros(1, 2, 2), -2.0)
    with pytest.raises(ValueError, match="shape"):
        concept_counts(torch.zeros(1, 2, 2), torch.zeros(1, 3, 3, dtype=torch.bool), -2.0)
    with pytest.raises(ValueError, match="h_bar"):
        concept_counts(torch.zeros(2, 2, 2), torch.zeros(2, 2, 2, dtype=torch.bool),
                       torch.zeros(3))
