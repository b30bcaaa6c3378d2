"""Server reflection as grpc.reflection.v1 and v1alpha, on both real services
(docs/architecture.md §9).

Newer grpcurl and ``buf curl`` ask for v1 first. This test's v1 client is built from its
own copy of the official ``grpc/reflection/v1/reflection.proto`` messages (the fields it
uses), not from anything the server module defines, so it checks the wire contract.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format
from grpc_reflection.v1alpha import reflection_pb2 as v1alpha_pb2

from tests.conftest import Secrets
from tests.servers import running_action_server, running_policy_server, write_test_policy

V1 = "grpc.reflection.v1.ServerReflection"
V1ALPHA = "grpc.reflection.v1alpha.ServerReflection"
HEALTH = "grpc.health.v1.Health"
SERVICES = {  # name, its file, a comment of the contract
    "policy": (
        "fleetward.policy.v1.PolicyService",
        "fleetward/policy/v1/policy.proto",
        "PolicyService answers permission questions",
    ),
    "actions": (
        "fleetward.actions.v1.ActionService",
        "fleetward/actions/v1/actions.proto",
        "ActionService runs actions on the fleet",
    ),
}

# The official v1 messages (grpc-proto's grpc/reflection/v1/reflection.proto), with the
# fields this test reads or sends; unknown fields would simply be skipped when parsing.
OFFICIAL_V1 = """
name: "official/grpc/reflection/v1/reflection.proto"
package: "grpc.reflection.v1"
syntax: "proto3"
message_type {
  name: "ServerReflectionRequest"
  field { name: "host" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING }
  field { name: "file_by_filename" number: 3 label: LABEL_OPTIONAL type: TYPE_STRING
          oneof_index: 0 }
  field { name: "file_containing_symbol" number: 4 label: LABEL_OPTIONAL type: TYPE_STRING
          oneof_index: 0 }
  field { name: "list_services" number: 7 label: LABEL_OPTIONAL type: TYPE_STRING
          oneof_index: 0 }
  oneof_decl { name: "message_request" }
}
message_type {
  name: "ServerReflectionResponse"
  field { name: "valid_host" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING }
  field { name: "original_request" number: 2 label: LABEL_OPTIONAL type: TYPE_MESSAGE
          type_name: ".grpc.reflection.v1.ServerReflectionRequest" }
  field { name: "file_descriptor_response" number: 4 label: LABEL_OPTIONAL type: TYPE_MESSAGE
          type_name: ".grpc.reflection.v1.FileDescriptorResponse" oneof_index: 0 }
  field { name: "list_services_response" number: 6 label: LABEL_OPTIONAL type: TYPE_MESSAGE
          type_name: ".grpc.reflection.v1.ListServiceResponse" oneof_index: 0 }
  field { name: "error_response" number: 7 label: LABEL_OPTIONAL type: TYPE_MESSAGE
          type_name: ".grpc.reflection.v1.ErrorResponse" oneof_index: 0 }
  oneof_decl { name: "message_response" }
}
message_type {
  name: "FileDescriptorResponse"
  field { name: "file_descriptor_proto" number: 1 label: LABEL_REPEATED type: TYPE_BYTES }
}
message_type {
  name: "ListServiceResponse"
  field { name: "service" number: 1 label: LABEL_REPEATED type: TYPE_MESSAGE
          type_name: ".grpc.reflection.v1.ServiceResponse" }
}
message_type {
  name: "ServiceResponse"
  field { name: "name" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING }
}
message_type {
  name: "ErrorResponse"
  field { name: "error_code" number: 1 label: LABEL_OPTIONAL type: TYPE_INT32 }
  field { name: "error_message" number: 2 label: LABEL_OPTIONAL type: TYPE_STRING }
}
"""


def _official_v1() -> tuple[descriptor_pb2.FileDescriptorProto, Any, Any]:
    """The official v1 file (as parsed here) and its request and response classes, from a
    pool of this test's own."""
    proto = text_format.Parse(OFFICIAL_V1, descriptor_pb2.FileDescriptorProto())
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(proto.SerializeToString())
    request = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("grpc.reflection.v1.ServerReflectionRequest")
    )
    response = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("grpc.reflection.v1.ServerReflectionResponse")
    )
    return proto, request, response


