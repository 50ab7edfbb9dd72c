"""``klio message …``: encode, decode and publish KlioMessages."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO, NoReturn

import click

from klio_runtime.cli.options import (
    config_file_option,
    job_dir_option,
    override_option,
    refuse_config,
    template_option,
)
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
@job_dir_option
@config_file_option
@override_option
@template_option
@click.option("-f", "--force", is_flag=True, help="Run even if the job's outputs exist.")
@click.option("-p", "--ping", is_flag=True,
              help="Trace through the DAG without running the jobs.")
@click.option("-t", "--top-down", is_flag=True,
              help="For anyone: this job and every job below it run.")
@click.option("-b", "--bottom-up", is_flag=True,
              help="Only this job (and the parents it needs) runs, not its children: the default "
                   "when the job's config is known, as in Klio.")
@click.option("-n", "--non-klio", is_flag=True,
              help="Publish each ELEMENT as it is, not as a KlioMessage (the job must allow "
                   "non-Klio messages).")
@click.option("--topic", help="Topic to publish to (default: the job's first pubsub input's).")
@click.option("--project", envvar="KLIO_PUBSUB_PROJECT",
              help="Project of a bare topic id (default: pipeline_options.project).")
def publish(elements: tuple[str, ...], job_dir: Path, config_file: Path | None,
            overrides: tuple[str, ...], templates: tuple[str, ...], force: bool, ping: bool,
            top_down: bool, bottom_up: bool, non_klio: bool, topic: str | None,
            project: str | None) -> None:
    """Publish a KlioMessage for each ELEMENT id to the job's input topic.

    As in Klio, a message is for this job only (bottom-up) unless --top-down; with no job
    config (only --topic), it is for anyone. Prints the Pub/Sub message id of each, in order.
    Uses PUBSUB_EMULATOR_HOST when set.
    """
    from klio_runtime.config import (
        ConfigError,
        PubSubEventInput,
        config_path_of,
        load_config,
        parse_overrides,
        parse_templates,
    )
    from klio_runtime.io.pubsub import PubSubClient, resource_path
    from klio_runtime.message import InvalidElementId, new_message

    if top_down and bottom_up:
        raise click.UsageError("use --top-down or --bottom-up, not both")
    if non_klio and (force or ping or bottom_up):
        raise click.UsageError("a non-Klio message cannot be --force, --ping or --bottom-up")
    config_path = config_path_of(job_dir, config_file)
    config = None
    if config_file is not None or config_path.is_file():
        try:
            config = load_config(
                config_path, parse_overrides(overrides), parse_templates(templates)
            )
        except ConfigError as exc:
            refuse_config(exc)  # by field, exit 2, as every command
    if bottom_up and config is None:
        raise click.UsageError(f"--bottom-up needs the job's config (--config-file, or "
                               f"{CONFIG_FILE_NAME} in --job-dir)")
    if non_klio and config is not None and not config.job_config.allow_non_klio_messages:
        raise click.ClickException("the job does not take non-Klio messages: set "
                                   "job_config.allow_non_klio_messages: true")
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
    if config is not None and not top_down and not non_klio:
        from klio_runtime.transforms.route import job_ref_of

        recipients = [job_ref_of(config)]
    try:
        payloads = [
            element.encode("utf-8") if non_klio
            else serialize(new_message(element, force=force, ping=ping, recipients=recipients))
            for element in elements
        ]
    except InvalidElementId as exc:
        raise click.UsageError(str(exc)) from None
    how = "non-Klio" if non_klio else "bottom-up" if recipients else "top-down"
    whose = f"{config.job_name}'s input topic" if config is not None else "topic"
    click.echo(f"Publishing {len(payloads)} messages to {whose} {topic_path} ({how})", err=True)
    client = PubSubClient()
    try:
        if not client.topic_exists(topic_path):  # Klio's check and words
            click.echo(f"Topic '{topic_path}' not found. Is there a running job subscribed to "
                       "this topic? or is there a typo in the configured topic?", err=True)
            raise SystemExit(1)
        futures = client.publish_nowait((topic_path, data, {}) for data in payloads)
        failed = []
        for element, future, error in zip(elements, futures, client.publish_outcomes(futures),
                                          strict=True):
            if error is None:
                click.echo(future.result())
            else:
                click.echo(f"Failed to publish message for entity '{element}': {error}", err=True)
                failed.append(element)
    finally:
        client.close()
    if len(failed) < len(elements):
        click.echo(f"Successfully published {len(elements) - len(failed)} messages.", err=True)
    if failed:
        click.echo(f"Failed to publish the following {len(failed)} entity IDs: "
                   f"{', '.join(failed)}", err=True)
        raise SystemExit(1)
