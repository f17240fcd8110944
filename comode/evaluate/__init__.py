"""Evaluation of a pretrained V-Network on a labelled store (CLI: ``evaluate ...``).

network        the evaluated network: checkpoint / exported backbone / seeded random init
features       10-clip video features (the clips: comode.data.clips), batched, cached on disk (``Inference``: how the network runs)
choices        what a caller chooses about the features, and the defaults (``FeatureChoices``; no torch)
options        a split's features for an evaluation (``FeatureOptions``, ``split_features``), output folders
retrieval      test-queries-train nearest neighbours, R@k (``run_retrieval``)
linear         logistic-regression probe on frozen features (``run_linear``)
finetune       supervised finetuning + 10-clip test (``run_finetune``; config: finetune_config)
accuracy       top-k accuracy, shared by the probe and finetuning
report         JSON + table per evaluation, ``compare``
picture        query / top-5 thumbnails
leakage        can one label set be read off a signal that should not carry it
ablation       variants x seeds, each pretrained and evaluated (table: ablation_table)
"""
