"""JointNAS: joint architecture-recipe search (FBNetV3), as ``fbnetv3_zoo.search``.

Modules, one job each: ``space`` (YAML search spaces), ``encoding`` (pairs <->
unit vectors), ``constraints`` (limits, vectorised MACs/params), ``sampling``
(Sobol/uniform), ``predictor`` (pretrained MLP ensemble), ``evaluate`` (train
one candidate), ``executors`` (local/Ray), ``store`` (SQLite), ``coarse`` (the
search driver), ``genetic`` (fine search), ``report`` (outputs), ``cli``.
Entry point: :func:`fbnetv3_zoo.search.coarse.run_search` or ``fbnetv3 search``.
"""
