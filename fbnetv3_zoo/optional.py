"""Optional dependencies: imported on first use, refused in one line naming the extra.

The base install is torch, timm and a few small libraries; everything else
belongs to an extra of ``pyproject.toml``.  Every optional import of the
package goes through :func:`require`, so a missing library is a
:class:`MissingExtra` (a ``UserError``: the CLI prints it as one line) that
says which command wanted it and the ``pip install "fbnetv3-zoo[extra]"``
that brings it, instead of a ``ModuleNotFoundError`` traceback.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from fbnetv3_zoo.errors import UserError, first_line

__all__ = ["EXTRAS", "MissingExtra", "install_hint", "require"]

# top-level module -> (extra that installs it, the pip name when it differs)
EXTRAS: dict[str, tuple[str, str]] = {
    "onnx": ("onnx", "onnx"),
    "onnxruntime": ("onnx", "onnxruntime"),
    "sklearn": ("train", "scikit-learn"),
    "matplotlib": ("train", "matplotlib"),
    "scipy": ("search", "scipy"),
    "ray": ("distributed", "ray"),
    "optuna": ("optuna", "optuna"),
    "executorch": ("mobile", "executorch"),
    "torchao": ("mobile", "torchao"),
    "pycocotools": ("detection", "pycocotools"),
    "mkdocs": ("docs", "mkdocs"),
}


class MissingExtra(UserError):
    """An optional library is not installed; the message names the extra that brings it."""


def install_hint(extra: str) -> str:
    """The one command that installs ``extra``."""
    return f'pip install "fbnetv3-zoo[{extra}]"'


def require(module: str, what: str = "", extra: str | None = None) -> ModuleType:
    """Import ``module`` (dotted names allowed), or raise :class:`MissingExtra` in one line.

    ``what`` names the feature that needs it (``"--format onnx"``); ``extra``
    defaults to the one :data:`EXTRAS` lists for the top-level package.  An
    installed library that fails to import (a broken build) is the same one
    line, with its own first error line.
    """
    top = module.partition(".")[0]
    extra = extra or EXTRAS.get(top, ("all", top))[0]
    try:
        return importlib.import_module(module)
    except ImportError as err:
        package = EXTRAS.get(top, (extra, top))[1]
        missing = isinstance(err, ModuleNotFoundError) and (err.name or "").partition(".")[0] == top
        why = "is not installed" if missing else f"does not import ({first_line(err)})"
        asker = f"{what} needs {package}, which" if what else package
        raise MissingExtra(f"{asker} {why}: {install_hint(extra)}") from None
