"""The networks: ``ArchSpec`` and its limits, analytic statistics, the published
variants and their facts, the blocks and model builder, BN folding, weight init, and
the timm registration (``timm_registry``) that makes ``timm.create_model`` build them.
"""
