"""`evaluate retrieval|linear|finetune|compare` as a user runs them: reports, exit codes.

In-process (typer's CliRunner) to keep the tests fast; one subprocess run checks the
installed entry point (`python -m comode evaluate ...`).
"""

import json
import subprocess
import sys

from typer.testing import CliRunner

from comode.cli import app
from tests.commands import comode_command

SIZE = 64  # clip side: 3x fewer pixels than 112, nothing here depends on it


class Ran:
    def __init__(self, result):
        self.returncode, self.stdout, self.stderr = result.exit_code, result.stdout, result.stderr


def run(*args):
    return Ran(CliRunner().invoke(app, [str(a) for a in args]))


def run_process(*args, timeout=300):
    return subprocess.run(comode_command(*args), capture_output=True, text=True, timeout=timeout)


def evaluation(command, store, checkpoint, out, *options):
    """The arguments of ``evaluate COMMAND`` of ``checkpoint`` on ``store`` into ``out``, quiet."""
    return ["evaluate", command, "--store", store, "--checkpoint", checkpoint, "--out", out, "--no-progress", *options]


def test_retrieval_linear_and_compare(eval_store, tiny_checkpoint, tmp_path, feature_cache):
    out = tmp_path / "pretrained"
    fast = ["--workers", "0", "--device", "cpu", "--size", SIZE, "--cache-dir", feature_cache]
    retrieval = run(*evaluation("retrieval", eval_store, tiny_checkpoint, out, "--picture", "2", *fast))
    assert retrieval.returncode == 0, retrieval.stderr
    assert "R@1 (%)" in retrieval.stdout and (out / "retrieval.json").exists() and (out / "retrieval.png").exists()
    linear = run(*evaluation("linear", eval_store, tiny_checkpoint, out, *fast))
    assert linear.returncode == 0, linear.stderr
    assert "top1 (%)" in linear.stdout and json.loads((out / "linear.json").read_text())["counts"]["failed"] == 0
    random = tmp_path / "random"
    random_r3d = ["--backbone", "r3d_18", "--width-multiplier", "0.125", "--center", "--size", SIZE, "--picture", "0"]
    baseline = run(
        *evaluation("retrieval", eval_store, "random", random, "--workers", "0", "--device", "cpu", *random_r3d)
    )
    assert baseline.returncode == 0, baseline.stderr
    assert json.loads((random / "retrieval.json").read_text())["settings"]["center"] is True
    compare = run_process("evaluate", "compare", random / "retrieval.json", out, "--out", tmp_path / "table.txt")
    assert compare.returncode == 0, compare.stderr
    table = (tmp_path / "table.txt").read_text()
    assert "random init r3d_18" in table and "linear top1" in table and "retrieval R@1" in table


def test_bad_usage_exits_2(eval_store, tiny_checkpoint, tmp_path):
    missing = run(*evaluation("retrieval", eval_store, tmp_path / "nope.pt", tmp_path))
    assert missing.returncode == 2 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    split = run(*evaluation("linear", eval_store, tiny_checkpoint, tmp_path, "--split", "7"))
    assert split.returncode == 2 and "no split '7'" in split.stderr
    store = run(*evaluation("retrieval", tmp_path / "no.zarr", "random", tmp_path))
    assert store.returncode == 2 and "no Zarr group" in store.stderr
    config = run(*evaluation("finetune", eval_store, tiny_checkpoint, tmp_path, "epoch=3"))
    assert config.returncode == 2 and "unknown config key" in config.stderr
    clips = run(*evaluation("retrieval", eval_store, "random", tmp_path, "--clips", "0"))
    assert clips.returncode == 2 and "--clips" in clips.stderr and "Traceback" not in clips.stderr
    compare = run("evaluate", "compare", tmp_path / "nothing.json")
    assert compare.returncode == 2 and "no report" in compare.stderr


def test_finetune_cli(eval_store, tiny_checkpoint, tmp_path):
    out = tmp_path / "ft"
    overrides = ["epochs=1", "batch_size=6", "workers=0", "test_videos_per_batch=3", f"size={SIZE}", "test_clips=2"]
    args = evaluation("finetune", eval_store, tiny_checkpoint, out, *overrides)
    result = run(*args)
    assert result.returncode == 0, result.stderr
    assert "top1 (%)" in result.stdout and "top5 (%)" in result.stdout
    again = run(*args)
    assert again.returncode == 2 and "--resume" in again.stderr


def test_finetune_cli_stop_and_resume_with_the_runs_config(eval_store, tmp_path):
    out = tmp_path / "scratch"
    common = evaluation("finetune", eval_store, "random", out, "--backbone", "r3d_18", "--width-multiplier", "0.125")
    first = run(*common, "epochs=2", "batch_size=6", "workers=0", f"size={SIZE}", "test_clips=2", "stop_after_epoch=1")
    assert first.returncode == 0, first.stderr
    assert "stopped after epoch 1 of 2" in first.stdout and "--resume" in first.stdout
    resumed = run(*common, "--resume")  # no --config, no overrides: the run's own config.yaml, to the end
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads((out / "finetune.json").read_text())
    assert report["finished"] and report["counts"]["epochs_completed"] == 2 and "top1" in report["metrics"]
    assert report["model"]["kind"] == "random" and report["settings"]["init"] == "random"


