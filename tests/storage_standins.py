"""Storage Read endpoints that misbehave as BigQuery can: real gRPC servers on loopback."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from typing import Any

import grpc  # type: ignore[import-untyped]
import pyarrow as pa
from google.cloud.bigquery_storage_v1 import types

_UNLIMITED = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]


class Refusing(grpc.GenericRpcHandler):  # type: ignore[misc]
    """Refuses every call, as BigQuery does a caller without bigquery.readsessions.create."""

    def service(self, details: Any) -> Any:
        def deny(request: bytes, context: grpc.ServicerContext) -> bytes:
            context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                "Permission bigquery.readsessions.create denied",
            )
            return b""

        return grpc.unary_unary_rpc_method_handler(deny)


class Paced(grpc.GenericRpcHandler):  # type: ignore[misc]
    """A Storage Read endpoint whose stream sends one Arrow batch every `gap` seconds."""

    def __init__(self, batches: list[pa.RecordBatch], gap: float) -> None:
        self.batches, self.gap = batches, gap

    def service(self, details: Any) -> Any:
        if details.method.endswith("/CreateReadSession"):
            return grpc.unary_unary_rpc_method_handler(self._session)
        return grpc.unary_stream_rpc_method_handler(self._rows)

    def _session(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        asked = types.CreateReadSessionRequest.deserialize(request)
        schema = self.batches[0].schema.serialize().to_pybytes()
        session = types.ReadSession(
            name="projects/p/locations/us/sessions/s", table=asked.read_session.table,
            data_format=types.DataFormat.ARROW,
            arrow_schema=types.ArrowSchema(serialized_schema=schema),
            streams=[types.ReadStream(name="projects/p/locations/us/sessions/s/streams/0")],
        )  # fmt: skip
        return types.ReadSession.serialize(session)

    def _rows(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        for batch in self.batches:
            time.sleep(self.gap)
            data = types.ArrowRecordBatch(serialized_record_batch=batch.serialize().to_pybytes())
            response = types.ReadRowsResponse(row_count=batch.num_rows, arrow_record_batch=data)
            yield types.ReadRowsResponse.serialize(response)


class Propagating(grpc.GenericRpcHandler):  # type: ignore[misc]
    """Refuses until the grant has propagated (`granted`), then forwards to a real endpoint."""

    def __init__(self, upstream: str) -> None:
        self.refusing = Refusing()
        self.granted = False
        self.channel = grpc.insecure_channel(upstream, options=_UNLIMITED)

    def service(self, details: Any) -> Any:
        if not self.granted:
            return self.refusing.service(details)
        if details.method.endswith("/ReadRows"):
            rows = self.channel.unary_stream(details.method)  # bytes in, bytes out
            return grpc.unary_stream_rpc_method_handler(lambda request, _: rows(request))
        call = self.channel.unary_unary(details.method)
        return grpc.unary_unary_rpc_method_handler(lambda request, _: call(request))


@contextmanager
def serving(handler: grpc.GenericRpcHandler) -> Iterator[str]:
    """A gRPC server on a free loopback port answering with `handler`; its host:port."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=_UNLIMITED)
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)
