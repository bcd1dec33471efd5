"""What a search hands back: best pairs and ``report.md`` (``outputs``), ``plots``,
the ``verdict`` lines and the ``summaries`` both read.
"""
