"""JointNAS: joint architecture-recipe search (FBNetV3), as ``fbnetv3_zoo.search``.

Modules, one job each: ``space`` (YAML search spaces), ``encoding`` (pairs <->
unit vectors), ``constraints`` (limits, vectorised MACs/params), ``sampling``
(Sobol/uniform), ``sources`` (where candidates come from: Sobol draws or a
finite table), ``strategies`` (``random``, ``jointnas``: what to train next),
``encoder`` (the pretrained architecture encoder), ``heads`` (accuracy heads,
registered by name), ``predictor`` (a head fitted and scored on held-out
pairs), ``genetic`` (fine search), ``evaluate`` (train
one candidate), ``executors`` (local/Ray), ``store`` (SQLite, run lock),
``config`` (validated settings), ``driver`` (the search loop), ``report`` (outputs),
``cli``.  Entry point: :func:`fbnetv3_zoo.search.driver.run_search` or
``fbnetv3 search``.
"""
