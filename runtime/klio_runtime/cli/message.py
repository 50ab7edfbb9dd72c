"""``klio message …``: encode, decode and publish KlioMessages."""

from __future__ import annotations

from typing import BinaryIO, NoReturn

import click

from klio_runtime.message import (
    MessageDecodeError,
    from_json,
    parse,
    parse_exact,
    serialize,
    to_json,
)

# Exit status for input that is not a KlioMessage, as click uses for usage errors.
BAD_INPUT_EXIT = 2


@click.group()
def message() -> None:
    """Encode, decode and publish KlioMessages."""


def _name(stream: BinaryIO) -> str:
    # click names stdin "-"; some stand-in streams (tests) have no name at all.
    name = getattr(stream, "name", "-")
    return "<stdin>" if name in ("-", "<stdin>") else str(name)


def _fail(reason: str) -> NoReturn:
    click.echo(f"Error: {reason}", err=True)
    raise SystemExit(BAD_INPUT_EXIT)


@message.command()
@click.argument("source", type=click.File("rb"), default="-")
@click.option(
    "--upgrade",
    is_flag=True,
    help="Show the message as a job sees it, after Klio's v1 → v2 upgrade.",
)
def decode(source: BinaryIO, upgrade: bool) -> None:
    """Print a serialized KlioMessage (SOURCE file, or stdin) as proto3 JSON.

    Field names are the .proto's own; bytes are base64, enums by name, timestamps
    RFC 3339. Input that is not a KlioMessage exits with status 2.
    """
    data = source.read()
    try:
        msg = parse(data) if upgrade else parse_exact(data)
    except MessageDecodeError as exc:
        _fail(f"{_name(source)}: {exc}")
    click.echo(to_json(msg))


@message.command()
@click.argument("source", type=click.File("rb"), default="-")
@click.option(
    "-o",
    "--output",
    type=click.File("wb"),
    default="-",
    help="Where to write the bytes (default: stdout).",
)
def encode(source: BinaryIO, output: BinaryIO) -> None:
    """Write the KlioMessage bytes for proto3 JSON (SOURCE file, or stdin).

    The JSON is what ``klio message decode`` prints. An unknown field, a wrong type or a
    message without an element exits with status 2.
    """
    raw = source.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        _fail(f"{_name(source)}: not UTF-8 text ({exc.reason} at byte {exc.start})")
    try:
        msg = from_json(text)
        data = serialize(msg)
        parse_exact(data)  # the same checks decode applies, so encode never writes garbage
    except MessageDecodeError as exc:
        _fail(f"{_name(source)}: {exc}")
    output.write(data)
    output.flush()
