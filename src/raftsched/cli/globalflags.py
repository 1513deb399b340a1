"""Global flags (`--config`, `--node`, `--timeout`, `--json`, `--token`, TLS files, and
whatever else the top-level parser defines) accepted before or after the subcommand.

The top-level parser holds the real defaults. Every subparser, at every depth, gets
a copy of each global flag whose default is `argparse.SUPPRESS`, so a flag given after
the subcommand overrides the value parsed before it, and an absent one changes
nothing (the usual kubectl/gh behaviour). Where a subcommand defines the same option
itself (`submit --timeout` is the job's timeout), the subcommand's meaning wins after
the subcommand; the global one is still available before it.
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Iterator

GLOBAL_NOTE = ("Global flags (--config, --node, --timeout, --json, --consistent, --token,\n"
               "--ca/--cert/--key)\n"
               "go before or after the command, e.g. `raftsched list --node HOST:PORT --json`;\n"
               "where a command has a flag of the same name (submit --timeout: the job's\n"
               "timeout) give the global one before the command.")


def _subparsers(p: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """Every parser below `p` (each once, aliases included only once)."""
    seen: set[int] = set()
    stack = [p]
    while stack:
        cur = stack.pop()
        for a in cur._actions:
            if isinstance(a, argparse._SubParsersAction):
                for child in a.choices.values():
                    if id(child) not in seen:
                        seen.add(id(child))
                        stack.append(child)
                        yield child


def global_actions(p: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in p._actions
            if a.option_strings and not isinstance(a, argparse._HelpAction | argparse._VersionAction)]


def propagate(p: argparse.ArgumentParser) -> None:
    """Accept every optional flag of `p` in each of its subparsers too."""
    actions = global_actions(p)
    for sp in _subparsers(p):
        for a in actions:
            free = [s for s in a.option_strings if s not in sp._option_string_actions]
            if not free:
                continue
            c = copy.copy(a)
            c.option_strings = free
            c.default = argparse.SUPPRESS
            c.required = False
            c.help = argparse.SUPPRESS  # listed once, in `raftsched --help`
            sp._add_action(c)
        sp.set_defaults(usage_parser=sp)  # the deepest one wins: UsageError shows its usage
