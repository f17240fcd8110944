"""Evaluation of a pretrained V-Network on a labelled store (CLI: ``evaluate ...``).

source         the evaluated network: checkpoint / exported backbone / seeded random init
clips          the 10 test clips of each video as a DataLoader dataset (which frames: train/frames.py)
features       10-clip video features, batched, cached on disk (``Inference``: how the network runs)
options        a split's features for an evaluation (``FeatureOptions``, ``split_features``)
retrieval      test-queries-train nearest neighbours, R@k (``run_retrieval``)
linear         logistic-regression probe on frozen features (``run_linear``)
finetune       supervised finetuning + 10-clip test (``run_finetune``; config: finetune_config)
accuracy       top-k accuracy, shared by the probe and finetuning
report         JSON + table per evaluation, ``compare``
picture        query / top-5 thumbnails
leakage        can one label set be read off a signal that should not carry it
ablation       variants x seeds, each pretrained and evaluated (table: ablation_table)
"""
