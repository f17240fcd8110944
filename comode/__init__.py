"""comode: self-supervised video representation learning by context and motion decoupling.

Huang et al., "Self-supervised Video Representation Learning by Context and Motion
Decoupling", CVPR 2021 (arXiv 2104.00862).  Stages: ``comode.extract`` (videos -> store),
``comode.store`` (the Zarr store contract), ``comode.train`` (pretraining) and
``comode.evaluate`` (retrieval, finetuning, linear probe).
"""

from comode.version import __version__

__all__ = ["__version__", "load_backbone"]


def __getattr__(name: str):
    """``comode.load_backbone(path)``, imported lazily so that ``import comode`` stays light."""
    if name == "load_backbone":
        from comode.train.export import load_backbone

        return load_backbone
    raise AttributeError(f"module 'comode' has no attribute {name!r}")
