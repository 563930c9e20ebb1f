"""MkDocs hook: the flags' tables on flags.md, built from `gantui`'s own parser.

The parser's flags come from `Config`'s fields (gantui/config.py, `knob(...)`), so the docs'
table, `gantui --help` and the checks are one source: a marker line `<!-- flags -->` becomes
a table of the general flags and one of the recipe's.
"""
from __future__ import annotations

import argparse
from typing import Any

MARKER = "<!-- flags -->"


def invocation(action: argparse.Action) -> str:
    """`--batch-size N`, `--compile`, `--on-hangup {detach,stop}`: the flag as `--help` shows it."""
    if isinstance(action, argparse.BooleanOptionalAction):
        return " / ".join(action.option_strings)  # --spectral-norm / --no-spectral-norm
    name = max(action.option_strings, key=len)
    if action.nargs == 0:
        return name
    if action.metavar is not None:
        metavar = action.metavar
    elif action.choices is not None:
        metavar = "{" + ",".join(map(str, action.choices)) + "}"
    else:
        metavar = action.dest.upper()
    return f"{name} {metavar}"


def cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def table(actions: list[argparse.Action]) -> str:
    rows = ["| flag | meaning |", "|---|---|"]
    for action in actions:
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
            continue
        rows.append(f"| `{invocation(action)}` | {cell(action.help or '')} |")
    return "\n".join(rows)


def flags_tables() -> str:
    from gantui.cli.train import train_parser

    parser = train_parser()
    parts = []
    for group in parser._action_groups:  # argparse keeps no public list of its groups
        shown = [a for a in group._group_actions
                 if a.help != argparse.SUPPRESS and not isinstance(a, argparse._HelpAction)]
        if not shown:
            continue
        title = "General" if group.title in ("options", "optional arguments") else group.title[:1].upper() + group.title[1:]
        parts.append(f"### {title}\n\n{table(shown)}")
    return "\n\n".join(parts)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, flags_tables())
