"""The CoMoDe model: output shapes, losses, gradients and ablation switches on a tiny CPU model.

Shape alphabet: B batch, C channels, T time, H height, W width, D embedding dim.
"""

from __future__ import annotations

import math

import pytest
import torch

from comode.models.config import LossConfig, ModelConfig
from comode.models.heads import LearnedPositionalGrid
from comode.models.model import CoMoDe, CoMoDeOutput
from comode.models.objective import compute_losses, compute_objective

TINY = dict(width_multiplier=0.125, transformer_dim=64, embed_dim=32, head_hidden=128)
LOSS_KEYS = {
    "loss",
    "loss_context",
    "loss_motion",
    "acc_context",
    "acc_motion",
    "blind_loss",
    "blind_loss_context",
    "blind_acc_context",
    "blind_loss_motion",
    "blind_acc_motion",
    "key_spread_context",
    "key_spread_motion",
}


def tiny(**fields) -> CoMoDe:
    """A CPU-sized CoMoDe with ``fields`` of its ModelConfig changed."""
    return CoMoDe(ModelConfig(**{**TINY, **fields}))


def _inputs(batch=2, mv_hw=(32, 44), negatives=3):
    torch.manual_seed(0)
    return dict(
        clip=torch.randn(batch, 3, 16, 64, 64),
        iframe=torch.randn(batch, 3, 64, 64),
        mv_future=torch.randn(batch, 2, 8, *mv_hw),
        mv_negatives=torch.randn(batch, negatives, 2, 8, *mv_hw) if negatives else None,
    )


def _assert_every_parameter_has_a_gradient(model):
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient for {missing}"


def test_tiny_model_forward_backward_reaches_every_parameter():
    torch.manual_seed(0)
    model = tiny()
    inputs = _inputs()
    # Speed is measured in benchmarks, not asserted here (CI machines vary).
    out = model(**inputs)
    losses = compute_losses(out, temperature=0.1, alpha=0.5)
    losses["loss"].backward()

    assert isinstance(out, CoMoDeOutput)
    assert tuple(out.clip_embedding.shape) == (2, 32)
    assert tuple(out.iframe_embedding.shape) == (2, 32)
    # M-Net grid of an 8 x 32 x 44 MV window: T 8 -> 1, H 32 -> 2, W 44 -> 3.
    assert tuple(out.motion_prediction.shape) == (2, 32, 1, 2, 3)
    assert tuple(out.motion_target.shape) == (2, 32, 1, 2, 3)
    assert tuple(out.motion_negatives.shape) == (2, 3, 32, 1, 2, 3)

    assert set(losses) == LOSS_KEYS
    assert all(torch.isfinite(v) for v in losses.values())
    expected = 0.5 * losses["loss_context"] + 0.5 * losses["loss_motion"]
    torch.testing.assert_close(losses["loss"], expected)
    # Blind levels: 1 / B for context (B = 2 I-frames); 1 / (B + K) for motion (2 videos + 3 windows).
    assert losses["blind_acc_context"].item() == pytest.approx(1 / 2)
    assert losses["blind_acc_motion"].item() == pytest.approx(1 / 5)
    assert losses["blind_loss_motion"].item() == pytest.approx(math.log(5))
    assert losses["blind_loss"].item() == pytest.approx(0.5 * math.log(2) + 0.5 * math.log(5))
    _assert_every_parameter_has_a_gradient(model)


@pytest.mark.parametrize("backbone", ["r3d_18_diff", "r3d_18_rgbdiff"])
@pytest.mark.parametrize("head", ["linear", "mlp_bn"])
def test_conv_predictor_and_mlp_heads_train_every_parameter(backbone, head):
    torch.manual_seed(0)
    model = tiny(backbone=backbone, motion_predictor="conv", motion_head=head)
    out = model(**_inputs())
    assert tuple(out.motion_prediction.shape) == tuple(out.motion_target.shape) == (2, 32, 1, 2, 3)
    losses = compute_losses(out, motion_candidates="same_position")
    losses["loss"].backward()
    _assert_every_parameter_has_a_gradient(model)
    with pytest.raises(ValueError, match="one time slice"):
        model.motion_predictor(torch.randn(2, model.feature_dim, 2, 4, 4), (2, 2, 3))


