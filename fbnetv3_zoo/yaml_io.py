"""Loading user YAML safely: no code, no alias bombs, no giant files.

``yaml.safe_load`` never runs code, but nested anchors/aliases ("billion
laughs") can expand a few hundred bytes into gigabytes.  Our files (specs,
recipes, spaces, results) never need anchors, so any alias is refused, and a
file above ``MAX_BYTES`` is refused before it is parsed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from fbnetv3_zoo.errors import UserError

MAX_BYTES = 1 << 20  # 1 MiB: far above any spec, recipe or space we write


class _NoAliasLoader(yaml.SafeLoader):
    """SafeLoader that rejects every alias (``*name``)."""

    def compose_node(self, parent, index):  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.constructor.ConstructorError(
                None, None, "YAML aliases/anchors are not allowed in this file", event.start_mark
            )
        return super().compose_node(parent, index)


def load_yaml_text(text: str, source: str = "<string>") -> Any:
    """Parse ``text``; errors name ``source`` and say what is wrong in one line."""
    if len(text.encode("utf-8", "replace")) > MAX_BYTES:
        raise UserError(f"{source}: file is larger than {MAX_BYTES} bytes; refusing to parse it")
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        detail = " ".join(str(err).split())
        raise UserError(f"{source}: not valid YAML for this file: {detail}") from None
    except RecursionError:
        raise UserError(f"{source}: nested too deeply to be one of our files") from None


def load_yaml(path: str | Path) -> Any:
    """Read and parse a YAML file with :func:`load_yaml_text`'s limits."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise UserError(f"{path}: file is larger than {MAX_BYTES} bytes; refusing to parse it")
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a UTF-8 text file") from None
    return load_yaml_text(text, str(path))
