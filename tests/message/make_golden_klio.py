"""Write tests/message/golden_klio.json with Spotify Klio's own protobuf code.

Not a test: it runs in a throwaway venv holding real Klio, never in the project venv.
    /root/.pyenv/versions/3.8.18/bin/python3.8 -m venv /tmp/klio-venv
    /tmp/klio-venv/bin/pip install 'klio-core==22.3.0' 'protobuf<4'
    /tmp/klio-venv/bin/python tests/message/make_golden_klio.py
Each case is built the way Klio's own code builds messages (klio_pb2 classes, SetInParent
for anyone); tests/message/test_golden_klio.py rebuilds the same content with our API.
"""

import json
import sys
from pathlib import Path

import google.protobuf
import klio_core
from google.protobuf import json_format
from klio_core.proto import klio_pb2

OUT = Path(__file__).resolve().parent / "golden_klio.json"


def job(name, project="", inputs=()):
    j = klio_pb2.KlioJob(job_name=name, gcp_project=project)
    for topic, subscription, location in inputs:
        j.inputs.add(topic=topic, subscription=subscription, data_location=location)
    return j


def audit(seconds, nanos, klio_job):
    item = klio_pb2.KlioJobAuditLogItem()
    item.timestamp.seconds = seconds
    item.timestamp.nanos = nanos
    item.klio_job.CopyFrom(klio_job)
    return item


def v1_downstream():
    m = klio_pb2.KlioMessage()
    m.version = klio_pb2.Version.V1
    m.data.entity_id = "track-0001"
    m.metadata.downstream.extend([job("child-job", "proj-a"), job("other", "proj-b")])
    return m


def v1_untagged():
    m = klio_pb2.KlioMessage()
    m.data.entity_id = "track-0002"
    return m


def v1_job_inputs():
    m = klio_pb2.KlioMessage()
    m.version = klio_pb2.Version.V1
    m.data.entity_id = "track-0003"
    m.data.payload = b"v1 payload"
    m.metadata.downstream.extend(
        [
            job(
                "child-job",
                "proj-a",
                [("projects/p/topics/t", "projects/p/subscriptions/s", "gs://bucket/in")],
            ),
        ]
    )
    m.metadata.visited.extend([job("root-job", "proj-a")])
    return m


def v2_anyone_payload():
    m = klio_pb2.KlioMessage()
    m.version = klio_pb2.Version.V2
    m.data.element = b"track-0004"
    m.data.payload = bytes(range(256))
    m.metadata.intended_recipients.anyone.SetInParent()
    return m


def v2_limited_trigger():
    m = klio_pb2.KlioMessage()
    m.version = klio_pb2.Version.V2
    m.data.element = b"track-0005"
    limited = m.metadata.intended_recipients.limited
    limited.recipients.extend([job("leaf-job", "proj-a"), job("parent-job", "proj-a")])
    limited.trigger_children_of.CopyFrom(job("leaf-job", "proj-a"))
    return m


def v2_limited_bottom_up():
    m = klio_pb2.KlioMessage()
    m.version = klio_pb2.Version.V2
    m.data.element = b"track-0006"
    m.metadata.intended_recipients.limited.recipients.extend([job("leaf-job")])
    return m


def v2_audit_log():
    m = klio_pb2.KlioMessage()
    m.version = klio_pb2.Version.V2
    m.data.element = b"track-0007"
    m.metadata.intended_recipients.anyone.SetInParent()
    m.metadata.job_audit_log.extend(
        [
            audit(1600000000, 0, job("root-job", "proj-a")),
            audit(1600000001, 123456789, job("child-job", "proj-a")),
        ]
    )
    return m


def v2_ping_force():
    m = klio_pb2.KlioMessage()
    m.version = klio_pb2.Version.V2
    m.data.element = b"track-0008"
    m.metadata.ping = True
    m.metadata.force = True
    m.metadata.intended_recipients.anyone.SetInParent()
    return m


def v2_non_ascii():
    m = klio_pb2.KlioMessage()
    m.version = klio_pb2.Version.V2
    m.data.element = "bände/曲-🎵".encode()
    m.data.payload = "ünïcødé payload".encode()
    m.metadata.intended_recipients.anyone.SetInParent()
    return m


def v2_untagged_element():
    m = klio_pb2.KlioMessage()
    m.data.element = b"track-0009"
    return m


CASES = [
    v1_downstream,
    v1_untagged,
    v1_job_inputs,
    v2_anyone_payload,
    v2_limited_trigger,
    v2_limited_bottom_up,
    v2_audit_log,
    v2_ping_force,
    v2_non_ascii,
    v2_untagged_element,
]


def main():
    messages = []
    for build in CASES:
        m = build()
        messages.append(
            {
                "name": build.__name__,
                "hex": m.SerializeToString().hex(),
                "json": json.loads(json_format.MessageToJson(m, preserving_proto_field_name=True)),
            }
        )
    doc = {
        "note": (
            "Bytes written by real Spotify Klio: klio-core {} (klio_core.proto.klio_pb2) with "
            "protobuf {} on Python {}.{}. Regenerate with tests/message/make_golden_klio.py "
            "(its docstring has the commands)."
        ).format(klio_core.__version__, google.protobuf.__version__, *sys.version_info[:2]),
        "messages": messages,
    }
    OUT.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {len(messages)} messages to {OUT}")


if __name__ == "__main__":
    main()
