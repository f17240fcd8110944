"""Pretraining config: paper defaults, overrides, clear errors, YAML round trip, shipped files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from comode.models.model import CoMoDe
from comode.train.config import SUPERVISED_AUX_OVERRIDES, ConfigError, PretrainConfig, config_differences, load_config
from comode.train.rundir import refuse_changes, save_resolved

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "pretrain"


def test_defaults_are_the_papers_values():
    config = PretrainConfig()
    # Huang et al., CVPR 2021, Sec. 4.1 (+ the authors' code where the paper is silent).
    assert config.optim.momentum == 0.9 and config.optim.nesterov is True
    assert config.optim.weight_decay == 0.005  # the authors' code: 1e-3 (documented in config.py)
    assert config.optim.lr_per_sample == 0.0005 and config.base_lr == pytest.approx(0.032)  # 0.0005 x 64
    assert config.optim.warmup_epochs == 5 and config.optim.epochs == 120
    assert config.optim.grad_clip_norm == 15
    assert config.data.batch_size == 64 and config.data.size == 112
    assert config.loss.temperature == 0.1 and config.loss.alpha == 0.5
    assert config.loss.supervised_aux_weight == 0.2  # Table 6
    assert config.model.backbone == "r3d_26" and config.model.width_multiplier == 1.0
    assert config.task == "pretrain" and config.model.use_context and config.model.use_motion


def test_the_model_is_built_from_the_config_model_section():
    config = load_config(
        None,
        ["model.width_multiplier=0.125", "model.embed_dim=24", "model.head_hidden=48", "model.motion_predictor=conv"],
    )
    model = CoMoDe(config.model)
    assert model.config is config.model
    assert model.vnet.out_channels == 64  # R3D-26's 512 channels x 0.125
    assert model.clip_head[-1].out_features == 24 and model.clip_head[0].out_features == 48
    assert type(model.motion_predictor).__name__ == "ConvMotionPredictor"


def test_overrides_are_yaml_values_applied_in_order():
    config = load_config(
        None,
        [
            "optim.epochs=10",
            "data.batch_size=8",
            "model.backbone=c3d",
            "max_steps=50",
            "max_steps=null",
            "optim.weight_decay=1e-3",
            "model.use_context=false",
            "data.split=2",
            "optim.grad_clip_norm=null",
            "task=supervised_aux",
        ],
    )
    assert config.optim.epochs == 10 and config.data.batch_size == 8 and config.model.backbone == "c3d"
    assert config.max_steps is None  # the later override wins
    assert config.optim.weight_decay == 0.001  # "1e-3" is a string to YAML 1.1; the float field converts it
    assert config.model.use_context is False and config.data.split == "2" and config.optim.grad_clip_norm is None
    assert config.base_lr == pytest.approx(0.004)
    assert config.task == "supervised_aux"
    assert load_config(None, list(SUPERVISED_AUX_OVERRIDES)).model.use_context is False


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "optim.lr=0.1",
            "unknown config key 'optim.lr'; valid keys in 'optim': epochs, grad_clip_norm, lr_per_sample, "
            "momentum, nesterov, steps, warmup_epochs, weight_decay",
        ),
        (
            "optimizer.epochs=3",
            "unknown config key 'optimizer'; valid keys at the top level: checkpoint_every_epochs, "
            "data, loss, max_steps, model, optim, save_every_steps, seed, sync_batchnorm, task",
        ),
        ("data.batch_size=lots", "data.batch_size must be int, got 'lots'"),
        ("data.batch_size=2.5", "data.batch_size must be int, got 2.5"),
        ("model.use_motion=maybe", "model.use_motion must be bool, got 'maybe'"),
        ("task=finetune", "task must be one of ['pretrain', 'supervised_aux'], got 'finetune'"),
        ("data.missing_mv=mask", "data.missing_mv must be one of ['zero', 'interpolate'], got 'mask'"),
        ("loss.alpha=1.5", "loss.alpha must be in [0, 1]"),
        ("optim.epochs", "override 'optim.epochs' must look like key=value"),
        ("optim=3", "optim must be a mapping, got 3"),
    ],
)
def test_bad_keys_and_values_are_refused_with_a_clear_message(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(None, [override])


def test_both_branches_off_is_refused():
    with pytest.raises(ConfigError, match="cannot both be false"):
        load_config(None, ["model.use_context=false", "model.use_motion=false"])


def test_yaml_round_trip(tmp_path):
    config = load_config(None, ["optim.epochs=7", "model.width_multiplier=0.25", "data.split=null", "seed=3"])
    path = save_resolved(config, tmp_path / "run")
    assert path == tmp_path / "run" / "config.yaml"
    assert load_config(path) == config
    assert load_config(path, ["optim.epochs=8"]).optim.epochs == 8
    assert config_differences(config, load_config(path, ["optim.epochs=8", "max_steps=5"])) == [
        "max_steps: None -> 5",
        "optim.epochs: 7 -> 8",
    ]
    assert config_differences(config, load_config(path, ["optim.epochs=8", "max_steps=5"]), ignore={"max_steps"}) == [
        "optim.epochs: 7 -> 8"
    ]


def test_resume_check_names_the_changed_settings_other_than_the_resumable_ones(tmp_path):
    saved = load_config(None, ["optim.epochs=7"])
    refuse_changes(
        saved, load_config(None, ["optim.epochs=7", "max_steps=3"]), out_dir=tmp_path, resumable={"max_steps"}
    )
    changed = load_config(None, ["optim.epochs=8", "max_steps=3", "loss.alpha=0.3"])
    message = re.escape(
        f"the config differs from the run being resumed ({tmp_path / 'last.pt'}): "
        "loss.alpha: 0.5 -> 0.3; optim.epochs: 7 -> 8. Only ['max_steps'] may change on --resume"
    )
    with pytest.raises(ValueError, match=message):
        refuse_changes(saved, changed, out_dir=tmp_path, resumable={"max_steps"})
    # Flat mappings (the finetuning config) go through the same check.
    with pytest.raises(ValueError, match=r"differs .*: epochs: 100 -> 3\. Only \['workers'\]"):
        refuse_changes(
            {"epochs": 100, "workers": 4}, {"epochs": 3, "workers": 0}, out_dir=tmp_path, resumable={"workers"}
        )
    refuse_changes(
        {"epochs": 100, "workers": 4}, {"epochs": 100, "workers": 0}, out_dir=tmp_path, resumable={"workers"}
    )


def test_unknown_key_in_a_file_names_the_file_section(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  backbone: c3d\n  depth: 50\n")
    with pytest.raises(ConfigError, match=re.escape("unknown config key 'model.depth'; valid keys in 'model': ")):
        load_config(path)
    path.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        load_config(path)


@pytest.mark.parametrize("name", ["r3d26_ucf101.yaml", "c3d_ucf101.yaml", "tiny_cpu.yaml", "paper_cpu.yaml"])
def test_shipped_configs_load_and_explain_every_value(name):
    path = CONFIGS / name
    config = load_config(path)
    assert isinstance(config, PretrainConfig)
    for number, line in enumerate(path.read_text().splitlines(), 1):
        stripped = line.strip()
        is_value = stripped and not stripped.startswith("#") and not stripped.endswith(":")
        if is_value:
            assert "#" in stripped, f"{name}:{number} has no comment saying why: {line!r}"


def test_shipped_paper_configs_match_the_paper():
    r3d = load_config(CONFIGS / "r3d26_ucf101.yaml")
    c3d = load_config(CONFIGS / "c3d_ucf101.yaml")
    assert r3d.model.backbone == "r3d_26" and c3d.model.backbone == "c3d"
    for config in (r3d, c3d):
        assert config.optim == PretrainConfig().optim and config.loss == PretrainConfig().loss
        assert config.data.batch_size == 64 and config.data.split == "1" and config.data.subset == "train"


# The keys in which paper_cpu.yaml may differ from the paper's r3d26_ucf101.yaml: size only
# (widths, depths, clip side, batch, length, lr scaling, workers, checkpoint cadence).  Any
# method key -- input, predictor, candidates, I-frame maps, negatives, alpha, window, stride,
# crop scale -- must stay the paper's, or the CPU "Table 7" would not be the paper's method.
PAPER_CPU_SIZE_KEYS = frozenset(
    {
        "model.width_multiplier",
        "model.embed_dim",
        "model.head_hidden",
        "model.transformer_dim",
        "model.encoder_layers",
        "model.decoder_layers",
        "model.heads",
        "data.batch_size",
        "data.size",
        "data.mv_size",
        "data.workers",
        "optim.steps",
        "optim.lr_per_sample",
        "optim.weight_decay",
        "checkpoint_every_epochs",
        "save_every_steps",
    }
)


def test_paper_cpu_differs_from_the_paper_config_only_in_size():
    paper = load_config(CONFIGS / "r3d26_ucf101.yaml")
    cpu = load_config(CONFIGS / "paper_cpu.yaml")
    changed = {line.split(":")[0] for line in config_differences(paper, cpu)}
    assert changed <= PAPER_CPU_SIZE_KEYS, f"method keys changed: {sorted(changed - PAPER_CPU_SIZE_KEYS)}"
    # The method, spelled out: what the issue asks to keep as in the paper.
    assert cpu.model.backbone == "r3d_26" and cpu.model.motion_predictor == "transformer"
    assert cpu.loss.motion_candidates == "all" and cpu.data.iframe_mv == "zero"
    assert cpu.model.rotated_negatives is False and cpu.loss.alpha == 0.5
    assert cpu.data.motion_window == "future" and cpu.data.clip_stride == 4
    # 100k clips: the point the issue asks for (the paper's Table 7 leaves blind by ~95k).
    assert cpu.optim.steps * cpu.data.batch_size >= 100_000
    # Learning-rate scaling keeps the paper's weight-decay erosion per clip: every weight
    # shrinks by exp(-wd * lr_per_sample / (1 - momentum)) per clip seen, whatever the batch.
    assert cpu.optim.momentum == paper.optim.momentum
    assert cpu.optim.lr_per_sample * cpu.optim.weight_decay == pytest.approx(
        paper.optim.lr_per_sample * paper.optim.weight_decay
    )
