"""The command-line reference as Markdown, rendered from the argparse parsers themselves.

Why generated: a hand-kept copy of ``fbnetv3 --help`` drifts the day a flag changes; this
walks ``fbnetv3_zoo.cli.build_parser()`` (subcommands, nested subcommands such as
``latency build``, argument groups) at every site build.
"""

from __future__ import annotations

import argparse


def _subparsers(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(name, one-line help, parser) of each subcommand, in registration order."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            return [(n, helps.get(n, ""), p) for n, p in action.choices.items()]
    return []


def _cell(text: str) -> str:
    """Text that stays inside one Markdown table cell and reads as written (no HTML tags
    from ``<name>``, no emphasis from ``*``)."""
    text = " ".join(text.split())
    for char, escaped in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;")):
        text = text.replace(char, escaped)
    for char in ("\\", "|", "*", "_", "`", "["):
        text = text.replace(char, "\\" + char)
    return text


def _flags(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The flags and metavar exactly as ``--help`` shows them."""
    return f"`{parser._get_formatter()._format_action_invocation(action)}`"


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The help text as ``--help`` prints it (``%(default)s`` and friends expanded)."""
    if not action.help:
        return ""
    formatter = parser._get_formatter()
    return _cell(formatter._expand_help(action))


def _group_table(parser: argparse.ArgumentParser, group: argparse._ArgumentGroup) -> list[str]:
    rows = [
        f"| {_flags(parser, a)} | {_help(parser, a)} |"
        for a in group._group_actions
        if a.help is not argparse.SUPPRESS and not isinstance(a, argparse._SubParsersAction)
    ]
    if not rows:
        return []
    title = group.title or "arguments"
    title = title[:1].upper() + title[1:]  # as written (capitalize() would lower "CPU")
    head = [f"**{title}**", ""]
    if group.description:
        head += [_cell(group.description), ""]
    return [*head, "| argument | meaning |", "|---|---|", *rows, ""]


def _usage(parser: argparse.ArgumentParser) -> str:
    usage = parser.format_usage().removeprefix("usage:").strip()
    return " ".join(usage.split())


def command_markdown(path: str, summary: str, parser: argparse.ArgumentParser, level: int) -> str:
    """One command's section: what it does, its usage line, a table per argument group."""
    lines = [f"{'#' * level} `{path}`", ""]
    if summary:
        lines += [_cell(summary)[:1].upper() + _cell(summary)[1:] + ".", ""]
    if parser.description and parser.description != summary:
        lines += [_cell(parser.description), ""]
    lines += [f"Usage: `{_usage(parser)}`", ""]
    for group in parser._action_groups:
        lines += _group_table(parser, group)
    for name, sub_summary, sub in _subparsers(parser):
        lines.append(command_markdown(f"{path} {name}", sub_summary, sub, level + 1))
    return "\n".join(lines)


def cli_markdown() -> str:
    """Every ``fbnetv3`` subcommand, in the order ``fbnetv3 --help`` lists them."""
    from fbnetv3_zoo.cli import build_parser

    parser = build_parser()
    parser.prog = "fbnetv3"
    lines = [_cell(parser.description or ""), "", f"Usage: `{_usage(parser)}`", ""]
    for group in parser._action_groups:
        lines += _group_table(parser, group)
    lines += ["| command | what it does |", "|---|---|"]
    commands = _subparsers(parser)
    lines += [f"| [`{n}`](#fbnetv3-{n}) | {_cell(h)} |" for n, h, _ in commands]
    lines.append("")
    for name, summary, sub in commands:
        lines.append(command_markdown(f"fbnetv3 {name}", summary, sub, 2))
    return "\n".join(lines)