OFFICIAL_FILE, V1_REQUEST, V1_RESPONSE = _official_v1()
MESSAGES = {
    V1: (V1_REQUEST, V1_RESPONSE),
    V1ALPHA: (v1alpha_pb2.ServerReflectionRequest, v1alpha_pb2.ServerReflectionResponse),
}


@dataclass(frozen=True)
class Targets:
    """Where the two real services listen."""

    policy: str
    actions: str

    def of(self, service: str) -> str:
        """The target of ``policy`` or ``actions``."""
        return self.policy if service == "policy" else self.actions


@pytest.fixture(scope="module")
async def targets(
    tmp_path_factory: pytest.TempPathFactory, database_dsn: str, dev_secrets: Secrets
) -> AsyncIterator[Targets]:
    """The policy and the action service, each on port 0."""
    policy_dir: Path = write_test_policy(tmp_path_factory.mktemp("reflection-policy"))
    async with (
        running_policy_server(policy_dir, dev_secrets) as policy,
        running_action_server(database_dsn, policy, dev_secrets) as actions,
    ):
        yield Targets(policy=policy, actions=actions)


async def _ask(target: str, version: str, *requests: dict[str, str]) -> list[Any]:
    """One ServerReflectionInfo stream on ``version``: send ``requests``, read the answers."""
    request_class, response_class = MESSAGES[version]
    async with grpc.aio.insecure_channel(target) as channel:
        call: grpc.aio.StreamStreamMultiCallable[Any, Any] = channel.stream_stream(
            f"/{version}/ServerReflectionInfo",
            request_serializer=lambda message: message.SerializeToString(),
            response_deserializer=response_class.FromString,
        )
        stream = call(iter([request_class(**fields) for fields in requests]))
        return [answer async for answer in stream]


def _files(answer: Any) -> list[descriptor_pb2.FileDescriptorProto]:
    assert answer.HasField("file_descriptor_response"), answer
    raw = answer.file_descriptor_response.file_descriptor_proto
    return [descriptor_pb2.FileDescriptorProto.FromString(data) for data in raw]


def _leading_comments(file: descriptor_pb2.FileDescriptorProto) -> str:
    return " ".join(loc.leading_comments for loc in file.source_code_info.location)


@pytest.mark.parametrize("version", [V1, V1ALPHA])
@pytest.mark.parametrize("service", list(SERVICES))
async def test_each_version_lists_the_services(
    targets: Targets, service: str, version: str
) -> None:
    (answer,) = await _ask(targets.of(service), version, {"list_services": ""})
    listed = {s.name for s in answer.list_services_response.service}

    assert listed == {SERVICES[service][0], HEALTH, V1, V1ALPHA}


@pytest.mark.parametrize("version", [V1, V1ALPHA])
@pytest.mark.parametrize("service", list(SERVICES))
async def test_each_version_serves_our_files_with_their_comments(
    targets: Targets, service: str, version: str
) -> None:
    name, filename, comment = SERVICES[service]
    by_symbol, by_name = await _ask(
        targets.of(service),
        version,
        {"file_containing_symbol": name},
        {"file_by_filename": filename},
    )
    for answer in (by_symbol, by_name):
        ours = _files(answer)[0]
        assert ours.name == filename
        assert comment in _leading_comments(ours)


async def test_v1_describes_itself_with_the_official_messages(targets: Targets) -> None:
    (answer,) = await _ask(targets.policy, V1, {"file_containing_symbol": V1})
    (served,) = _files(answer)

    assert served.name == "grpc/reflection/v1/reflection.proto"
    assert served.package == "grpc.reflection.v1"
    assert not served.options.deprecated
    fields = {
        m.name: {f.name: (f.number, f.type_name) for f in m.field} for m in served.message_type
    }
    for message in OFFICIAL_FILE.message_type:
        for field in message.field:
            assert fields[message.name][field.name] == (field.number, field.type_name)
    (method,) = served.service[0].method
    assert (method.input_type, method.output_type) == (
        ".grpc.reflection.v1.ServerReflectionRequest",
        ".grpc.reflection.v1.ServerReflectionResponse",
    )
    assert (method.client_streaming, method.server_streaming) == (True, True)


async def test_v1_answers_an_unknown_symbol_with_not_found(targets: Targets) -> None:
    (answer,) = await _ask(targets.actions, V1, {"file_containing_symbol": "no.such.Thing"})

    assert answer.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]
    assert answer.original_request.file_containing_symbol == "no.such.Thing"
