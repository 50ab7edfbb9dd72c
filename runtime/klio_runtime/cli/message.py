"""``klio message …``: encode, decode and publish KlioMessages."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO, NoReturn

import click

from klio_runtime.config import CONFIG_FILE_NAME
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


@message.command()
@click.argument("elements", nargs=-1, required=True)
@click.option("--config-file", type=click.Path(dir_okay=False, path_type=Path),
              help="The job's klio-job.yaml (default: ./klio-job.yaml when it exists).")
@click.option("--force", is_flag=True, help="Run even if the job's outputs exist.")
@click.option("--ping", is_flag=True, help="Trace through the DAG without running the jobs.")
@click.option("--bottom-up", is_flag=True,
              help="Only this job (and the parents it needs) runs, not its children.")
@click.option("--topic", help="Topic to publish to (default: the job's first pubsub input's).")
@click.option("--project", envvar="KLIO_PUBSUB_PROJECT",
              help="Project of a bare topic id (default: pipeline_options.project).")
def publish(elements: tuple[str, ...], config_file: Path | None, force: bool, ping: bool,
            bottom_up: bool, topic: str | None, project: str | None) -> None:
    """Publish a KlioMessage for each ELEMENT id to the job's input topic.

    Prints the Pub/Sub message id of each, in order. Uses PUBSUB_EMULATOR_HOST when set.
    """
    from klio_runtime.config import ConfigError, PubSubEventInput, load_config
    from klio_runtime.io.pubsub import PubSubClient, resource_path
    from klio_runtime.message import InvalidElementId, new_message

    if config_file is None and Path(CONFIG_FILE_NAME).is_file():
        config_file = Path(CONFIG_FILE_NAME)
    config = None
    if config_file is not None:
        try:
            config = load_config(config_file)
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None
    if bottom_up and config is None:
        raise click.UsageError("--bottom-up needs the job's config (--config-file)")
    if config is not None:
        project = project or config.pipeline_options.project
    if topic is None:
        inputs = [(i, inp) for i, inp in enumerate(config.job_config.events.inputs)
                  if isinstance(inp, PubSubEventInput)] if config is not None else []
        if not inputs:
            raise click.UsageError("no topic: give --topic, or a --config-file whose "
                                   "job_config.events.inputs has a pubsub input")
        index, first = inputs[0]
        if not first.topic:
            raise click.UsageError(f"job_config.events.inputs[{index}] names only a "
                                   "subscription: give --topic")
        topic = first.topic
    try:
        topic_path = resource_path(topic, "topics", project)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    recipients = None
    if bottom_up:
        from klio_runtime.transforms.route import job_ref_of

        assert config is not None
        recipients = [job_ref_of(config)]
    try:
        payloads = [serialize(new_message(element, force=force, ping=ping,
                                          recipients=recipients)) for element in elements]
    except InvalidElementId as exc:
        raise click.UsageError(str(exc)) from None
    client = PubSubClient()
    try:
        ids = client.publish_all((topic_path, data, {}) for data in payloads)
    finally:
        client.close()
    for message_id in ids:
        click.echo(message_id)
    click.echo(f"published {len(ids)} message(s) to {topic_path}", err=True)
