"""``klio message encode`` / ``klio message decode``, through click and one real process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from klio_runtime.cli import main
from klio_runtime.message import new_message, parse_exact, serialize, to_json
from klio_runtime.routing import JobRef

GOLDEN = json.loads((Path(__file__).parent / "golden_klio.json").read_text())


def _run(args: list[str], stdin: bytes | str | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, ["message", *args], input=stdin)


def test_decode_prints_proto_json_from_stdin() -> None:
    msg = new_message("track/ü", b"\xff", recipients=[JobRef("a", "p")])
    result = _run(["decode"], serialize(msg))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == json.loads(to_json(msg))


def test_decode_reads_a_file_of_klio_written_bytes(tmp_path: Path) -> None:
    case = next(c for c in GOLDEN["messages"] if c["name"] == "v2_audit_log")
    path = tmp_path / "msg.bin"
    path.write_bytes(bytes.fromhex(case["hex"]))
    result = _run(["decode", str(path)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == case["json"]


def test_decode_shows_bytes_as_written_unless_asked_to_upgrade() -> None:
    v1 = bytes.fromhex(next(c["hex"] for c in GOLDEN["messages"] if c["name"] == "v1_untagged"))
    exact = json.loads(_run(["decode"], v1).stdout)
    assert exact == {"data": {"entity_id": "track-0002"}}
    upgraded = json.loads(_run(["decode", "--upgrade"], v1).stdout)
    assert upgraded["version"] == "V1"
    assert upgraded["data"]["element"] == "dHJhY2stMDAwMg=="  # base64 of track-0002


def test_encode_writes_bytes_to_stdout_and_to_a_file(tmp_path: Path) -> None:
    msg = new_message("e", b"p", ping=True)
    result = _run(["encode"], to_json(msg))
    assert result.exit_code == 0, result.stderr
    assert result.stdout_bytes == serialize(msg)
    out = tmp_path / "out.bin"
    source = tmp_path / "in.json"
    source.write_text(to_json(msg))
    result = _run(["encode", str(source), "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    assert out.read_bytes() == serialize(msg)
    assert result.stdout_bytes == b""


def test_encode_then_decode_is_the_identity_on_klio_json() -> None:
    for case in GOLDEN["messages"]:
        encoded = _run(["encode"], json.dumps(case["json"]))
        assert encoded.stdout_bytes.hex() == case["hex"], case["name"]


def _assert_one_line_error(result, *needles: str) -> None:  # type: ignore[no-untyped-def]
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert "Traceback" not in result.output


def test_decode_refuses_bytes_that_are_not_a_klio_message() -> None:
    _assert_one_line_error(_run(["decode"], b"hello world"), "not a KlioMessage")
    _assert_one_line_error(_run(["decode"], serialize(new_message("e"))[:-1]), "not valid")
    _assert_one_line_error(_run(["decode"], to_json(new_message("e"))), "<stdin>")
    _assert_one_line_error(_run(["decode"], b""), "no element")


def test_encode_names_an_unknown_field() -> None:
    result = _run(["encode"], '{"data": {"element": "ZQ=="}, "metadata": {"pingg": true}}')
    _assert_one_line_error(result, '"pingg"')


def test_encode_names_a_wrong_type() -> None:
    result = _run(["encode"], '{"data": {"element": "ZQ=="}, "metadata": {"ping": "yes"}}')
    _assert_one_line_error(result, "KlioMessage.metadata.ping")
    _assert_one_line_error(_run(["encode"], '{"version": "V7"}'), "version")


def test_encode_refuses_json_without_an_element_and_non_json() -> None:
    _assert_one_line_error(_run(["encode"], '{"version": "V2"}'), "no element")
    _assert_one_line_error(_run(["encode"], "not json"), "not JSON")
    _assert_one_line_error(_run(["encode"], b"\xff\xfe"), "not UTF-8")
    _assert_one_line_error(_run(["encode"], "[" * 100_000 + "]" * 100_000), "nested too deeply")


_MAIN = "from klio_runtime.cli import main; main()"


@pytest.mark.slow  # three `klio` processes; its start-up imports Beam (~1.5 s each)
def test_real_process_pipes_encode_into_decode(tmp_path: Path) -> None:
    msg = new_message("spotify:track:1", b"\x00payload", force=True)
    script = Path(sys.executable).with_name("klio")  # the installed console script
    klio = [str(script)] if script.exists() else [sys.executable, "-c", _MAIN]
    encoded = subprocess.run(
        [*klio, "message", "encode"],
        input=to_json(msg).encode(),
        capture_output=True,
        check=True,
        timeout=60,
    )
    assert parse_exact(encoded.stdout) == msg
    decoded = subprocess.run(
        [*klio, "message", "decode"], input=encoded.stdout, capture_output=True, timeout=60
    )
    assert decoded.returncode == 0, decoded.stderr
    assert json.loads(decoded.stdout) == json.loads(to_json(msg))
    bad = subprocess.run(
        [*klio, "message", "decode"], input=b"garbage", capture_output=True, timeout=60
    )
    assert bad.returncode == 2
    assert bad.stderr.decode().count("\n") == 1
    assert b"Traceback" not in bad.stderr


def test_no_google_credentials_is_one_line_and_a_hint_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("PUBSUB_EMULATOR_HOST", "STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no gcloud application-default credentials
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:1")  # nor a metadata server
    runner = CliRunner()
    job = tmp_path / "job"
    created = runner.invoke(main, ["job", "create", "--job-name", "j", "--job-type", "streaming",
                                   "--gcp-project", "p", "--job-dir", str(job)])
    assert created.exit_code == 0, created.output
    for args in (["message", "publish", "-j", str(job), "e1"],
                 ["job", "verify", "-j", str(job), "--create-resources"]):
        result = runner.invoke(main, args)
        assert result.exit_code == 1, (args, result.output)
        assert "error: DefaultCredentialsError" in result.stderr
        assert "hint: gs:// data and Pub/Sub need Google credentials" in result.stderr
        assert result.exception is None or isinstance(result.exception, SystemExit)


def test_publish_refuses_a_bad_config_by_field_with_exit_2(tmp_path: Path) -> None:
    # as every other command (it exited 1, with click's own "Error:" line)
    (tmp_path / "klio-job.yaml").write_text("version: 2\njob_name: j\njob_config:\n  retries: x\n")
    result = CliRunner().invoke(main, ["message", "publish", "-j", str(tmp_path), "e1",
                                       "--topic", "projects/p/topics/t"])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("config error: ")
    assert "job_config.retries" in result.stderr