def test_conv_predictor_keeps_each_cell_where_it_is():
    # A clip map whose only non-zero cell is (y, x) = (0, 0): its prediction differs from the
    # all-zero map's only within the 3x3 x 3x3 reach of two 3x3 convolutions (5 x 5 cells).
    from comode.models.heads import ConvMotionPredictor

    torch.manual_seed(0)
    predictor = ConvMotionPredictor(8, hidden=16, embed_dim=4).eval()
    features = torch.zeros(1, 8, 2, 7, 7)
    features[0, :, :, 0, 0] = 1.0
    with torch.no_grad():
        moved = predictor(features, (1, 7, 7)) - predictor(torch.zeros_like(features), (1, 7, 7))
    reached = moved.abs().sum(dim=(0, 1, 2)) > 1e-6  # (7, 7)
    assert reached[:3, :3].all() and not reached[5:, :].any() and not reached[:, 5:].any()


def test_rotated_negatives_turn_the_future_vectors():
    from comode.models.heads import rotate_vectors

    right = torch.zeros(1, 2, 1, 1, 1)
    right[0, 0] = 3.0  # 3 px/frame to the right
    assert rotate_vectors(right, 1).flatten().tolist() == [0.0, 3.0]  # down (y grows downwards)
    assert rotate_vectors(right, 2).flatten().tolist() == [-3.0, 0.0]  # left
    assert rotate_vectors(right, 3).flatten().tolist() == [0.0, -3.0]  # up
    torch.testing.assert_close(rotate_vectors(right, 4), right)
    torch.manual_seed(0)
    model = tiny(rotated_negatives=True, motion_predictor="conv").eval()
    inputs = _inputs()
    with torch.no_grad():
        out = model(**inputs)
        half_turn = model.encode_motion(rotate_vectors(inputs["mv_future"], 2))
    assert tuple(out.motion_negatives.shape) == (2, 6, 32, 1, 2, 3)  # 3 windows + 3 turns
    torch.testing.assert_close(out.motion_negatives[:, 4], half_turn)
    assert compute_losses(out)["blind_acc_motion"].item() == pytest.approx(1 / (2 + 6))


def test_blind_control_cannot_use_the_clip():
    torch.manual_seed(0)
    model = tiny(blind=True).eval()
    inputs = _inputs()
    with torch.no_grad():
        out = model(**inputs)
        other = model(**{**inputs, "clip": torch.randn_like(inputs["clip"])})
    torch.testing.assert_close(out.motion_prediction, other.motion_prediction)  # whatever the clip
    torch.testing.assert_close(out.clip_embedding, other.clip_embedding)
    model.train()
    compute_losses(model(**inputs))["loss"].backward()
    assert all(p.grad is None for p in model.vnet.parameters())  # nothing reaches the V-Network


@pytest.mark.parametrize("mv_hw", [(16, 22), (32, 44), (64, 64)])
def test_motion_prediction_follows_the_mnet_grid_of_any_mv_size(mv_hw):
    model = tiny().eval()
    with torch.no_grad():
        out = model(**_inputs(mv_hw=mv_hw, negatives=0))
    assert out.motion_negatives is None
    assert out.motion_prediction.shape == out.motion_target.shape
    expected_hw = tuple(math.ceil(s / 16) for s in mv_hw)  # stride 2 four times, rounded up
    assert tuple(out.motion_target.shape[3:]) == expected_hw


def test_encode_clip_returns_pooled_backbone_features():
    model = tiny().eval()
    clip = torch.randn(2, 3, 16, 64, 64)
    with torch.no_grad():
        pooled = model.encode_clip(clip)
        assert tuple(pooled.shape) == (2, model.feature_dim) == (2, 64)
        torch.testing.assert_close(pooled, model.vnet(clip).mean(dim=(2, 3, 4)))


def test_context_only_ablation_has_no_motion_modules():
    model = tiny(use_motion=False)
    assert not any(name.startswith(("mnet", "motion")) for name, _ in model.named_parameters())
    out = model(clip=torch.randn(2, 3, 16, 64, 64), iframe=torch.randn(2, 3, 64, 64))
    assert out.motion_prediction is None and out.motion_target is None
    losses = compute_losses(out)
    torch.testing.assert_close(losses["loss"], losses["loss_context"])
    assert math.isnan(losses["loss_motion"].item()) and math.isnan(losses["acc_motion"].item())
    losses["loss"].backward()
    _assert_every_parameter_has_a_gradient(model)


