"""Losses of comode.models.losses against hand computations and explicit-loop references.

Shape alphabet: B batch, D embedding dim, T time, H height, W width, N negatives.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from comode.distributed import gather_from_all_ranks
from comode.models.losses import (
    info_nce,
    info_nce_blind_level,
    joint_loss,
    key_spread,
    mse_motion_loss,
    pointwise_blind_level,
    pointwise_info_nce,
)


def _nce_row(query: torch.Tensor, positive: torch.Tensor, negatives: list[torch.Tensor], temperature: float):
    """-log softmax of the positive for one query, from Python floats; and whether it wins."""
    unit = lambda v: v / v.norm()  # noqa: E731
    q = unit(query)
    pos = float(q @ unit(positive)) / temperature
    negs = [float(q @ unit(n)) / temperature for n in negatives]
    denominator = math.exp(pos) + sum(math.exp(n) for n in negs)
    return -(pos - math.log(denominator)), all(pos > n for n in negs)


def _reference_info_nce(query, key, temperature, negatives=None):
    """Loop reference: (B, D) x (B, D) [+ (B, N, D)] -> per-row losses and hits."""
    losses, hits = [], []
    for i in range(query.shape[0]):
        others = [key[j] for j in range(key.shape[0]) if j != i]
        if negatives is not None:
            others += [negatives[i, n] for n in range(negatives.shape[1])]
        loss, hit = _nce_row(query[i], key[i], others, temperature)
        losses.append(loss)
        hits.append(hit)
    return losses, hits


def _reference_pointwise(pred, target, temperature, hard_negatives=None):
    """Loop reference for Eq. 2 over every position (b, t, y, x) -> per-position losses and hits."""
    batch, _, frames, height, width = pred.shape
    grid = [(t, y, x) for t in range(frames) for y in range(height) for x in range(width)]
    losses, hits = [], []
    for b in range(batch):
        for t, y, x in grid:
            negatives = [
                target[b2, :, t2, y2, x2]
                for b2 in range(batch)
                for (t2, y2, x2) in grid
                if (b2, t2, y2, x2) != (b, t, y, x)
            ]
            if hard_negatives is not None:
                negatives += [
                    hard_negatives[b, k, :, t2, y2, x2] for k in range(hard_negatives.shape[1]) for (t2, y2, x2) in grid
                ]
            loss, hit = _nce_row(pred[b, :, t, y, x], target[b, :, t, y, x], negatives, temperature)
            losses.append(loss)
            hits.append(hit)
    return losses, hits


def _mean(values):
    return sum(values) / len(values)


# ------------------------------------------------------------------ info_nce (J_I, Eq. 1)


def test_info_nce_hand_computed_orthogonal_pair():
    # q = k = [e1, e2], temperature 1: each row's logits are [1 (positive), 0 (negative)], so
    # loss = -log(e^1 / (e^1 + e^0)) = log(1 + e^-1) = 0.3132617 and both rows are right.
    eye = torch.eye(2)
    loss, accuracy = info_nce(eye, eye, temperature=1.0)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1)), abs=1e-6)
    assert loss.item() == pytest.approx(0.3132617, abs=1e-6)
    assert accuracy.item() == 1.0
    # Swapped keys: positive logit 0, negative 1 -> loss = log(1 + e^1) = 1.3132617, all wrong.
    loss, accuracy = info_nce(eye, eye.flip(0), temperature=1.0)
    assert loss.item() == pytest.approx(math.log(1 + math.e), abs=1e-6)
    assert accuracy.item() == 0.0


def test_info_nce_normalises_inputs():
    query, key = torch.randn(3, 4), torch.randn(3, 4)
    plain, _ = info_nce(query, key)
    scaled, _ = info_nce(5.0 * query, 0.1 * key)
    torch.testing.assert_close(plain, scaled)


@pytest.mark.parametrize("with_negatives", [False, True])
def test_info_nce_matches_loop_reference(with_negatives):
    torch.manual_seed(0)
    query, key = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    negatives = torch.randn(3, 2, 4, dtype=torch.float64) if with_negatives else None
    loss, accuracy = info_nce(query, key, temperature=0.5, negatives=negatives)
    losses, hits = _reference_info_nce(query, key, 0.5, negatives)
    assert loss.item() == pytest.approx(_mean(losses), rel=1e-10)
    assert accuracy.item() == pytest.approx(_mean(hits))


def test_info_nce_accuracy_is_one_when_query_equals_distinct_key():
    torch.manual_seed(1)
    key = torch.randn(8, 16)
    _, accuracy = info_nce(key.clone(), key)
    assert accuracy.item() == 1.0


def test_info_nce_extra_negatives_raise_the_loss():
    torch.manual_seed(2)
    query, key = torch.randn(4, 8), torch.randn(4, 8)
    base, _ = info_nce(query, key)
    harder, _ = info_nce(query, key, negatives=torch.randn(4, 3, 8))
    assert harder.item() > base.item()  # only terms added to every denominator
    # A negative equal to the positive doubles its share: +log(1 + p_i) per row exactly.
    doubled, _ = info_nce(query, key, negatives=key.unsqueeze(1))
    logits = F.normalize(query, dim=1) @ F.normalize(key, dim=1).T / 0.1
    p_positive = logits.softmax(dim=1).diagonal()
    torch.testing.assert_close(doubled, base + torch.log1p(p_positive).mean())


def test_info_nce_gradients_reach_query_and_key():
    query = torch.randn(3, 4, requires_grad=True)
    key = torch.randn(3, 4, requires_grad=True)
    loss, _ = info_nce(query, key)
    loss.backward()
    assert query.grad.abs().sum() > 0 and key.grad.abs().sum() > 0


def test_info_nce_rejects_bad_shapes_and_temperature():
    with pytest.raises(ValueError):
        info_nce(torch.randn(3, 4), torch.randn(2, 4))
    with pytest.raises(ValueError):
        info_nce(torch.randn(3, 4), torch.randn(3, 4), negatives=torch.randn(3, 4))
    with pytest.raises(ValueError):
        info_nce(torch.randn(3, 4), torch.randn(3, 4), temperature=0.0)


# --------------------------------------------------------- pointwise_info_nce (J_M, Eq. 2)


@pytest.mark.parametrize("with_hard_negatives", [False, True])
def test_pointwise_info_nce_matches_per_position_loop(with_hard_negatives):
    torch.manual_seed(3)
    shape = (2, 4, 2, 2, 3)  # (B, D, T, H, W)
    pred = torch.randn(shape, dtype=torch.float64)
    target = torch.randn(shape, dtype=torch.float64)
    hard = torch.randn(2, 3, *shape[1:], dtype=torch.float64) if with_hard_negatives else None
    loss, accuracy = pointwise_info_nce(pred, target, temperature=0.2, hard_negatives=hard)
    losses, hits = _reference_pointwise(pred, target, 0.2, hard)
    assert len(losses) == 2 * 2 * 2 * 3
    assert loss.item() == pytest.approx(_mean(losses), rel=1e-10)
    assert accuracy.item() == pytest.approx(_mean(hits))


def test_pointwise_info_nce_perfect_prediction_has_accuracy_one():
    torch.manual_seed(4)
    target = torch.randn(2, 16, 1, 2, 3)
    _, accuracy = pointwise_info_nce(target.clone(), target)
    assert accuracy.item() == 1.0


def test_pointwise_hard_negatives_raise_the_loss_and_can_flip_accuracy():
    torch.manual_seed(5)
    target = torch.randn(2, 8, 1, 2, 2)
    pred = target + 0.1 * torch.randn_like(target)
    base, base_accuracy = pointwise_info_nce(pred, target)
    # Hard negatives that ARE the prediction (a window "more similar" than the true future)
    # must beat every positive: accuracy drops to 0 and the loss goes up.
    hard = pred.unsqueeze(1).repeat(1, 3, 1, 1, 1, 1)
    harder, hard_accuracy = pointwise_info_nce(pred, target, hard_negatives=hard)
    assert harder.item() > base.item()
    assert base_accuracy.item() == 1.0 and hard_accuracy.item() == 0.0


def test_pointwise_hard_negatives_of_one_video_do_not_affect_other_videos():
    torch.manual_seed(6)
    pred, target = torch.randn(2, 4, 1, 2, 2), torch.randn(2, 4, 1, 2, 2)
    hard = torch.randn(2, 3, 4, 1, 2, 2)
    changed = hard.clone()
    changed[1] = torch.randn(3, 4, 1, 2, 2)  # only video 1's hard negatives change
    pred.requires_grad_(True)
    loss_a, _ = pointwise_info_nce(pred, target, hard_negatives=hard)
    (grad_a,) = torch.autograd.grad(loss_a, pred)
    loss_b, _ = pointwise_info_nce(pred, target, hard_negatives=changed)
    (grad_b,) = torch.autograd.grad(loss_b, pred)
    torch.testing.assert_close(grad_a[0], grad_b[0])  # video 0's queries unaffected
    assert not torch.allclose(grad_a[1], grad_b[1])


def _reference_same_position(pred, target, temperature, hard_negatives=None):
    """Loop reference of candidates="same_position": each cell against the same cell of every
    video's target and of its own video's hard windows."""
    batch, _, frames, height, width = pred.shape
    losses, hits = [], []
    for b in range(batch):
        for t in range(frames):
            for y in range(height):
                for x in range(width):
                    negatives = [target[b2, :, t, y, x] for b2 in range(batch) if b2 != b]
                    if hard_negatives is not None:
                        negatives += [hard_negatives[b, k, :, t, y, x] for k in range(hard_negatives.shape[1])]
                    loss, hit = _nce_row(pred[b, :, t, y, x], target[b, :, t, y, x], negatives, temperature)
                    losses.append(loss)
                    hits.append(hit)
    return losses, hits


@pytest.mark.parametrize("with_hard_negatives", [False, True])
def test_same_position_candidates_match_per_position_loop(with_hard_negatives):
    torch.manual_seed(13)
    shape = (3, 4, 1, 2, 3)
    pred, target = torch.randn(shape, dtype=torch.float64), torch.randn(shape, dtype=torch.float64)
    hard = torch.randn(3, 2, *shape[1:], dtype=torch.float64) if with_hard_negatives else None
    loss, accuracy = pointwise_info_nce(pred, target, temperature=0.2, hard_negatives=hard, candidates="same_position")
    losses, hits = _reference_same_position(pred, target, 0.2, hard)
    assert loss.item() == pytest.approx(_mean(losses), rel=1e-10)
    assert accuracy.item() == pytest.approx(_mean(hits))
    everywhere, _ = pointwise_info_nce(pred, target, temperature=0.2, hard_negatives=hard)
    assert everywhere.item() > loss.item()  # the paper's set holds the same candidates and more


def test_blind_predictor_scores_its_blind_level_on_both_candidate_sets():
    # A predictor that knows only WHERE a cell is (the same vector for every video at a
    # position) while the targets differ by video and position: at each cell it cannot
    # tell the B + K candidates of that position apart.  Targets at other positions are
    # orthogonal to the query, so the full candidate set rules them out too (at a low
    # temperature) -- both sets then sit at ln(B + K) and 1 / (B + K).
    batch, hard_windows, positions = 4, 3, 6
    dim = positions * (batch + hard_windows + 1)
    basis = torch.eye(dim)
    cell_direction = basis[:positions]  # (P, D): the blind query of position p

    def window(index):  # (D, 1, 2, 3): same direction + a unique part
        unique = basis[positions * (index + 1) : positions * (index + 2)]
        return (cell_direction + 1e-3 * unique).T.reshape(dim, 1, 2, 3)

    target = torch.stack([window(b) for b in range(batch)])
    hard = torch.stack([torch.stack([window(batch + k) for k in range(hard_windows)])] * batch)
    pred = cell_direction.T.reshape(dim, 1, 2, 3).expand(batch, -1, -1, -1, -1)
    level = pointwise_blind_level(batch, hard_negatives=hard_windows)
    assert level.candidates == 7 and level.loss == pytest.approx(math.log(7))
    for candidates in ("all", "same_position"):
        loss, _ = pointwise_info_nce(pred, target, temperature=0.01, hard_negatives=hard, candidates=candidates)
        assert loss.item() == pytest.approx(level.loss, abs=1e-3), candidates


def test_blind_levels_count_the_candidates():
    assert info_nce_blind_level(8).accuracy == pytest.approx(1 / 8)
    assert info_nce_blind_level(8).loss == pytest.approx(math.log(8))
    assert pointwise_blind_level(8, hard_negatives=3).accuracy == pytest.approx(1 / 11)
    assert pointwise_blind_level(8, hard_negatives=3).loss == pytest.approx(2.3979, abs=1e-4)
    with pytest.raises(ValueError, match="candidates"):
        pointwise_info_nce(torch.randn(2, 4, 1, 2, 2), torch.randn(2, 4, 1, 2, 2), candidates="nearby")


def test_pointwise_info_nce_rejects_mismatched_shapes():
    with pytest.raises(ValueError):
        pointwise_info_nce(torch.randn(2, 4, 1, 2, 2), torch.randn(2, 4, 1, 2, 3))
    with pytest.raises(ValueError):
        pointwise_info_nce(
            torch.randn(2, 4, 1, 2, 2), torch.randn(2, 4, 1, 2, 2), hard_negatives=torch.randn(2, 3, 4, 1, 2, 3)
        )


def test_pointwise_info_nce_paper_scale_is_one_matmul_and_fast():
    # B=8, D=512, grid 2x7x7: 784 queries x (784 + 3*98) candidates.
    pred = torch.randn(8, 512, 2, 7, 7, requires_grad=True)
    target = torch.randn(8, 512, 2, 7, 7)
    loss, _ = pointwise_info_nce(pred, target, hard_negatives=torch.randn(8, 3, 512, 2, 7, 7))
    loss.backward()
    assert torch.isfinite(loss) and pred.grad.shape == pred.shape


# ------------------------------------------------------------------ gather (DDP negatives)


def _fake_gather(other_rank_rows: torch.Tensor):
    """A 2-rank all_gather seen from rank 0: [local rows, rank 1's rows]."""
    return lambda local: torch.cat([local, other_rank_rows.to(local.dtype)], dim=0)


def test_gather_from_all_ranks_is_identity_without_distributed():
    x = torch.randn(3, 4, requires_grad=True)
    assert gather_from_all_ranks(x) is x


def test_info_nce_with_gather_equals_local_rows_of_the_concatenated_batch():
    torch.manual_seed(7)
    query, key = torch.randn(3, 4), torch.randn(3, 4)  # this rank's batch
    other_query, other_key = torch.randn(3, 4), torch.randn(3, 4)  # rank 1's batch
    loss, accuracy = info_nce(query, key, gather=_fake_gather(F.normalize(other_key, dim=1)))
    # Reference: the global batch of 6, only rows 0..2 (this rank's queries) averaged.
    all_query, all_key = torch.cat([query, other_query]), torch.cat([key, other_key])
    logits = F.normalize(all_query, dim=1) @ F.normalize(all_key, dim=1).T / 0.1
    per_row = F.cross_entropy(logits, torch.arange(6), reduction="none")
    torch.testing.assert_close(loss, per_row[:3].mean())
    hits = (logits.argmax(dim=1) == torch.arange(6)).float()
    assert accuracy.item() == pytest.approx(hits[:3].mean().item())
    # Without gather, the loss has fewer negatives and is different.
    assert not torch.allclose(info_nce(query, key)[0], loss)


def test_pointwise_info_nce_with_gather_equals_local_rows_of_the_concatenated_batch():
    torch.manual_seed(8)
    shape = (2, 4, 1, 2, 2)
    pred, target = torch.randn(shape, dtype=torch.float64), torch.randn(shape, dtype=torch.float64)
    other_pred = torch.randn(shape, dtype=torch.float64)
    other_target = torch.randn(shape, dtype=torch.float64)
    hard = torch.randn(2, 3, *shape[1:], dtype=torch.float64)
    loss, _ = pointwise_info_nce(
        pred, target, hard_negatives=hard, gather=_fake_gather(F.normalize(other_target, dim=1))
    )
    # Reference on the global batch of 4 videos; rank 1's hard negatives are irrelevant to
    # rank 0's queries (hard negatives only serve their own video), so random ones are fine.
    all_hard = torch.cat([hard, torch.randn_like(hard)])
    losses, _ = _reference_pointwise(torch.cat([pred, other_pred]), torch.cat([target, other_target]), 0.1, all_hard)
    local_positions = 2 * 1 * 2 * 2
    assert loss.item() == pytest.approx(_mean(losses[:local_positions]), rel=1e-10)


def test_gather_keeps_gradient_for_local_keys():
    key = torch.randn(3, 4, requires_grad=True)
    loss, _ = info_nce(torch.randn(3, 4), key, gather=_fake_gather(torch.randn(3, 4)))
    loss.backward()
    assert key.grad.abs().sum() > 0


# ------------------------------------------------------------------ joint and MSE losses


def test_joint_loss_weights_the_two_tasks():
    context, motion = torch.tensor(2.0), torch.tensor(4.0)
    assert joint_loss(context, motion, alpha=0.5).item() == pytest.approx(3.0)
    assert joint_loss(context, motion, alpha=0.25).item() == pytest.approx(0.75 * 2 + 0.25 * 4)
    assert joint_loss(context, motion, alpha=0.0).item() == pytest.approx(2.0)
    assert joint_loss(context, motion, alpha=1.0).item() == pytest.approx(4.0)
    with pytest.raises(ValueError):
        joint_loss(context, motion, alpha=1.5)


def test_mse_motion_loss_same_grid_and_pooled_grid():
    target = torch.randn(2, 2, 4, 4, 6)
    assert mse_motion_loss(target.clone(), target).item() == 0.0
    assert mse_motion_loss(target + 1.0, target).item() == pytest.approx(1.0)
    # A coarser prediction grid compares with the cell means of the target.
    coarse = F.avg_pool3d(target, 2)  # (2, 2, 2, 2, 3)
    assert mse_motion_loss(coarse, target).item() == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError):
        mse_motion_loss(torch.randn(2, 2, 4, 4), torch.randn(2, 2, 4, 4))


# ------------------------------------------------------------------ key spread


def test_key_spread_is_zero_for_keys_that_ignore_the_video_and_one_minus_mean_norm_otherwise():
    # (B, D, T, H, W): every video the same key at each cell, but cells differ -> still 0
    # (the keys carry position only, nothing of the video).
    per_cell = torch.randn(1, 8, 1, 2, 2)
    assert key_spread(per_cell.expand(5, -1, -1, -1, -1) * 3.0).item() == pytest.approx(0.0, abs=1e-6)
    # Orthonormal keys of 4 videos: mean key (1/4 each coordinate), |mean|^2 = 4/16.
    one_hot = torch.eye(4)  # (B=4, D=4)
    assert key_spread(one_hot).item() == pytest.approx(1 - 4 / 16)
    # Per-position rule, checked against a loop over positions for random (B, D, T, H, W).
    keys = torch.randn(6, 5, 2, 3, 3)
    expected = []
    for t in range(2):
        for y in range(3):
            for x in range(3):
                unit = [k / k.norm() for k in keys[:, :, t, y, x]]
                mean = sum(unit) / len(unit)
                expected.append(1 - float(mean @ mean))
    assert key_spread(keys).item() == pytest.approx(sum(expected) / len(expected), rel=1e-5)
