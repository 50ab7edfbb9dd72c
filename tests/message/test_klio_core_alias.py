"""Klio's import names give our generated module itself, not a copy."""

from __future__ import annotations

import subprocess
import sys

from klio_runtime.message import KlioMessage, new_message, serialize
from klio_runtime.proto import klio_pb2


def test_klio_core_proto_is_our_module() -> None:
    import klio_core.proto.klio_pb2
    import klio_core.proto.v1beta1.klio_pb2
    from klio_core.proto import klio_pb2 as via_from
    from klio_core.proto.v1beta1 import klio_pb2 as v1beta1

    assert via_from is klio_pb2
    assert klio_core.proto.klio_pb2 is klio_pb2
    assert v1beta1 is klio_pb2
    assert klio_core.proto.v1beta1.klio_pb2 is klio_pb2
    assert via_from.KlioMessage is KlioMessage


def test_klio_style_code_reads_our_bytes() -> None:
    from klio_core.proto import klio_pb2 as klio

    kmsg = klio.KlioMessage()
    kmsg.ParseFromString(serialize(new_message("track-1")))
    assert kmsg.version == klio.Version.V2
    assert kmsg.metadata.intended_recipients.WhichOneof("recipients") == "anyone"


def test_alias_imports_outside_the_checkout(tmp_path) -> None:  # type: ignore[no-untyped-def]
    code = (
        "from klio_core.proto import klio_pb2 as a; "
        "from klio_runtime.proto import klio_pb2 as b; "
        "print(a is b)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"
