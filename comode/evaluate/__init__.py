"""Evaluation of a pretrained V-Network on a labelled store (CLI: ``evaluate ...``).

clips      which frames the 10 test clips of a video use (uniform sliding window)
features   10-clip video features, batched, cached on disk
source     the evaluated network: checkpoint / exported backbone / seeded random init
retrieval  test-queries-train nearest neighbours, R@k (``run_retrieval``)
linear     logistic-regression probe on frozen features (``run_linear``)
finetune   supervised finetuning + 10-clip test (``run_finetune``)
report     JSON + table per evaluation, ``compare``
picture    query / top-5 thumbnails
"""
