"""`evaluate retrieval | linear | finetune | compare | leakage | ablation` (also `comode evaluate ...`)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from comode import logs
from comode.cli.common import (
    OVERRIDES_HELP,
    OVERWRITE_OPTION,
    console,
    evaluate_app,
    fail,
    int_list,
    out_console,
    user_errors,
)

__all__ = [
    "evaluate_retrieval",
    "evaluate_linear",
    "evaluate_finetune",
    "evaluate_compare",
    "evaluate_leakage",
    "evaluate_ablation",
    "EVALUATE_LOG",
]

EVALUATE_LOG = "evaluate.log"  # in every evaluation's output folder, beside its report
_CHECKPOINT_HELP = (
    "Training checkpoint (runs/X/last.pt) or exported .safetensors; 'random' = random init "
    "(with --backbone, --width-multiplier, --seed)."
)


def _feature_options(
    config: Optional[Path],
    backbone: Optional[str],
    width_multiplier: Optional[float],
    seed: int,
    size: Optional[int],
    cache_dir: Optional[Path],
    batch_videos: int,
    workers: int,
    device: Optional[str],
    progress: bool,
    feature: str = "both",
):
    """The FeatureOptions of retrieval and the linear probe from their shared command-line options.

    A random init's backbone, width and clip: the explicit options, else the pretraining
    config's (``--config``), else the paper's r3d_26 at full width on 16 x 4 frames of 112 px.
    """
    from comode.evaluate.options import FeatureOptions
    from comode.evaluate.source import ClipGeometry
    from comode.train.config import ConfigError, load_config

    _check_device(device)
    geometry = None
    if config is not None:
        with user_errors(ConfigError):
            settings = load_config(config)
        backbone = backbone or settings.model.backbone
        width_multiplier = settings.model.width_multiplier if width_multiplier is None else width_multiplier
        geometry = ClipGeometry.of_config(settings.data)
    return FeatureOptions(
        backbone=backbone or "r3d_26",
        width_multiplier=1.0 if width_multiplier is None else width_multiplier,
        seed=seed,
        geometry=geometry,
        size=size,
        cache_dir=cache_dir,
        videos_per_batch=batch_videos,
        workers=workers,
        device=device,
        show_progress=progress,
        feature=feature,
    )


def _features_out(out: Optional[Path], checkpoint: str, store: str, features, label_set: Optional[str]) -> Path:
    """:func:`_eval_out` of an evaluation of ``features`` (a random init is named by its network)."""
    random_init = dict(backbone=features.backbone, width_multiplier=features.width_multiplier, seed=features.seed)
    # One folder per pathway view too: reports of --feature rgb and of both never overwrite each other.
    view = None if features.feature == "both" else f"{features.feature}-feature"
    suffix = "-".join(part for part in (label_set, view) if part) or None
    return _eval_out(out, checkpoint, store, label_set=suffix, **random_init)


def _eval_out(
    out: Optional[Path],
    checkpoint: str,
    store: str,
    *,
    backbone: str,
    width_multiplier: float,
    seed: int,
    kind: str = "eval",
    label_set: Optional[str] = None,
) -> Path:
    """Default output folder: <checkpoint folder>/<kind>/<checkpoint stem>/<store name>[-<label set>]
    (so epoch_010.pt and last.pt of one run keep separate reports), or runs/random-.../<kind>/<store name>."""
    from comode.evaluate.source import names_random_init

    if out is not None:
        return out
    store_name = Path(store.rstrip("/")).stem or "store"
    if names_random_init(checkpoint):
        base = Path("runs") / f"random-{backbone}-x{width_multiplier:g}-seed{seed}" / kind
    else:
        base = Path(checkpoint).parent / kind / Path(checkpoint).stem
    return base / (f"{store_name}-{label_set}" if label_set else store_name)


def _check_device(device: Optional[str]) -> None:
    if device is None:
        return
    import torch

    try:
        torch.device(device)
    except RuntimeError:
        raise fail(f"--device {device!r} is not a torch device (cuda, cuda:1, cpu)") from None
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise fail(f"--device {device}: CUDA is not available on this machine (use --device cpu)")


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


# Options shared by the evaluation commands (one definition, one help text).
_EVAL_OUT_OPTION = typer.Option(
    None,
    help="Output folder (default: <checkpoint folder>/eval/<checkpoint stem>/<store name>[-<label set>]; "
    "random init: runs/random-<backbone>-x<width>-seed<seed>/eval/<store name>).",
)
_RANDOM_BACKBONE_OPTION = typer.Option(
    None, help="Backbone of a random init (default: --config's, else r3d_26; ignored for a checkpoint)."
)
_RANDOM_WIDTH_OPTION = typer.Option(
    None, help="Width of a random init (default: --config's, else 1.0; ignored for a checkpoint)."
)
_RANDOM_SEED_OPTION = typer.Option(0, help="Seed of a random init.")
_RANDOM_CONFIG_OPTION = typer.Option(
    None,
    help="Pretraining config a random init is the floor of: its backbone, width and training clip "
    "(frames, stride, size), e.g. configs/pretrain/demo_cpu.yaml (ignored for a checkpoint, which brings its own).",
)
_CLIP_SIZE_OPTION = typer.Option(
    None, help="Clip side after the centre crop (default: the training clip's; 112 for a random init without --config)."
)
_BATCH_VIDEOS_OPTION = typer.Option(8, help="Videos per forward pass (x --clips clips).")
_CLIPS_OPTION = typer.Option(
    10,
    min=1,
    help="Test clips per video, spread evenly over it; its feature is their mean (the paper's protocol: 10; "
    "fewer is proportionally faster).",
)
_EVAL_WORKERS_OPTION = typer.Option(2, help="DataLoader processes decoding clips (0: in this process).")
_DEVICE_OPTION = typer.Option(None, help="cuda / cpu (default: cuda when present).")
_FEATURE_OPTION = typer.Option(
    "both",
    help="A two-pathway network's feature: both (each pathway L2-normalised, side by side), rgb or diff "
    "(one pathway alone). One-pathway networks: their feature, whatever the value.",
)


@evaluate_app.command("retrieval")
def evaluate_retrieval(
    store: str = typer.Option(..., help="Labelled store (UCF101 / HMDB51 / folder) with a train/test split."),
    checkpoint: str = typer.Option(..., help=_CHECKPOINT_HELP),
    split: str = typer.Option(
        "1",
        help="Store split: its test videos query its train videos (papers: split 1; Kinetics: 1 tests on the "
        "validation set, 'test' on the test CSV).",
    ),
    label_set: Optional[str] = typer.Option(
        None,
        help="Judge hits by one of the store's extra label sets (e.g. scene of the sample set) instead of its primary labels.",
    ),
    out: Optional[Path] = _EVAL_OUT_OPTION,
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
    backbone: Optional[str] = _RANDOM_BACKBONE_OPTION,
    width_multiplier: Optional[float] = _RANDOM_WIDTH_OPTION,
    seed: int = _RANDOM_SEED_OPTION,
    config: Optional[Path] = _RANDOM_CONFIG_OPTION,
    cache_dir: Optional[Path] = typer.Option(None, help="Feature cache (default: <out>/features)."),
    size: Optional[int] = _CLIP_SIZE_OPTION,
    clips: int = _CLIPS_OPTION,
    batch_videos: int = _BATCH_VIDEOS_OPTION,
    workers: int = _EVAL_WORKERS_OPTION,
    device: Optional[str] = _DEVICE_OPTION,
    picture: int = typer.Option(4, help="Queries shown in retrieval.png (0: no picture)."),
    feature: str = _FEATURE_OPTION,
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Video retrieval: test videos query train videos by cosine similarity of their features (mean over --clips test clips, 10 by default); R@1/5/10/20."""
    from comode.evaluate.retrieval import run_retrieval
    from comode.train.checkpoint import CheckpointError

    features = _feature_options(
        config, backbone, width_multiplier, seed, size, cache_dir, batch_videos, workers, device, progress, feature
    ).with_clips(clips)
    out_dir = _features_out(out, checkpoint, store, features, label_set)
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
def evaluate_linear(
    store: str = typer.Option(..., help="Labelled store with a train/test split."),
    checkpoint: str = typer.Option(..., help=_CHECKPOINT_HELP),
    split: str = typer.Option(
        "1",
        help="Store split: fit on its train videos, score its test videos (Kinetics: 1 scores the validation set, "
        "'test' the test CSV).",
    ),
    label_set: Optional[str] = typer.Option(
        None,
        help="Classify one of the store's extra label sets (e.g. scene of the sample set) instead of its primary labels.",
    ),
    out: Optional[Path] = _EVAL_OUT_OPTION,
    l2: float = typer.Option(1e-3, help="L2 penalty of the logistic regression."),
    backbone: Optional[str] = _RANDOM_BACKBONE_OPTION,
    width_multiplier: Optional[float] = _RANDOM_WIDTH_OPTION,
    seed: int = _RANDOM_SEED_OPTION,
    config: Optional[Path] = _RANDOM_CONFIG_OPTION,
    cache_dir: Optional[Path] = typer.Option(
        None, help="Feature cache (default: <out>/features, shared with retrieval)."
    ),
    size: Optional[int] = _CLIP_SIZE_OPTION,
    clips: int = _CLIPS_OPTION,
    batch_videos: int = _BATCH_VIDEOS_OPTION,
    workers: int = _EVAL_WORKERS_OPTION,
    device: Optional[str] = _DEVICE_OPTION,
    feature: str = _FEATURE_OPTION,
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Linear probe: logistic regression on frozen features (mean over --clips test clips, 10 by default); test top-1/top-5."""
    from comode.evaluate.linear import LinearProbeSpec, run_linear
    from comode.train.checkpoint import CheckpointError

    spec = LinearProbeSpec(l2=l2)
    features = _feature_options(
        config, backbone, width_multiplier, seed, size, cache_dir, batch_videos, workers, device, progress, feature
    ).with_clips(clips)
    out_dir = _features_out(out, checkpoint, store, features, label_set)
    with user_errors(CheckpointError, ValueError, KeyError), logs.to_file(out_dir / EVALUATE_LOG):
        result = run_linear(
            store, checkpoint, out_dir=out_dir, split=split, label_set=label_set, spec=spec, features=features
        )
    _print_report(result.report, result.report_path)


@evaluate_app.command("finetune")
def evaluate_finetune(
    store: str = typer.Option(..., help="Labelled store (UCF101 / HMDB51 / folder) with a train/test split."),
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
    backbone: str = typer.Option("r3d_26", help="Backbone when training from scratch (ignored for a checkpoint)."),
    width_multiplier: float = typer.Option(1.0, help="Width when training from scratch (ignored for a checkpoint)."),
    device: Optional[str] = _DEVICE_OPTION,
    progress: bool = typer.Option(True, help="Show a progress bar."),
    overrides: Optional[List[str]] = typer.Argument(
        None, help="Config overrides key=value, e.g. epochs=10 batch_size=16."
    ),
) -> None:
    """Supervised finetuning of the V-Network (paper Sec. 4.1), 10-clip test, top-1/top-5."""
    from comode.evaluate.finetune import load_finetune_config, run_finetune
    from comode.train.checkpoint import CheckpointError
    from comode.train.config import ConfigError
    from comode.train.runlock import hold_run_folder

    _check_device(device)
    with user_errors(ConfigError):
        settings = load_finetune_config(config, overrides or [])
    random_init = dict(backbone=backbone, width_multiplier=width_multiplier, seed=settings.seed)
    out_dir = _eval_out(out, checkpoint, store, kind="finetune", **random_init)
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
    split: str = typer.Option(
        "1",
        help="Store split: fit on its train videos, score its test videos (Kinetics: 1 scores the validation set, "
        "'test' the test CSV).",
    ),
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
    split: str = typer.Option("1", help="Store split: pretrain on its train videos, retrieve its test videos."),
    workers: int = typer.Option(2, help="DataLoader processes of the retrieval feature extraction."),
    clips: int = _CLIPS_OPTION,
    progress: bool = typer.Option(True, help="Show progress bars of the pretraining runs."),
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
        for name, variant_overrides in known.items():
            out_console.print(
                f"{name}: "
                + (
                    "no pretraining (the floor)"
                    if variant_overrides is None
                    else " ".join(variant_overrides) or "the base config"
                )
            )
        return
    names = [n.strip() for n in variants.split(",")] if variants else None
    if names is not None and (unknown := [n for n in names if n not in known]):
        raise fail(f"unknown variant(s) {unknown}; known: {list(known)}")

    def report(cell) -> None:
        recalls = ", ".join(
            [
                *(f"R@1 {k} {100 * v:.1f}" for k, v in cell.recall_at_1.items()),
                *(f"linear {k} {100 * v:.1f}" for k, v in cell.linear_top1.items()),
            ]
        )
        console.print(f"{cell.variant}, seed {cell.seed}: {recalls}")

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
