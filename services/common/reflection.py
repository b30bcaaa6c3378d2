"""Server reflection that serves our contract's comments (``grpcurl describe`` shows them).

The generated ``_pb2`` modules register descriptors without source info, so stock
reflection answers with uncommented files. ``make proto`` also writes
``fleetward/descriptor_set.binpb`` (with ``--include_source_info``); this servicer
answers with those richer file descriptors for our own files and stock ones otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from typing import Any

import grpc
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

DESCRIPTOR_SET = ("fleetward", "descriptor_set.binpb")
# grpcio-reflection's typeshed stubs omit the servicer's internals we extend.
_StockServicer: Any = reflection.aio.ReflectionServicer
_add_servicer: Any = reflection_pb2_grpc.add_ServerReflectionServicer_to_server


def _commented_files() -> dict[str, bytes]:
    data = resources.files(DESCRIPTOR_SET[0]).joinpath(DESCRIPTOR_SET[1]).read_bytes()
    file_set = descriptor_pb2.FileDescriptorSet.FromString(data)
    return {f.name: f.SerializeToString() for f in file_set.file}


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
    """Register reflection for ``service_names`` (plus reflection itself) on ``server``."""
    _add_servicer(CommentedReflectionServicer([*service_names, reflection.SERVICE_NAME]), server)