def test_motion_only_ablation_has_no_context_modules():
    model = tiny(use_context=False)
    context_modules = ("inet", "clip_head", "iframe_head")
    assert not any(name.startswith(context_modules) for name, _ in model.named_parameters())
    inputs = _inputs()
    del inputs["iframe"]
    out = model(**inputs)
    assert out.clip_embedding is None and out.iframe_embedding is None
    losses = compute_losses(out, alpha=0.3)
    torch.testing.assert_close(losses["loss"], losses["loss_motion"])  # unweighted when alone
    assert math.isnan(losses["loss_context"].item())
    losses["loss"].backward()
    _assert_every_parameter_has_a_gradient(model)


@pytest.mark.parametrize("backbone", ["c3d", "r21d_18"])
def test_other_v_networks_plug_in(backbone):
    model = tiny(backbone=backbone).eval()
    with torch.no_grad():
        out = model(**_inputs(negatives=1))
    assert tuple(out.motion_prediction.shape) == (2, 32, 1, 2, 3)


def test_missing_inputs_and_wrong_roles_are_rejected():
    model = tiny()
    with pytest.raises(ValueError, match="iframe"):
        model(clip=torch.randn(2, 3, 16, 64, 64), mv_future=torch.randn(2, 2, 8, 16, 16))
    with pytest.raises(ValueError, match="mv_future"):
        model(clip=torch.randn(2, 3, 16, 64, 64), iframe=torch.randn(2, 3, 64, 64))
    with pytest.raises(ValueError, match="mv_negatives"):
        model(**{**_inputs(), "mv_negatives": torch.randn(2, 3, 2, 8, 16, 16)})
    with pytest.raises(ValueError):
        tiny(backbone="r2d_10")  # a frame network cannot be the V-Network
    with pytest.raises(ValueError):
        tiny(mnet="r3d_18")  # the M-Network must take motion vectors
    with pytest.raises(ValueError):
        tiny(use_context=False, use_motion=False)
    with pytest.raises(ValueError):
        tiny(heads=6)  # 64 is not divisible by 6


def test_positional_grid_interpolates_to_any_token_grid():
    positions = LearnedPositionalGrid(8)  # reference grid (2, 7, 7)
    assert tuple(positions((2, 7, 7)).shape) == (1, 98, 8)
    torch.testing.assert_close(positions((2, 7, 7)), positions.table.flatten(2).transpose(1, 2))
    assert tuple(positions((1, 2, 3)).shape) == (1, 6, 8)
    positions((1, 2, 3)).sum().backward()
    assert positions.table.grad.abs().sum() > 0


def test_compute_losses_with_a_fake_gather_uses_the_other_ranks_keys():
    model = tiny().eval()
    with torch.no_grad():
        out = model(**_inputs())
    extra_keys = {}

    def fake_gather(local):
        extra = torch.nn.functional.normalize(torch.randn_like(local), dim=1)
        extra_keys[local.ndim] = extra
        return torch.cat([local, extra])

    local = compute_losses(out)
    gathered = compute_losses(out, gather=fake_gather)
    assert set(extra_keys) == {2, 5}  # I-frame keys (B, D) and motion targets (B, D, T, H, W)
    assert gathered["loss_context"] > local["loss_context"]  # more negatives, same positives
    assert gathered["loss_motion"] > local["loss_motion"]


@pytest.mark.parametrize("predictor, slices", [("transformer", 2), ("conv", 1)])
def test_mse_ablation_regresses_pooled_motion_vectors_without_an_mnet(predictor, slices):
    """The target: the MV window pooled to the V-Network grid (16 x 64 x 64 clip -> 2 x 4 x 4),
    2 channels (x, y); the conv predictor predicts one slice per window, so its target is the
    window's MVs averaged over time."""
    torch.manual_seed(0)
    model = tiny(motion_objective="mse", motion_predictor=predictor)
    assert not hasattr(model, "mnet") and not hasattr(model, "motion_projection")
    inputs = _inputs()
    out = model(**inputs)
    assert tuple(out.motion_prediction.shape) == (2, 2, slices, 4, 4)
    expected_target = torch.nn.functional.adaptive_avg_pool3d(inputs["mv_future"], (slices, 4, 4))
    torch.testing.assert_close(out.motion_target, expected_target)
    assert tuple(out.motion_negatives.shape) == (2, 3, 2, slices, 4, 4)
    losses = compute_losses(out, temperature=0.1, alpha=0.5)
    torch.testing.assert_close(losses["loss_motion"], ((out.motion_prediction - expected_target) ** 2).mean())
    losses["loss"].backward()
    _assert_every_parameter_has_a_gradient(model)


