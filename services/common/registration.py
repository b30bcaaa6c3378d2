"""Registering a servicer from its service descriptor, with requests parsed safely.

The generated ``add_*Servicer_to_server`` functions hand grpc the messages' ``FromString``:
bytes that are not a valid message (bad UTF-8 in a string field, a truncated varint) then
fail inside grpc, which answers UNKNOWN "Unexpected <class 'DecodeError'>: …" before any
handler runs: no ErrorInfo, and a class name from inside the process. Registered here,
such a request reaches the handler as :class:`Malformed` and is answered INVALID_ARGUMENT
with the usual details. A server-streaming handler may
also yield ``bytes`` already serialized (a watch feed serializes each event once for all
its streams). Otherwise this registers exactly what the generated code does (both the
generic and the registered-method handlers, grpc's fast path).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import DecodeError, Message

from services.common.observe import Observer, wrap_stream, wrap_unary
from services.common.status import FieldViolation, invalid_argument

Context = grpc.aio.ServicerContext[Any, Any]


class Malformed:
    """Stands in for a request whose bytes are not a valid message of its type."""

    __slots__ = ("type_name",)

    def __init__(self, type_name: str) -> None:
        self.type_name = type_name


def _parser(message_class: type[Message]) -> Callable[[bytes], Message | Malformed]:
    def parse(data: bytes) -> Message | Malformed:
        try:
            return message_class.FromString(data)
        except DecodeError:
            return Malformed(message_class.DESCRIPTOR.full_name)

    return parse


def _serializer(message_class: type[Message]) -> Callable[[Message | bytes], bytes]:
    """Messages are serialized; bytes (a message serialized once for many streams) pass."""

    def serialize(item: Message | bytes) -> bytes:
        return item if isinstance(item, bytes) else item.SerializeToString()

    return serialize


async def _refuse(request: Malformed, context: Context) -> None:
    error = invalid_argument(
        [FieldViolation("request", f"is not a valid {request.type_name} message")]
    )
    await context.abort_with_status(error.to_status())


def _unary(method: Callable[[Any, Context], Awaitable[Any]]) -> Any:
    async def handle(request: Any, context: Context) -> Any:
        if isinstance(request, Malformed):
            await _refuse(request, context)
        return await method(request, context)

    return handle


def _server_stream(method: Callable[[Any, Context], AsyncIterator[Any]]) -> Any:
    async def handle(request: Any, context: Context) -> AsyncIterator[Any]:
        if isinstance(request, Malformed):
            await _refuse(request, context)
        async for item in method(request, context):
            yield item

    return handle


def add_servicer(
    server: grpc.aio.Server,
    servicer: Any,
    service: ServiceDescriptor,
    observers: Sequence[Observer] = (),
) -> None:
    """Register ``servicer``'s unary and server-streaming methods for ``service``.

    ``observers`` (metrics, the access log) see every call, malformed requests included.
    """
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for method in service.methods:
        request = message_factory.GetMessageClass(method.input_type)
        response = message_factory.GetMessageClass(method.output_type)
        behavior = getattr(servicer, method.name)
        path = f"/{service.full_name}/{method.name}"
        if method.client_streaming:
            raise NotImplementedError(f"{method.full_name}: client streaming")
        if method.server_streaming:
            handlers[method.name] = grpc.unary_stream_rpc_method_handler(
                wrap_stream(_server_stream(behavior), path, observers),
                request_deserializer=_parser(request),
                response_serializer=_serializer(response),
            )
        else:
            handlers[method.name] = grpc.unary_unary_rpc_method_handler(
                wrap_unary(_unary(behavior), path, observers),
                request_deserializer=_parser(request),
                response_serializer=response.SerializeToString,
            )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),)
    )
    server.add_registered_method_handlers(service.full_name, handlers)
