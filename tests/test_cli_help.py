"""Every option of every `xdrstream` command says what it is in --help (a new user's first look)."""

from __future__ import annotations

import argparse

from xdrstream.cli import build_parser


def _undocumented(parser: argparse.ArgumentParser, path: str) -> list[str]:
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                missing += _undocumented(sub, f"{path} {name}")
        elif action.help is None:
            groups = [g for g in parser._action_groups if action in g._group_actions]
            # A group whose title points to another command's -h documents its options there.
            if any(g.title and " -h" in g.title for g in groups):
                continue
            missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    return missing


def test_every_option_has_help() -> None:
    assert _undocumented(build_parser(), "xdrstream") == []


def _leaves(
    parser: argparse.ArgumentParser, path: str
) -> list[tuple[str, argparse.ArgumentParser]]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [(path, parser)]
    return [
        leaf for name, sub in subs[0].choices.items() for leaf in _leaves(sub, f"{path} {name}")
    ]


def test_every_command_says_what_it_does_in_its_own_help() -> None:
    """`xdrstream X -h` starts with what X does, not only its usage line."""
    bare = [path for path, parser in _leaves(build_parser(), "xdrstream") if not parser.description]
    assert bare == []
