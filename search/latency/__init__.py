"""Latency limits: the per-block ``table`` predictor, ``fbnetv3 latency build``
(``cli``), binding limits to a run (``limits``), measured ``picks`` and their ``report``.
"""
