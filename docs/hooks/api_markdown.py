"""The API reference pages as mkdocstrings directives, one per public name.

Why generated: the packages load their public names lazily (``__getattr__``), so a static
reader cannot see where each lives; this imports the package, takes ``__all__`` and
writes ``::: <defining module>.<name>`` for each, so a name added to ``__all__`` appears
on the site without anyone editing a page.
"""

from __future__ import annotations

import importlib
import inspect
import sys


def _defining_module(package: str, name: str, value: object) -> str:
    """Where ``name`` is defined: a class's or function's module, else the submodule that
    holds the very same object (data such as ``VARIANTS``), else the package itself."""
    if inspect.isclass(value) or inspect.isfunction(value):
        return value.__module__
    for module_name, module in sorted(sys.modules.items()):
        if module_name.startswith(package + ".") and vars(module).get(name) is value:
            return module_name
    if vars(sys.modules[package]).get(name) is value:  # defined in the package itself
        return package
    raise LookupError(f"{package}.{name}: no module of the package defines it")


def public_names(package: str) -> list[tuple[str, str]]:
    """(name, dotted path of its definition) for each name of the package's ``__all__``."""
    module = importlib.import_module(package)
    found = []
    for name in module.__all__:
        value = getattr(module, name)
        qualname = getattr(value, "__qualname__", name) if callable(value) else name
        found.append((name, f"{_defining_module(package, name, value)}.{qualname}"))
    return found


def api_markdown(package: str) -> str:
    """A short index of the public names, then one mkdocstrings block per name."""
    names = public_names(package)
    lines = [f"`import {package}` gives these names (its `__all__`):", ""]
    lines += [", ".join(f"[`{n}`](#{path})" for n, path in names), ""]
    for _name, path in names:
        lines += [f"::: {path}", ""]
    return "\n".join(lines)
