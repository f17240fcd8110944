"""Independent random streams derived from the one config seed.

Every random draw of a run comes from a generator seeded by :func:`derive_seed` of the
config's seed, a stream number and the position in the run (epoch, step, rank), never from
a running random state: so a run killed after step k and resumed repeats the
uninterrupted one step for step.
"""

from __future__ import annotations

import numpy as np

__all__ = ["derive_seed", "STREAM_ORDER", "STREAM_AUGMENT", "STREAM_TORCH", "STREAM_LOADER"]

# The pretraining run's streams: data order, augmentation, torch's global RNG (dropout),
# loader worker seeds.
STREAM_ORDER, STREAM_AUGMENT, STREAM_TORCH, STREAM_LOADER = range(4)


def derive_seed(*parts: int) -> int:
    """A 63-bit seed that is a pure function of ``parts`` (e.g. seed, stream, step, rank)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] >> 1)
