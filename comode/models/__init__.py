"""The networks and what they are trained to do: the backbones (:mod:`backbones`,
:mod:`pathways`), the pretext heads (:mod:`heads`), the CoMoDe model (:mod:`model`), the
losses (:mod:`losses`) and the objective of a training step (:mod:`objective`).  Their
settings are the ``model:`` and ``loss:`` sections of a run's config (:mod:`config`)."""