def test_default_output_folders():
    from pathlib import Path

    from comode.evaluate.choices import FeatureChoices
    from comode.evaluate.options import features_output_folder, output_folder

    common = dict(backbone="r3d_26", width_multiplier=0.125, seed=3)
    assert output_folder(None, "runs/x/epoch_010.pt", "data/ucf101.zarr", **common) == Path(
        "runs/x/eval/epoch_010/ucf101"
    )
    assert output_folder(None, "runs/x/last.pt", "data/ucf101.zarr/", kind="finetune", **common) == Path(
        "runs/x/finetune/last/ucf101"
    )
    assert output_folder(None, "random", "s3://b/hmdb51.zarr", label_set="scene", **common) == Path(
        "runs/random-r3d_26-x0.125-seed3/eval/hmdb51-scene"
    )
    assert output_folder(Path("mine"), "random", "x.zarr", **common) == Path("mine")
    # A pathway view other than both gets its own folder: its reports never overwrite those of both.
    rgb = FeatureChoices(**common, feature="rgb")
    assert features_output_folder(None, "random", "s3://b/hmdb51.zarr", rgb, "scene") == Path(
        "runs/random-r3d_26-x0.125-seed3/eval/hmdb51-scene-rgb-feature"
    )
    assert features_output_folder(None, "runs/x/last.pt", "ucf101.zarr", FeatureChoices(**common)) == Path(
        "runs/x/eval/last/ucf101"
    )


def test_the_commands_load_without_torch():
    """`--help` stays fast: the commands import the evaluation code (torch, numpy) only when they run."""
    code = "import sys, comode.cli; heavy = {'torch', 'numpy'} & set(sys.modules); assert not heavy, heavy"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_ablation_asks_for_its_config(eval_store, tmp_path):
    """The variants are departures from one pretraining config: without --config the command
    says so (an installed wheel has no configs/ folder to fall back on)."""
    result = run("evaluate", "ablation", "--store", eval_store, "--out", tmp_path / "ablation")
    assert result.returncode == 2, result.stdout
    assert "--config" in result.stderr
    assert not (tmp_path / "ablation" / "ablation.json").exists()


def _model_and_clip(report):
    """(backbone, width, seed) of the evaluated network and (clip stride, side) it was shown."""
    model, settings = report["model"], report["settings"]
    return (model["backbone"], model["width_multiplier"], model["seed"]), (settings["clip_stride"], settings["size"])


def test_the_feature_options_reach_the_evaluation(eval_store, tmp_path):
    """The shared options of retrieval and the linear probe that change what is evaluated reach
    the report: a random init from --config (backbone, width, training clip) with --seed,
    explicit --backbone, --width-multiplier and --size over it, the cache in --cache-dir, the
    label set, --clips.  How the features are computed (--batch-videos, --workers, --device) leaves no
    trace in a report: those are checked on the FeatureOptions the commands build."""
    config = "configs/pretrain/demo_cpu.yaml"  # r3d_26_slowrgbdiff x0.125, 16 frames at stride 2, 64 px
    cache = tmp_path / "cache"
    common = ["--config", config, "--workers", "0", "--device", "cpu", "--batch-videos", "5", "--label-set", "texture"]
    linear = run(
        *evaluation("linear", eval_store, "random", tmp_path / "l", "--seed", "3", "--feature", "rgb", *common)
    )
    assert linear.returncode == 0, linear.stderr
    report = json.loads((tmp_path / "l" / "linear.json").read_text())
    assert report["settings"]["feature"] == "rgb" and report["settings"]["pathways"] == ["rgb", "diff"]
    assert (
        _model_and_clip(report) == (("r3d_26_slowrgbdiff", 0.125, 3), (2, 64))
        and report["settings"]["label_set"] == "texture"
    )
    assert not cache.exists() and list((tmp_path / "l" / "features").glob("*.npz"))  # default cache: <out>/features
    assert report["settings"]["clips_per_video"] == 10  # the paper's protocol by default
    explicit = "--backbone r3d_18 --width-multiplier 0.25 --size 48 --picture 0 --clips 3".split()
    retrieval = run(
        *evaluation("retrieval", eval_store, "random", tmp_path / "r", *explicit, "--cache-dir", cache, *common)
    )
    assert retrieval.returncode == 0, retrieval.stderr
    report = json.loads((tmp_path / "r" / "retrieval.json").read_text())
    assert _model_and_clip(report) == (("r3d_18", 0.25, 0), (2, 48))  # the config's clip stride, the given side
    assert len(list(cache.glob("*.npz"))) == 2 and not (tmp_path / "r" / "features").exists()
    assert report["settings"]["clips_per_video"] == 3
    # The same network at 10 clips is other features: its own cache entries, not the 3-clip ones.
    ten = run(
        *evaluation("retrieval", eval_store, "random", tmp_path / "r10", *explicit[:-2], "--cache-dir", cache, *common)
    )
    assert ten.returncode == 0, ten.stderr
    assert json.loads((tmp_path / "r10" / "retrieval.json").read_text())["counts"]["features_from_cache"] == 0
    assert len(list(cache.glob("*.npz"))) == 4

    from comode.cli.evaluate import _feature_options

    defaults = dict(config=None, backbone=None, width_multiplier=None, seed=0, size=None, cache_dir=None)
    options = _feature_options(**defaults, batch_videos=5, workers=1, device="cpu", progress=False)
    assert (options.videos_per_batch, options.workers, options.device, options.show_progress) == (5, 1, "cpu", False)
