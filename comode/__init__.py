"""comode: self-supervised video representation learning by context and motion decoupling.

Huang et al., "Self-supervised Video Representation Learning by Context and Motion
Decoupling", CVPR 2021 (arXiv 2104.00862).  Stages: ``comode.extract`` (videos -> store),
``comode.store`` (the Zarr store contract), ``comode.train`` (pretraining) and
``comode.evaluate`` (retrieval, finetuning, linear probe).
"""

__version__ = "0.1.0"