def test_mse_window_accuracy_counts_predictions_nearest_their_own_window():
    from comode.models.losses import mse_window_accuracy

    target = torch.zeros(2, 2, 1, 2, 2)
    negatives = torch.stack([torch.full((3, 2, 1, 2, 2), 1.0), torch.full((3, 2, 1, 2, 2), -1.0)])
    prediction = torch.stack([torch.full((2, 1, 2, 2), 0.1), torch.full((2, 1, 2, 2), -0.9)])
    # Sample 0 is nearest its true window (0), sample 1 nearest its negatives (-1).
    assert mse_window_accuracy(prediction, target, negatives).item() == 0.5
    with pytest.raises(ValueError, match="motion_objective must be one of"):
        tiny(motion_objective="l1")


def test_a_model_with_a_classifier_returns_its_logits_by_position_or_by_name():
    torch.manual_seed(0)
    model = CoMoDe(ModelConfig(**TINY), num_classes=4).eval()
    inputs = _inputs()
    with torch.no_grad():
        by_name = model(**inputs)
        by_position = model(*inputs.values())
    assert tuple(by_position.logits.shape) == (2, 4)
    torch.testing.assert_close(by_position.logits, by_name.logits)
    torch.testing.assert_close(by_position.motion_prediction, by_name.motion_prediction)
    torch.testing.assert_close(by_position.iframe_embedding, by_name.iframe_embedding)
    assert tiny()(**inputs).logits is None  # no classifier, no logits


def test_the_objective_adds_cross_entropy_only_when_the_output_has_logits():
    torch.manual_seed(0)
    inputs, labels = _inputs(), torch.tensor([0, 3])
    loss = LossConfig(supervised_aux_weight=0.2)
    with torch.no_grad():
        out = CoMoDe(ModelConfig(**TINY), num_classes=4).eval()(**inputs)
        supervised = compute_objective(out, labels, config=loss, gather=None)
        out.logits = None
        pretext = compute_objective(out, labels, config=loss, gather=None)
    assert math.isnan(pretext["loss_supervised"].item()) and math.isnan(pretext["acc_supervised"].item())
    cross_entropy = supervised["loss_supervised"].item()
    assert cross_entropy > 0
    assert supervised["loss"].item() == pytest.approx(cross_entropy + 0.2 * pretext["loss"].item(), rel=1e-5)
    assert supervised["blind_loss"].item() == pytest.approx(math.log(4) + 0.2 * pretext["blind_loss"].item(), rel=1e-5)


@pytest.mark.parametrize("task, reached, untouched", [("context", "rgb", "diff"), ("motion", "diff", "rgb")])
def test_split_pathway_tasks_train_each_pathway_by_its_own_task(task, reached, untouched):
    torch.manual_seed(0)
    model = tiny(backbone="r3d_26_rgbdiff", motion_predictor="conv", pathway_tasks="split")
    compute_losses(model(**_inputs()))[f"loss_{task}"].backward()

    def gradient(pathway):
        return sum(p.grad.abs().sum().item() for p in model.vnet.nets[pathway].parameters() if p.grad is not None)

    assert gradient(reached) > 0
    assert gradient(untouched) == 0  # the other task's pathway gets nothing from this loss


def test_shared_pathway_tasks_let_both_tasks_reach_both_pathways():
    torch.manual_seed(0)
    model = tiny(backbone="r3d_26_rgbdiff", motion_predictor="conv")
    compute_losses(model(**_inputs()))["loss_context"].backward()
    assert all(
        sum(p.grad.abs().sum().item() for p in net.parameters() if p.grad is not None) > 0
        for net in model.vnet.nets.values()
    )


def test_split_pathway_tasks_need_an_rgb_and_a_difference_pathway():
    for backbone in ("r3d_26", "r3d_26_diff"):
        with pytest.raises(ValueError, match="pathway_tasks='split' needs a V-Network with an RGB and a difference"):
            tiny(backbone=backbone, pathway_tasks="split")
