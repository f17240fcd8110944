"""`evaluate retrieval | linear | finetune | compare | leakage | ablation` (also `comode evaluate ...`).

Options that several commands share are declared once below: ``Annotated`` aliases, and
``_FEATURE_OPTIONS``, which reach retrieval and the linear probe as one FeatureOptions; their
defaults are the evaluation code's (FeatureChoices, ModelConfig).  Where an evaluation writes
is :mod:`comode.evaluate.options`' call.  The commands import the evaluation code in their
bodies: it imports torch, the modules imported here do not, so `--help` starts fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

from comode import logs
from comode.cli.common import (
    OVERRIDES_HELP,
    OVERWRITE_OPTION,
    ProgressOption,
    console,
    evaluate_app,
    fail,
    int_list,
    option_parameter,
    out_console,
    user_errors,
    with_options,
)
from comode.evaluate.choices import FeatureChoices
from comode.models.config import ModelConfig

__all__ = [
    "evaluate_retrieval",
    "evaluate_linear",
    "evaluate_finetune",
    "evaluate_compare",
    "evaluate_leakage",
    "evaluate_ablation",
]

_SPLIT = "1"  # the papers' split 1, every evaluation's default
# Where the command line departs from the library's defaults (FeatureChoices: no worker
# process, no progress bar): it decodes clips in 2 worker processes and shows progress.
_WORKERS, _PROGRESS = 2, True
_CHECKPOINT_HELP = "Training checkpoint (runs/X/last.pt) or exported .safetensors; 'random' = random init (with --backbone, --width-multiplier, --seed)."

# Options of several commands (and below them, those that choose the features).
StoreOption = Annotated[str, typer.Option(help="Labelled store (UCF101 / HMDB51 / folder) with a train/test split.")]
CheckpointOption = Annotated[str, typer.Option(help=_CHECKPOINT_HELP)]
EvalOutOption = Annotated[
    Optional[Path],
    typer.Option(
        help="Output folder (default: <checkpoint folder>/eval/<checkpoint stem>/<store name>[-<label set>]; random init: runs/random-<backbone>-x<width>-seed<seed>/eval/<store name>)."
    ),
]
ProbeSplitOption = Annotated[
    str,
    typer.Option(
        help="Store split: fit on its train videos, score its test videos (Kinetics: 1 scores the validation set, 'test' the test CSV)."
    ),
]
ClipsOption = Annotated[
    int,
    typer.Option(
        min=1,
        help="Test clips per video, spread evenly over it; its feature is their mean (the paper's protocol: 10; fewer is proportionally faster).",
    ),
]
DeviceOption = Annotated[Optional[str], typer.Option(help="cuda / cpu (default: cuda when present).")]

_FEATURE_OPTIONS = [  # of retrieval and the linear probe, in --help order
    option_parameter(
        "backbone",
        Optional[str],
        None,
        f"Backbone of a random init (default: --config's, else {ModelConfig.backbone}; ignored for a checkpoint).",
    ),
    option_parameter(
        "width_multiplier",
        Optional[float],
        None,
        f"Width of a random init (default: --config's, else {ModelConfig.width_multiplier}; ignored for a checkpoint).",
    ),
    option_parameter("seed", int, FeatureChoices.seed, "Seed of a random init."),
    option_parameter(
        "config",
        Optional[Path],
        None,
        "Pretraining config a random init is the floor of: its backbone, width and training clip (frames, stride, size), e.g. configs/pretrain/demo_cpu.yaml (ignored for a checkpoint, which brings its own).",
    ),
    option_parameter(
        "cache_dir",
        Optional[Path],
        FeatureChoices.cache_dir,
        "Feature cache (default: <out>/features, shared by retrieval and the linear probe).",
    ),
    option_parameter(
        "size",
        Optional[int],
        FeatureChoices.size,
        "Clip side after the centre crop (default: the training clip's; 112 for a random init without --config).",
    ),
    option_parameter("clips", ClipsOption, FeatureChoices.clips),
    option_parameter(
        "batch_videos", int, FeatureChoices.videos_per_batch, "Videos per forward pass (x --clips clips)."
    ),
    option_parameter("workers", int, _WORKERS, "DataLoader processes decoding clips (0: in this process)."),
    option_parameter("device", DeviceOption, FeatureChoices.device),
    option_parameter(
        "feature",
        str,
        FeatureChoices.feature,
        "A two-pathway network's feature: both (each pathway L2-normalised, side by side), rgb or diff (one pathway alone). One-pathway networks: their feature, whatever the value.",
    ),
    option_parameter("progress", ProgressOption, _PROGRESS),
]


def _feature_options(*, config: Optional[Path], batch_videos: int, progress: bool, **choices):
    """The FeatureOptions of ``_FEATURE_OPTIONS`` (the others by FeatureChoices' names): a random
    init's backbone, width and clip are the explicit options', else --config's, else the paper's."""
    from comode.evaluate.options import FeatureOptions, check_device
    from comode.train.config import ConfigError, load_config

    with user_errors(ValueError):
        check_device(choices.get("device"))
    with user_errors(ConfigError):
        pretraining = None if config is None else load_config(config)
    return FeatureOptions.random_init_of(pretraining, videos_per_batch=batch_videos, show_progress=progress, **choices)


_with_feature_options = with_options("features", _FEATURE_OPTIONS, _feature_options)


def _print_report(report: dict, path: Path) -> None:
    from comode.evaluate.report import report_table

    out_console.print(report_table(report))
    failed = report.get("counts", {}).get("failed", 0)
    if failed:
        console.print(
            f"[yellow]{failed} videos could not be read and were not evaluated[/yellow]: "
            + ", ".join(list(report.get("failed", {}))[:10])
        )
    out_console.print(f"report {path}")


@evaluate_app.command("retrieval")
@_with_feature_options
def evaluate_retrieval(
    features,  # FeatureOptions, of _FEATURE_OPTIONS
    store: StoreOption,
    checkpoint: CheckpointOption,
    split: str = typer.Option(
        _SPLIT,
        help="Store split: its test videos query its train videos (papers: split 1; Kinetics: 1 tests on the validation set, 'test' on the test CSV).",
    ),
    label_set: Optional[str] = typer.Option(
        None,
        help="Judge hits by one of the store's extra label sets (e.g. scene of the sample set) instead of its primary labels.",
    ),
    out: EvalOutOption = None,
    center: bool = typer.Option(
        False, help="Subtract the gallery mean before cosine similarity (moves R@1 by points; recorded in the report)."
    ),
    normalize: bool = typer.Option(
        True, help="Cosine similarity (L2-normalised features); --no-normalize: dot product."
    ),
    other_than: Optional[str] = typer.Option(
        None,
        help="A label set (e.g. scene): each query searches only gallery videos with another label there (scene-disjoint retrieval).",
    ),
    picture: int = typer.Option(4, help="Queries shown in retrieval.png (0: no picture)."),
) -> None:
    """Video retrieval: test videos query train videos by cosine similarity of their features (mean over --clips test clips, 10 by default); R@1/5/10/20."""
    from comode.evaluate.options import EVALUATE_LOG, features_output_folder
    from comode.evaluate.retrieval import run_retrieval
    from comode.train.checkpoint import CheckpointError

    out_dir = features_output_folder(out, checkpoint, store, features, label_set)
    with user_errors(CheckpointError, ValueError, KeyError), logs.to_file(out_dir / EVALUATE_LOG):
        result = run_retrieval(
            store,
            checkpoint,
            out_dir=out_dir,
            split=split,
            label_set=label_set,
            center=center,
            normalize=normalize,
            features=features,
            picture_queries=picture,
            other_than=other_than,
        )
    _print_report(result.report, result.report_path)
    if result.picture_path is not None:
        out_console.print(f"picture {result.picture_path}")


@evaluate_app.command("linear")
@_with_feature_options
def evaluate_linear(
    features,  # FeatureOptions, of _FEATURE_OPTIONS
    store: StoreOption,
    checkpoint: CheckpointOption,
    split: ProbeSplitOption = _SPLIT,
    label_set: Optional[str] = typer.Option(
        None,
        help="Classify one of the store's extra label sets (e.g. scene of the sample set) instead of its primary labels.",
    ),
    out: EvalOutOption = None,
    l2: float = typer.Option(1e-3, help="L2 penalty of the logistic regression."),
) -> None:
    """Linear probe: logistic regression on frozen features (mean over --clips test clips, 10 by default); test top-1/top-5."""
    from comode.evaluate.linear import LinearProbeSpec, run_linear
    from comode.evaluate.options import EVALUATE_LOG, features_output_folder
    from comode.train.checkpoint import CheckpointError

    spec = LinearProbeSpec(l2=l2)
    out_dir = features_output_folder(out, checkpoint, store, features, label_set)
    with user_errors(CheckpointError, ValueError, KeyError), logs.to_file(out_dir / EVALUATE_LOG):
        result = run_linear(
            store, checkpoint, out_dir=out_dir, split=split, label_set=label_set, spec=spec, features=features
        )
    _print_report(result.report, result.report_path)


@evaluate_app.command("finetune")
def evaluate_finetune(
    store: StoreOption,
    checkpoint: str = typer.Option(..., help=_CHECKPOINT_HELP + " 'random' trains from scratch (Table 2 baseline)."),
    config: Optional[Path] = typer.Option(
        None, help="YAML config, e.g. configs/evaluate/finetune_ucf101.yaml (default: UCF101 settings)."
    ),
    out: Optional[Path] = typer.Option(
        None,
        help="Run folder: config.yaml, last.pt, metrics.jsonl, finetune.json (default: <checkpoint folder>/finetune/<checkpoint stem>/<store name>).",
    ),
    resume: bool = typer.Option(False, help="Continue the run in --out from its last.pt."),
    overwrite: bool = OVERWRITE_OPTION,
    backbone: str = typer.Option(
        ModelConfig.backbone, help="Backbone when training from scratch (ignored for a checkpoint)."
    ),
    width_multiplier: float = typer.Option(
        ModelConfig.width_multiplier, help="Width when training from scratch (ignored for a checkpoint)."
    ),
    device: DeviceOption = None,
    progress: ProgressOption = _PROGRESS,
    overrides: Optional[List[str]] = typer.Argument(
        None, help="Config overrides key=value, e.g. epochs=10 batch_size=16."
    ),
) -> None:
    """Supervised finetuning of the V-Network (paper Sec. 4.1), 10-clip test, top-1/top-5."""
    from comode.evaluate.finetune import load_finetune_config, run_finetune
    from comode.evaluate.options import EVALUATE_LOG, check_device, output_folder
    from comode.train.checkpoint import CheckpointError
    from comode.train.config import ConfigError
    from comode.train.runlock import hold_run_folder

    with user_errors(ValueError):
        check_device(device)
    with user_errors(ConfigError):
        settings = load_finetune_config(config, overrides or [])
    network = dict(backbone=backbone, width_multiplier=width_multiplier, seed=settings.seed)
    out_dir = output_folder(out, checkpoint, store, kind="finetune", **network)
    if resume and config is None and (out_dir / "config.yaml").exists():
        # --resume without --config continues with the run's own config, to the end unless told otherwise.
        with user_errors(ConfigError):
            settings = load_finetune_config(out_dir / "config.yaml", ["stop_after_epoch=null", *(overrides or [])])
    with (
        user_errors(CheckpointError, ConfigError, FileExistsError, ValueError, KeyError),
        # before the log is written there (run_finetune holds it too: the same thread may)
        hold_run_folder(out_dir, resume=resume, overwrite=overwrite),
        logs.to_file(out_dir / EVALUATE_LOG),
    ):
        result = run_finetune(
            settings,
            store=store,
            checkpoint=checkpoint,
            out_dir=out_dir,
            resume=resume,
            overwrite=overwrite,
            backbone=backbone,
            width_multiplier=width_multiplier,
            device=device,
            show_progress=progress,
        )
    _print_report(result.report, result.report_path)
    if not result.finished:
        out_console.print(
            f"stopped after epoch {result.epochs_completed} of {settings.epochs} (no test yet); "
            f"continue with: evaluate finetune --store {store} --checkpoint {checkpoint} --out {out_dir} --resume"
        )


@evaluate_app.command("compare")
def evaluate_compare(
    runs: List[Path] = typer.Argument(
        ...,
        help="Reports (x/retrieval.json), evaluation folders, or reference files (YAML/JSON with name and metrics).",
    ),
    out: Optional[Path] = typer.Option(None, help="Also write the table as text to this file."),
) -> None:
    """Put several evaluations side by side (e.g. random init vs pretrained vs the paper's numbers)."""
    from comode.evaluate.report import compare_table, load_report, render_text

    with user_errors(ValueError):
        reports = [load_report(path) for path in runs]
    table = compare_table(reports)
    out_console.print(table)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(render_text(table, width=200))
        out_console.print(f"wrote {out}")


@evaluate_app.command("leakage")
def evaluate_leakage(
    store: str = typer.Option(..., help="Labelled store with a motion and a scene label set (e.g. the sample set)."),
    split: ProbeSplitOption = _SPLIT,
    motion: str = typer.Option("motion", help="The motion label set."),
    scene: str = typer.Option("scene", help="The scene label set."),
) -> None:
    """Leakage probes: a still I-frame must be at chance on motion labels, and motion-vector statistics at chance on scene labels."""
    from comode.evaluate.leakage import format_probes, run_leakage_probes

    with user_errors(ValueError):
        results = run_leakage_probes(store, split=split, motion=motion, scene=scene)
    out_console.print(format_probes(results))
    if any(not r.should_leak and r.verdict != "at chance" for r in results):
        console.print("[yellow]a label set can be read off a signal that should not carry it[/yellow]")
        raise typer.Exit(1)


@evaluate_app.command("ablation")
def evaluate_ablation(
    store: str = typer.Option(
        ..., help="Labelled store with a train/test split, e.g. the sample set (label sets motion and scene)."
    ),
    out: Path = typer.Option(
        Path("runs/ablation"), help="Folder of the runs, their retrieval reports and ablation.json / ablation.md."
    ),
    config: Path = typer.Option(
        ...,
        help="Pretraining config shared by every variant, e.g. configs/pretrain/demo_cpu.yaml "
        "(the CPU demo; the variants switch its departures from the paper back one by one).",
    ),
    seeds: str = typer.Option("0,1,2", help="Seeds of every pretrained variant."),
    floor_seeds: Optional[str] = typer.Option(None, help="Seeds of the random-init floor (default: --seeds)."),
    variants: Optional[str] = typer.Option(
        None, help="Comma-separated variant names (default: all; `--list` shows them)."
    ),
    list_variants: bool = typer.Option(
        False, "--list", help="Print the variants of the config (name: overrides) and exit."
    ),
    split: str = typer.Option(_SPLIT, help="Store split: pretrain on its train videos, retrieve its test videos."),
    workers: int = typer.Option(_WORKERS, help="DataLoader processes of the retrieval feature extraction."),
    clips: ClipsOption = FeatureChoices.clips,
    progress: bool = typer.Option(_PROGRESS, help="Show progress bars of the pretraining runs."),
    overrides: Optional[List[str]] = typer.Argument(None, help=OVERRIDES_HELP + " Applied to every variant."),
) -> None:
    """Paper Tables 1/3/4/7 in miniature, and our departures from the paper: pretrain each variant x seed,
    R@1 and linear probe per label set, pretext accuracies beside their blind levels, and what the table decides."""
    from comode.evaluate.ablation import run_ablation, summarise, variants_for
    from comode.train.checkpoint import CheckpointError
    from comode.train.config import ConfigError, load_config

    base_overrides = [f"data.split={split!r}", "data.subset=train", *(overrides or [])]
    with user_errors(ConfigError):
        known = variants_for(load_config(config, base_overrides))
    if list_variants:
        for name, variant in known.items():
            what = "no pretraining (the floor)" if variant is None else " ".join(variant) or "the base config"
            out_console.print(f"{name}: {what}")
        return
    names = [n.strip() for n in variants.split(",")] if variants else None
    if names is not None and (unknown := [n for n in names if n not in known]):
        raise fail(f"unknown variant(s) {unknown}; known: {list(known)}")

    def report(cell) -> None:
        recalls = [f"R@1 {k} {100 * v:.1f}" for k, v in cell.recall_at_1.items()]
        recalls += [f"linear {k} {100 * v:.1f}" for k, v in cell.linear_top1.items()]
        console.print(f"{cell.variant}, seed {cell.seed}: {', '.join(recalls)}")

    with user_errors(ConfigError, CheckpointError, FileExistsError, ValueError), logs.to_file(out / "ablation.log"):
        cells = run_ablation(
            store,
            out_dir=out,
            config=config,
            base_overrides=base_overrides,
            seeds=int_list(seeds, "--seeds"),
            floor_seeds=int_list(floor_seeds, "--floor-seeds") if floor_seeds else None,
            variants=names,
            split=split,
            workers=workers,
            clips=clips,
            show_progress=progress,
            on_cell=report,
        )
    table, decisions = summarise(cells)
    out_console.print(table)
    out_console.print(
        "R@1 and linear-probe top-1 in %, mean ± std over seeds; pretext accuracies (and loss_motion) "
        "over the last quarter of each run, each with its blind level: what a predictor that ignores "
        "its input scores on the same candidates."
    )
    out_console.print(decisions)
    out_console.print(f"Wrote {out / 'ablation.json'} and {out / 'ablation.md'}")
