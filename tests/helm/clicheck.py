"""Parse a command line against a click CLI without running it: every option converted, checked."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click


def parse_command_line(cli: click.Command, argv: Sequence[str]) -> dict[str, Any]:
    """The params of the (sub)command `argv` names; click's error when it does not parse.

    Group-level options are not supported: `argv` starts with a subcommand of each group.
    """
    command, args, parent = cli, list(argv), None
    while isinstance(command, click.Group) and args:
        group_ctx = click.Context(command, info_name=command.name, parent=parent)
        sub = command.get_command(group_ctx, args[0])
        if sub is None:
            raise click.UsageError(f"no such command {args[0]!r}", group_ctx)
        command, args, parent = sub, args[1:], group_ctx
    ctx = command.make_context(command.name, args, parent=parent)
    return dict(ctx.params)
