"""gRPC server reflection, both versions: ``grpc.reflection.v1`` and ``grpc.reflection.v1alpha``.

How this works. grpcio-reflection (1.85) ships only v1alpha. The v1 service is the
same protocol under another package name: the same messages with the same field
numbers, so the same bytes on the wire. We serve v1 with grpcio-reflection's own
servicer, decoding requests and encoding responses with the v1alpha messages, and
we add a v1 file descriptor (v1alpha's, renamed) to the default descriptor pool so
that ``grpc.reflection.v1.ServerReflection`` itself can be reflected like any
other listed service. Clients that speak only v1 (grpcurl, Postman, grpc-js,
recent grpc-java) and those that speak only v1alpha both work.
"""

from __future__ import annotations

from typing import Sequence

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection
from grpc_reflection.v1alpha import reflection_pb2 as v1alpha

V1_PACKAGE = "grpc.reflection.v1"
V1_FILE = "grpc/reflection/v1/reflection.proto"
V1_SERVICE = f"{V1_PACKAGE}.ServerReflection"
V1ALPHA_SERVICE = reflection.SERVICE_NAME
SERVICE_NAMES = (V1_SERVICE, V1ALPHA_SERVICE)


def v1_file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    """v1alpha's reflection.proto, as v1: package and type references renamed."""
    fd = descriptor_pb2.FileDescriptorProto()
    v1alpha.DESCRIPTOR.CopyToProto(fd)
    old = f".{fd.package}."
    fd.name, fd.package = V1_FILE, V1_PACKAGE
    for message in fd.message_type:
        for f in message.field:
            if f.type_name.startswith(old):
                f.type_name = f".{V1_PACKAGE}." + f.type_name[len(old):]
    for service in fd.service:
        for m in service.method:
            m.input_type = f".{V1_PACKAGE}." + m.input_type[len(old):]
            m.output_type = f".{V1_PACKAGE}." + m.output_type[len(old):]
    fd.options.Clear()
    return fd


def _register_v1(pool: descriptor_pool.DescriptorPool) -> None:
    try:
        pool.FindFileByName(V1_FILE)
    except KeyError:
        pool.Add(v1_file_descriptor())


def enable(service_names: Sequence[str], server: grpc.Server) -> None:
    """Serve reflection v1 and v1alpha on ``server`` for ``service_names`` (plus both reflection
    services themselves)."""
    pool = descriptor_pool.Default()
    _register_v1(pool)
    names = tuple(dict.fromkeys(tuple(service_names) + SERVICE_NAMES))
    servicer = reflection.ReflectionServicer(names, pool=pool)
    v1_handler = grpc.method_handlers_generic_handler(V1_SERVICE, {
        "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
            servicer.ServerReflectionInfo,
            request_deserializer=v1alpha.ServerReflectionRequest.FromString,
            response_serializer=v1alpha.ServerReflectionResponse.SerializeToString,
        ),
    })
    server.add_generic_rpc_handlers((v1_handler,))
    reflection.enable_server_reflection(names, server, pool=pool)
