"""Latency measured on the user's machine: the timing harness and the per-block
latency table the search's latency limits read.
"""
