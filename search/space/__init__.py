"""Search spaces: what pairs the search may propose (``definition``, its ``dims``), their
encoding in the unit cube, sampling inside resource ``constraints``, and the recipe-only
space around one ``fixed_model``.
"""
