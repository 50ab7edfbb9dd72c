"""``klio message publish`` against the real Pub/Sub emulator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from klio_runtime.cli import main
from klio_runtime.message import parse

from tests.worker.helpers import PROJECT, PubSub, unique, write_config


@pytest.fixture
def pubsub(pubsub_emulator: str) -> Iterator[PubSub]:
    client = PubSub()
    yield client
    client.cleanup()


def _job(pubsub: PubSub, tmp_path: Path) -> tuple[Path, str, str]:
    name = unique("pub")
    in_topic = pubsub.topic(f"{name}-in")
    sub = pubsub.subscribe(in_topic, f"{name}-in")
    config = write_config(tmp_path, name, sub, f"projects/{PROJECT}/topics/{name}-out")
    data = yaml.safe_load(config.read_text())
    data["job_config"]["events"]["inputs"][0]["topic"] = in_topic.rsplit("/", 1)[1]  # bare id
    config.write_text(yaml.safe_dump(data))
    return config, sub, name


def test_publish_top_down_and_flags(pubsub: PubSub, tmp_path: Path) -> None:
    config, sub, _ = _job(pubsub, tmp_path)
    result = CliRunner().invoke(main, ["message", "publish", "id-1", "id-2", "--force",
                                       "--top-down", "--config-file", str(config)])
    assert result.exit_code == 0, result.output
    ids = result.stdout.split()
    assert len(ids) == 2 and all(ids)
    got = pubsub.collect(sub, 2, 30)
    assert sorted(got) == ["id-1", "id-2"]
    assert {m.message_id for m in got.values()} == set(ids)
    msg = parse(got["id-1"].data)
    assert msg.metadata.force and not msg.metadata.ping
    assert msg.metadata.intended_recipients.WhichOneof("recipients") == "anyone"


@pytest.mark.parametrize("flags", [["--ping", "--bottom-up"], ["-p"]])
def test_publish_bottom_up_targets_the_job_and_is_the_default(
    flags: list[str], pubsub: PubSub, tmp_path: Path
) -> None:
    config, sub, name = _job(pubsub, tmp_path)
    result = CliRunner().invoke(main, ["message", "publish", "id-3", *flags,
                                       "-c", str(config)])
    assert result.exit_code == 0, result.output
    msg = parse(pubsub.collect(sub, 1, 30)["id-3"].data)
    limited = msg.metadata.intended_recipients.limited
    assert [(j.job_name, j.gcp_project) for j in limited.recipients] == [(name, PROJECT)]
    assert msg.metadata.ping and not msg.metadata.force
    assert f"Publishing 1 messages to {name}'s input topic " in result.stderr  # Klio's lines
    assert "(bottom-up)" in result.stderr
    assert "Successfully published 1 messages." in result.stderr


def test_publish_non_klio_sends_the_element_as_it_is(pubsub: PubSub, tmp_path: Path) -> None:
    config, sub, _ = _job(pubsub, tmp_path)
    refused = CliRunner().invoke(main, ["message", "publish", "raw-1", "-n", "-c", str(config)])
    assert refused.exit_code == 1 and "allow_non_klio_messages: true" in refused.output
    result = CliRunner().invoke(main, ["message", "publish", "raw-1", "--non-klio", "-c",
                                       str(config), "-O",
                                       "job_config.allow_non_klio_messages=true"])
    assert result.exit_code == 0, result.output
    got = pubsub.collect(sub, 1, 30, key=lambda m: m.data.decode())
    assert list(got) == ["raw-1"]


def test_publish_to_an_explicit_topic(pubsub: PubSub) -> None:
    in_topic = pubsub.topic(unique("explicit"))
    sub = pubsub.subscribe(in_topic, unique("explicit"))
    result = CliRunner().invoke(main, ["message", "publish", "x-1", "--topic",
                                       in_topic.rsplit("/", 1)[1], "--project", PROJECT])
    assert result.exit_code == 0, result.output
    got = pubsub.collect(sub, 1, 30)
    assert list(got) == ["x-1"]
    # no job config: no job to limit it to, so it is for anyone
    assert parse(got["x-1"].data).metadata.intended_recipients.WhichOneof("recipients") == "anyone"


@pytest.mark.parametrize(("args", "error"), [
    (["e1"], "no topic: give --topic"),
    (["e1", "--bottom-up", "--topic", "projects/p1p/topics/abc"], "--bottom-up needs"),
    (["e1", "-t", "-b", "--topic", "projects/p1p/topics/abc"], "not both"),
    (["e1", "-n", "-f", "--topic", "projects/p1p/topics/abc"], "cannot be --force"),
    (["e1", "--topic", "bare"], "has no project"),
    (["", "--topic", "projects/p1p/topics/abc"], "it is empty"),
])
def test_publish_usage_errors(args: list[str], error: str, tmp_path: Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KLIO_PUBSUB_PROJECT", raising=False)
    result = CliRunner().invoke(main, ["message", "publish", *args])
    assert result.exit_code == 2
    assert error in result.output


def test_publish_to_a_missing_topic_says_so_as_klio_does(pubsub: PubSub) -> None:
    absent = f"projects/{PROJECT}/topics/{unique('absent')}"
    result = CliRunner().invoke(main, ["message", "publish", "x-1", "--topic", absent])
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (
        f"Topic '{absent}' not found. Is there a running job subscribed to this topic? or is "
        "there a typo in the configured topic?"
    )
    assert "Traceback" not in result.output
