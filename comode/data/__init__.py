"""Store -> batch: which frames a sample uses (:mod:`frames`), its motion-vector windows
(:mod:`motion_windows`), the pretraining dataset (:mod:`dataset`), the loader
(:mod:`loader`), the batched augmentations on the training device (:mod:`transforms`), the
evaluation clips (:mod:`clips`), and what a run takes from all that (:mod:`training_data`).
Its settings are the ``data:`` section of a run's config (:mod:`config`)."""
