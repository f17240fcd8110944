"""Nearest-neighbour video retrieval: test videos query the train videos, R@k.

Protocol (VCOP / CoCLR, the paper's Table 4): every test video of a split is a query,
every train video of the same split is the gallery; a query scores a hit at k if ANY of
its k most similar gallery videos has its class.  R@k is the fraction of queries with a
hit at k, reported for k = 1, 5, 10, 20.

Choices that move R@1 by points (all recorded in the report):

* ``normalize`` (default on): cosine similarity (L2-normalised features); off = raw dot
  product.
* ``center`` (default off): subtract the GALLERY mean from queries and gallery before
  normalising.  Centering removes the direction shared by all features of a network
  (large for random init and for features after ReLU + pooling, which are all positive)
  and often changes R@1 by several points; some published numbers use it, some not.
* ``split``: UCF101 / HMDB51 have 3 splits; papers report split 1.

Exact search: similarities are computed by matrix products in (query chunk) x (gallery
chunk) blocks and merged into a running top-k, so memory is O(chunk x (chunk + k)),
independent of gallery size squared.  Ties are broken by gallery order (the earlier
gallery video ranks first), which makes results deterministic.

Shape alphabet: N query videos, G gallery videos, D feature dimension.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from comode.evaluate.options import FeatureOptions, split_features
from comode.evaluate.picture import render_retrieval_picture
from comode.evaluate.report import write_report
from comode.store import open_store

__all__ = [
    "DEFAULT_KS",
    "RetrievalResult",
    "prepare_features",
    "top_k_neighbours",
    "recall_at_k",
    "retrieval_hits",
    "run_retrieval",
]

DEFAULT_KS = (1, 5, 10, 20)


def prepare_features(
    query: Tensor, gallery: Tensor, *, center: bool = False, normalize: bool = True
) -> tuple[Tensor, Tensor]:
    """Apply the protocol's feature transforms: optional gallery-mean centering, then L2 norm."""
    query, gallery = query.to(torch.float32), gallery.to(torch.float32)
    if center:
        mean = gallery.mean(dim=0, keepdim=True)
        query, gallery = query - mean, gallery - mean
    if normalize:
        query = torch.nn.functional.normalize(query, dim=1)
        gallery = torch.nn.functional.normalize(gallery, dim=1)
    return query, gallery


