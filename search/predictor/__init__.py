"""The accuracy predictor: the architecture ``encoder`` pretrained on free statistics,
the ``features`` it reads, the accuracy ``heads`` and how the search ``fit``s and scores them.
"""
