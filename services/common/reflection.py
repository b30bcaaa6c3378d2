"""Server reflection that serves our contract's comments (``grpcurl describe`` shows them).

The generated ``_pb2`` modules register descriptors without source info, so stock
reflection answers with uncommented files. ``make proto`` also writes
``fleetward/descriptor_set.binpb`` (with ``--include_source_info``); this servicer
answers with those richer file descriptors for our own files and stock ones otherwise.

It answers as ``grpc.reflection.v1`` (what newer grpcurl and ``buf curl`` ask first) and
as ``grpc.reflection.v1alpha``: one servicer behind both names. grpcio-reflection ships
only v1alpha, but v1 is the same protocol under a stable package (every message and
field number alike), so the same messages serve both, and v1's descriptor, v1alpha's
renamed, goes into the default pool for clients that describe the reflection service.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2

DESCRIPTOR_SET = ("fleetward", "descriptor_set.binpb")
V1ALPHA_SERVICE_NAME = reflection.SERVICE_NAME
V1_SERVICE_NAME = "grpc.reflection.v1.ServerReflection"
V1_FILE = "grpc/reflection/v1/reflection.proto"
_V1ALPHA_PACKAGE = reflection_pb2.DESCRIPTOR.package
_V1_PACKAGE = V1_SERVICE_NAME.rpartition(".")[0]
# grpcio-reflection's typeshed stubs omit the servicer's internals we extend.
_StockServicer: Any = reflection.aio.ReflectionServicer


def _commented_files() -> dict[str, bytes]:
    data = resources.files(DESCRIPTOR_SET[0]).joinpath(DESCRIPTOR_SET[1]).read_bytes()
    file_set = descriptor_pb2.FileDescriptorSet.FromString(data)
    return {f.name: f.SerializeToString() for f in file_set.file}


def v1_file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    """``grpc/reflection/v1/reflection.proto``: v1alpha's file under v1's name and package."""
    proto = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(proto)
    proto.name, proto.package = V1_FILE, _V1_PACKAGE
    proto.ClearField("options")  # v1alpha's are deprecated: true and its java/go packages
    old, new = f".{_V1ALPHA_PACKAGE}.", f".{_V1_PACKAGE}."
    for message in proto.message_type:
        for field in message.field:
            if field.type_name.startswith(old):
                field.type_name = new + field.type_name.removeprefix(old)
    for service in proto.service:
        for method in service.method:
            method.input_type = new + method.input_type.removeprefix(old)
            method.output_type = new + method.output_type.removeprefix(old)
    return proto


def _register_v1_descriptor() -> None:
    """Put v1's descriptor into the default pool once (reflection resolves symbols there)."""
    pool = descriptor_pool.Default()
    try:
        pool.FindFileByName(V1_FILE)
    except KeyError:
        pool.AddSerializedFile(v1_file_descriptor().SerializeToString())


class CommentedReflectionServicer(_StockServicer):  # type: ignore[misc]
    """Stock async reflection, with our files' descriptors swapped for commented ones."""

    def __init__(self, service_names: Sequence[str]) -> None:
        super().__init__(service_names)
        self._commented = _commented_files()

    def _swap(self, response: reflection_pb2.ServerReflectionResponse) -> Any:
        if response.HasField("file_descriptor_response"):
            files = response.file_descriptor_response.file_descriptor_proto
            for i, raw in enumerate(files):
                name = descriptor_pb2.FileDescriptorProto.FromString(raw).name
                if name in self._commented:
                    files[i] = self._commented[name]
        return response

    def _file_by_filename(self, request: Any, filename: str) -> Any:
        return self._swap(super()._file_by_filename(request, filename))

    def _file_containing_symbol(self, request: Any, fully_qualified_name: str) -> Any:
        return self._swap(super()._file_containing_symbol(request, fully_qualified_name))

    def _file_containing_extension(
        self, request: Any, containing_type: str, extension_number: int
    ) -> Any:
        return self._swap(
            super()._file_containing_extension(request, containing_type, extension_number)
        )


def enable(server: grpc.aio.Server, service_names: Sequence[str]) -> None:
    """Register reflection, v1 and v1alpha, for ``service_names`` (and itself) on ``server``."""
    _register_v1_descriptor()
    names = (V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME)
    servicer = CommentedReflectionServicer([*service_names, *names])
    handlers = {
        "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
            servicer.ServerReflectionInfo,
            request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
            response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
        )
    }
    for name in names:  # as the generated add_…_to_server registers one service
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))
        server.add_registered_method_handlers(name, handlers)
