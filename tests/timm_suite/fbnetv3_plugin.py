"""pytest plugin for timm's own test_models.py: register our models before it is collected.

timm's tests build their parameter lists from ``timm.list_models()`` at import
time, so the zoo must be imported first (``-p fbnetv3_plugin``).

While the suite runs, ``timm.list_models`` and ``timm.list_pretrained`` answer
only names containing ``fbnetv3``: run.py selects exactly those cases (``-k
fbnetv3``), and building the ~17,900 cases of every other timm model only to
deselect them cost each pytest process ~10 s of collection.  The same cases run
(tests/test_timm_suite.py checks that the filter keeps every name run.py selects).
"""

import pytest
import timm
import torch

import fbnetv3_zoo  # noqa: F401  (registers fbnetv3_a…g and fbnetv3 with timm)

OURS = "fbnetv3"  # the substring run.py's -k expression selects on (run.OURS)
_patch = pytest.MonkeyPatch()


def only_ours(lister):
    """``lister`` (a timm listing function) keeping only the names the suite runs."""

    def listed(*args, **kwargs):
        return [name for name in lister(*args, **kwargs) if OURS in name]

    return listed


def pytest_configure(config):
    torch.set_num_threads(1)  # a shared 2-core machine: one intra-op thread
    _patch.setattr(timm, "list_models", only_ours(timm.list_models))
    _patch.setattr(timm, "list_pretrained", only_ours(timm.list_pretrained))


def pytest_unconfigure(config):
    _patch.undo()
