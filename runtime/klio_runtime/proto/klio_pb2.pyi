import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Version(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UNKNOWN: _ClassVar[Version]
    V1: _ClassVar[Version]
    V2: _ClassVar[Version]
UNKNOWN: Version
V1: Version
V2: Version

class KlioMessage(_message.Message):
    __slots__ = ("metadata", "data", "version")
    class Metadata(_message.Message):
        __slots__ = ("downstream", "visited", "job_audit_log", "force", "ping", "intended_recipients")
        class Recipients(_message.Message):
            __slots__ = ("anyone", "limited")
            class Anyone(_message.Message):
                __slots__ = ()
                def __init__(self) -> None: ...
            class Limited(_message.Message):
                __slots__ = ("recipients", "trigger_children_of")
                RECIPIENTS_FIELD_NUMBER: _ClassVar[int]
                TRIGGER_CHILDREN_OF_FIELD_NUMBER: _ClassVar[int]
                recipients: _containers.RepeatedCompositeFieldContainer[KlioJob]
                trigger_children_of: KlioJob
                def __init__(self, recipients: _Optional[_Iterable[_Union[KlioJob, _Mapping]]] = ..., trigger_children_of: _Optional[_Union[KlioJob, _Mapping]] = ...) -> None: ...
            ANYONE_FIELD_NUMBER: _ClassVar[int]
            LIMITED_FIELD_NUMBER: _ClassVar[int]
            anyone: KlioMessage.Metadata.Recipients.Anyone
            limited: KlioMessage.Metadata.Recipients.Limited
            def __init__(self, anyone: _Optional[_Union[KlioMessage.Metadata.Recipients.Anyone, _Mapping]] = ..., limited: _Optional[_Union[KlioMessage.Metadata.Recipients.Limited, _Mapping]] = ...) -> None: ...
        DOWNSTREAM_FIELD_NUMBER: _ClassVar[int]
        VISITED_FIELD_NUMBER: _ClassVar[int]
        JOB_AUDIT_LOG_FIELD_NUMBER: _ClassVar[int]
        FORCE_FIELD_NUMBER: _ClassVar[int]
        PING_FIELD_NUMBER: _ClassVar[int]
        INTENDED_RECIPIENTS_FIELD_NUMBER: _ClassVar[int]
        downstream: _containers.RepeatedCompositeFieldContainer[KlioJob]
        visited: _containers.RepeatedCompositeFieldContainer[KlioJob]
        job_audit_log: _containers.RepeatedCompositeFieldContainer[KlioJobAuditLogItem]
        force: bool
        ping: bool
        intended_recipients: KlioMessage.Metadata.Recipients
        def __init__(self, downstream: _Optional[_Iterable[_Union[KlioJob, _Mapping]]] = ..., visited: _Optional[_Iterable[_Union[KlioJob, _Mapping]]] = ..., job_audit_log: _Optional[_Iterable[_Union[KlioJobAuditLogItem, _Mapping]]] = ..., force: _Optional[bool] = ..., ping: _Optional[bool] = ..., intended_recipients: _Optional[_Union[KlioMessage.Metadata.Recipients, _Mapping]] = ...) -> None: ...
    class Data(_message.Message):
        __slots__ = ("entity_id", "payload", "element")
        ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
        PAYLOAD_FIELD_NUMBER: _ClassVar[int]
        ELEMENT_FIELD_NUMBER: _ClassVar[int]
        entity_id: str
        payload: bytes
        element: bytes
        def __init__(self, entity_id: _Optional[str] = ..., payload: _Optional[bytes] = ..., element: _Optional[bytes] = ...) -> None: ...
    METADATA_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    metadata: KlioMessage.Metadata
    data: KlioMessage.Data
    version: Version
    def __init__(self, metadata: _Optional[_Union[KlioMessage.Metadata, _Mapping]] = ..., data: _Optional[_Union[KlioMessage.Data, _Mapping]] = ..., version: _Optional[_Union[Version, str]] = ...) -> None: ...

class KlioJob(_message.Message):
    __slots__ = ("job_name", "gcp_project", "inputs")
    class JobInput(_message.Message):
        __slots__ = ("topic", "subscription", "data_location")
        TOPIC_FIELD_NUMBER: _ClassVar[int]
        SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
        DATA_LOCATION_FIELD_NUMBER: _ClassVar[int]
        topic: str
        subscription: str
        data_location: str
        def __init__(self, topic: _Optional[str] = ..., subscription: _Optional[str] = ..., data_location: _Optional[str] = ...) -> None: ...
    JOB_NAME_FIELD_NUMBER: _ClassVar[int]
    GCP_PROJECT_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    job_name: str
    gcp_project: str
    inputs: _containers.RepeatedCompositeFieldContainer[KlioJob.JobInput]
    def __init__(self, job_name: _Optional[str] = ..., gcp_project: _Optional[str] = ..., inputs: _Optional[_Iterable[_Union[KlioJob.JobInput, _Mapping]]] = ...) -> None: ...

class KlioJobAuditLogItem(_message.Message):
    __slots__ = ("timestamp", "klio_job")
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    KLIO_JOB_FIELD_NUMBER: _ClassVar[int]
    timestamp: _timestamp_pb2.Timestamp
    klio_job: KlioJob
    def __init__(self, timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., klio_job: _Optional[_Union[KlioJob, _Mapping]] = ...) -> None: ...
