"""pytest plugin for timm's own test_models.py: register our models before it is collected.

timm's tests build their parameter lists from ``timm.list_models()`` at import
time, so the zoo must be imported first (``-p fbnetv3_plugin``).
"""

import torch

import fbnetv3_zoo  # noqa: F401  (registers fbnetv3_a…g and fbnetv3 with timm)

torch.set_num_threads(1)  # a shared 2-core machine: one intra-op thread