def top_k_neighbours(
    query: Tensor, gallery: Tensor, k: int, *, chunk: int = 1024, excluded: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """(N, k) similarities and gallery indices of each query's k most similar gallery rows.

    Similarity is the dot product of the given rows (prepare them first).  Blocks of
    ``chunk`` queries x ``chunk`` gallery rows; ties go to the lower gallery index.
    k is capped at G.  ``excluded``: optional (N, G) bool, gallery rows a query may not
    return (their similarity counts as -inf, so they rank last).
    """
    n, g = query.shape[0], gallery.shape[0]
    k = min(k, g)
    values_out = torch.empty(n, k, dtype=query.dtype)
    indices_out = torch.empty(n, k, dtype=torch.int64)
    for q0 in range(0, n, chunk):
        block = query[q0 : q0 + chunk]
        best_values = block.new_empty(block.shape[0], 0)
        best_indices = torch.empty(block.shape[0], 0, dtype=torch.int64, device=block.device)
        for g0 in range(0, g, chunk):
            similarity = block @ gallery[g0 : g0 + chunk].T  # (chunk, chunk)
            if excluded is not None:
                mask = excluded[q0 : q0 + chunk, g0 : g0 + chunk].to(similarity.device)
                similarity = similarity.masked_fill(mask, float("-inf"))
            index = torch.arange(g0, g0 + similarity.shape[1], device=block.device).expand_as(similarity)
            # Earlier candidates first, so a stable sort keeps lower gallery indices ahead on ties.
            values = torch.cat([best_values, similarity], dim=1)
            indices = torch.cat([best_indices, index], dim=1)
            order = torch.sort(values, dim=1, descending=True, stable=True).indices[:, :k]
            best_values, best_indices = values.gather(1, order), indices.gather(1, order)
        values_out[q0 : q0 + chunk], indices_out[q0 : q0 + chunk] = best_values.cpu(), best_indices.cpu()
    return values_out, indices_out


def recall_at_k(
    query_feats: np.ndarray | Tensor,
    query_labels: Sequence[int],
    gallery_feats: np.ndarray | Tensor,
    gallery_labels: Sequence[int],
    ks: Sequence[int] = DEFAULT_KS,
    *,
    center: bool = False,
    normalize: bool = True,
    chunk: int = 1024,
) -> dict[int, float]:
    """{k: R@k}: the fraction of queries with a same-class video among their k nearest.

    Args:
        query_feats: (N, D); gallery_feats: (G, D).
        query_labels: (N,); gallery_labels: (G,) class labels.
        ks: the k values (a k above G counts the whole gallery).
        center, normalize: see the module docstring.
        chunk: rows per block of the chunked similarity search.
    """
    hits = retrieval_hits(
        query_feats,
        query_labels,
        gallery_feats,
        gallery_labels,
        max(ks),
        center=center,
        normalize=normalize,
        chunk=chunk,
    )
    return recalls_from_hits(hits, ks)


def recalls_from_hits(hits: Tensor, ks: Sequence[int]) -> dict[int, float]:
    """{k: R@k} from (N, k_max) bool hits: the share of queries with a hit among their first k."""
    return {int(k): int(hits[:, :k].any(dim=1).sum()) / len(hits) if len(hits) else 0.0 for k in ks}


def retrieval_hits(
    query_feats,
    query_labels,
    gallery_feats,
    gallery_labels,
    k: int,
    *,
    center: bool = False,
    normalize: bool = True,
    chunk: int = 1024,
    return_indices: bool = False,
    excluded: np.ndarray | Tensor | None = None,
):
    """(N, k) bool: whether the j-th neighbour of each query has its class (and the indices).

    ``excluded``: optional (N, G) bool, gallery videos a query may not return; if fewer
    than k remain, the excluded ones fill the tail of the ranking and never count as hits."""
    query, gallery = prepare_features(
        torch.as_tensor(np.asarray(query_feats)),
        torch.as_tensor(np.asarray(gallery_feats)),
        center=center,
        normalize=normalize,
    )
    mask = None if excluded is None else torch.as_tensor(np.asarray(excluded, dtype=bool))
    _, indices = top_k_neighbours(query, gallery, k, chunk=chunk, excluded=mask)
    gallery_labels = torch.as_tensor(np.asarray(gallery_labels, dtype=np.int64))
    query_labels = torch.as_tensor(np.asarray(query_labels, dtype=np.int64))
    hits = gallery_labels[indices] == query_labels[:, None]
    if mask is not None:
        hits &= ~mask.gather(1, indices)
    return (hits, indices) if return_indices else hits


def _same_label(store_url: str, query_ids: Sequence[str], gallery_ids: Sequence[str], label_set: str) -> np.ndarray:
    """(N, G) bool: gallery video g has query n's label in ``label_set`` (or either has none)."""

    store = open_store(store_url).snapshot()  # one listing for both sides
    query, gallery = (np.array(store.labels(ids, label_set)) for ids in (query_ids, gallery_ids))
    return (query[:, None] == gallery[None, :]) | (query[:, None] < 0) | (gallery[None, :] < 0)


# --------------------------------------------------------------------------------------
# The whole evaluation: store + model -> report
# --------------------------------------------------------------------------------------


@dataclass
class RetrievalResult:
    report: dict[str, Any]
    report_path: Path
    picture_path: Path | None


def run_retrieval(
    store_url: str,
    checkpoint: str | Path | None,
    *,
    out_dir: str | Path,
    split: str = "1",
    center: bool = False,
    normalize: bool = True,
    ks: Sequence[int] = DEFAULT_KS,
    features: FeatureOptions = FeatureOptions(),
    picture_queries: int = 4,
    chunk: int = 1024,
    label_set: str | None = None,
    other_than: str | None = None,
) -> RetrievalResult:
    """Evaluate retrieval and write ``out_dir/retrieval.json``, ``.txt`` and ``.png``.

    ``checkpoint``: a training checkpoint or exported backbone, or "random" (its network
    given by ``features``: see :class:`comode.evaluate.options.FeatureOptions`, which also
    sets the clip side, the feature cache and the device).  ``label_set``: a hit means the
    same class in this extra label set of the store (e.g. "scene" of the sample set) instead
    of the primary labels.  ``other_than``: a label set (e.g. "scene"); each query then
    searches only the gallery videos whose label in that set differs from its own
    (scene-disjoint retrieval: the nearest neighbour cannot be a clip of the same scene, so
    appearance cannot carry a motion hit).
    Returns the report (also written as JSON).

    Raises:
        ValueError: unknown split, empty query or gallery side, bad checkpoint.
    """

    out_dir = Path(out_dir)
    data = split_features(
        store_url,
        checkpoint,
        features,
        split=split,
        out_dir=out_dir,
        label_set=label_set,
        needed_by="retrieval (test videos query train videos)",
    )
    train, test = data.train, data.test
    k_max = max(ks)
    excluded = None
    if other_than is not None:
        excluded = _same_label(store_url, test.video_ids, train.video_ids, other_than)
    hits, neighbours = retrieval_hits(
        test.features,
        test.labels,
        train.features,
        train.labels,
        k_max,
        center=center,
        normalize=normalize,
        chunk=chunk,
        return_indices=True,
        excluded=excluded,
    )
    recalls = {f"R@{k}": recall for k, recall in recalls_from_hits(hits, ks).items()}
    settings = {
        "split": split,
        "label_set": label_set,
        "other_than": other_than,
        "queries": "test",
        "gallery": "train",
        "similarity": "cosine" if normalize else "dot",
        "center": center,
        "normalize": normalize,
        "ks": list(ks),
        **data.protocol,
    }
    counts = {"queries": test.count, "gallery": train.count, **data.counts}
    report = write_report(
        out_dir, "retrieval", settings=settings, metrics=recalls, counts=counts, **data.report_fields()
    )
    picture = None
    if picture_queries > 0:
        picture = render_retrieval_picture(
            store_url,
            query_ids=test.video_ids,
            gallery_ids=train.video_ids,
            neighbours=neighbours.numpy(),
            hits=hits.numpy(),
            classes=data.classes,
            query_labels=test.labels,
            gallery_labels=train.labels,
            out=out_dir / "retrieval.png",
            queries=picture_queries,
            top=min(5, k_max),
        )
    return RetrievalResult(report=report.data, report_path=report.path, picture_path=picture)
