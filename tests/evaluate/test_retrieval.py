"""R@k of the project against a plain-loop reference and hand-made cases with known answers."""

import math

import numpy as np
import pytest
import torch

from comode.evaluate.retrieval import recall_at_k, retrieval_hits, top_k_neighbours


def reference_recall(query, query_labels, gallery, gallery_labels, ks, *, center=False, normalize=True):
    """The straightforward definition, one query at a time, in float64 Python loops.

    Ranking: by similarity, descending; ties broken by the lower gallery index.
    """
    query = [list(map(float, row)) for row in query]
    gallery = [list(map(float, row)) for row in gallery]
    if center:
        mean = [sum(col) / len(gallery) for col in zip(*gallery)]
        query = [[v - m for v, m in zip(row, mean)] for row in query]
        gallery = [[v - m for v, m in zip(row, mean)] for row in gallery]
    if normalize:

        def unit(row):
            norm = math.sqrt(sum(v * v for v in row))
            return [v / norm for v in row] if norm > 0 else row

        query, gallery = [unit(r) for r in query], [unit(r) for r in gallery]
    recalls = {}
    for k in ks:
        hits = 0
        for q, label in zip(query, query_labels):
            scores = [(sum(a * b for a, b in zip(q, g)), j) for j, g in enumerate(gallery)]
            ranked = sorted(scores, key=lambda s: (-s[0], s[1]))
            if any(gallery_labels[j] == label for _, j in ranked[:k]):
                hits += 1
        recalls[k] = hits / len(query)
    return recalls


def test_known_answers():
    # Gallery: 4 videos on the axes; queries near them.  Classes: 0, 1, 2, 0.
    gallery = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [-1, 0, 0]], dtype=np.float32)
    gallery_labels = [0, 1, 2, 0]
    query = np.array(
        [
            [1, 0.1, 0],  # nearest: g0 (class 0) -> hit at 1
            [0.1, 1, 0],  # nearest g1 (class 1); query class 2 -> g2 is 2nd or 3rd
            [0, 0.2, 1],
        ],  # nearest g2 (class 2); query class 0 -> first class-0 is g0 (3rd)
        dtype=np.float32,
    )
    query_labels = [0, 2, 0]
    # Query 1: similarities g0 0.0995, g1 0.995, g2 0, g3 -0.0995 -> order g1, g0, g2, g3: class 2 at rank 3.
    # Query 2: g0 0, g1 0.196, g2 0.981, g3 0 -> g2, g1, g0 (tie with g3, lower index first): class 0 at rank 3.
    recalls = recall_at_k(query, query_labels, gallery, gallery_labels, ks=(1, 2, 3, 4))
    assert recalls == {1: pytest.approx(1 / 3), 2: pytest.approx(1 / 3), 3: pytest.approx(1.0), 4: pytest.approx(1.0)}
    hits, indices = retrieval_hits(query, query_labels, gallery, gallery_labels, 4, return_indices=True)
    assert indices.tolist() == [[0, 1, 2, 3], [1, 0, 2, 3], [2, 1, 0, 3]]


def test_ties_go_to_the_earlier_gallery_video():
    # Every gallery video is identical: all similarities tie, so the top-k is the first k.
    gallery = np.ones((6, 4), dtype=np.float32)
    gallery_labels = [0, 0, 1, 1, 2, 2]
    query = np.ones((2, 4), dtype=np.float32)
    recalls = recall_at_k(query, [2, 1], gallery, gallery_labels, ks=(1, 2, 3, 4, 5))
    # class 2 first appears at rank 5, class 1 at rank 3
    assert recalls == {1: 0.0, 2: 0.0, 3: 0.5, 4: 0.5, 5: 1.0}


@pytest.mark.parametrize("center", [False, True])
@pytest.mark.parametrize("chunk", [3, 7, 1024])
def test_matches_reference_on_random_embeddings_with_ties_and_duplicates(center, chunk):
    rng = np.random.default_rng(0)
    # Small-integer embeddings and a gallery of 32 (its mean is a multiple of 1/32): every
    # dot product, centred or not, is exact in float32 and float64, so ties are real ties in
    # both; duplicated gallery rows of different classes make ties at the top-k boundary.
    gallery = rng.integers(-2, 3, size=(32, 5)).astype(np.float32)
    gallery[16:24] = gallery[0:8]
    gallery_labels = rng.integers(0, 4, size=32).tolist()  # 4 classes: many duplicates
    query = rng.integers(-2, 3, size=(25, 5)).astype(np.float32)
    query[:5] = gallery[:5]
    query_labels = rng.integers(0, 4, size=25).tolist()
    ks = (1, 5, 10, 20)
    got = recall_at_k(query, query_labels, gallery, gallery_labels, ks, center=center, normalize=False, chunk=chunk)
    want = reference_recall(query, query_labels, gallery, gallery_labels, ks, center=center, normalize=False)
    assert got == pytest.approx(want)
    # the case is not trivial: ties at the boundary decide some queries
    scores = (query - gallery.mean(0) * center) @ (gallery - gallery.mean(0) * center).T
    kth = np.sort(scores, axis=1)[:, ::-1][:, 0]
    assert ((scores == kth[:, None]).sum(axis=1) > 1).any()


@pytest.mark.parametrize("center", [False, True])
def test_matches_reference_with_cosine_on_float_embeddings(center):
    rng = np.random.default_rng(1)
    gallery = rng.normal(size=(60, 16)).astype(np.float32) + 0.5
    gallery_labels = rng.integers(0, 6, size=60).tolist()
    query = rng.normal(size=(30, 16)).astype(np.float32) + 0.5
    query_labels = rng.integers(0, 6, size=30).tolist()
    ks = (1, 5, 10, 20)
    got = recall_at_k(query, query_labels, gallery, gallery_labels, ks, center=center, chunk=8)
    want = reference_recall(query, query_labels, gallery, gallery_labels, ks, center=center)
    assert got == pytest.approx(want)
    assert 0 < got[1] < got[20] <= 1  # not a degenerate case


def test_chunked_search_equals_full_sort():
    torch.manual_seed(0)
    query, gallery = torch.randn(50, 8), torch.randn(333, 8)
    values, indices = top_k_neighbours(query, gallery, 20, chunk=16)
    full = torch.sort(query @ gallery.T, dim=1, descending=True, stable=True)
    assert torch.equal(indices, full.indices[:, :20])
    assert torch.allclose(values, full.values[:, :20], atol=1e-5)
    # k above the gallery size is capped
    assert top_k_neighbours(query, gallery[:3], 20)[1].shape == (50, 3)
