"""Serving a handler as a go-plugin plugin over gRPC: the handshake, the
gRPC services go-plugin expects, and the conversion between the protocol's
messages and the Python types."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import threading
import traceback
from concurrent import futures
from typing import List, Optional

import grpc
from google.protobuf import any_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from ._pb import grpc_controller_pb2, grpc_controller_pb2_grpc, handler_pb2, handler_pb2_grpc, status_pb2
from ._types import Batch, BatchFunc, ErrorClass, Record, Result, _message, classify

#: The handler protocol version this SDK speaks (plugins.ProtocolVersion).
PROTOCOL_VERSION = 1
#: go-plugin's core protocol version.
CORE_PROTOCOL_VERSION = 1
#: The go-plugin handshake cookie (plugins.Handshake in the weir host).
MAGIC_COOKIE_KEY = "WEIR_PLUGIN"
MAGIC_COOKIE_VALUE = "b7c1f4e2-weir-handler-9d3a"
#: Largest gRPC message sent or accepted (plugins.MaxMessageSize).
MAX_MESSAGE_SIZE = 64 << 20

_STATUS_DETAILS_KEY = "grpc-status-details-bin"
_BATCH_ERROR_TYPE_URL = "type.googleapis.com/weir.handler.v1.BatchError"


def _opt(msg, name: str) -> Optional[bytes]:
    return getattr(msg, name) if msg.HasField(name) else None


def batch_from_pb(req: handler_pb2.Batch) -> Batch:
    records: List[Record] = []
    append = records.append
    for r in req.records:
        headers = [(h.key, h.value if h.HasField("value") else None) for h in r.headers] if r.headers else []
        append(Record(
            r.key if r.HasField("key") else None,
            r.value if r.HasField("value") else None,
            headers, r.timestamp_unix_nano, r.offset, r.sequence,
        ))
    deadline = req.deadline_unix_nano / 1e9 if req.deadline_unix_nano else None
    return Batch(req.pipeline, req.stream, req.partition, req.attempt, deadline, records)


def _bytes(v) -> Optional[bytes]:
    if v is None or isinstance(v, bytes):
        return v
    if isinstance(v, str):
        return v.encode("utf-8")
    return bytes(v)


def _headers_to_pb(headers) -> list:
    out = []
    for k, v in headers:
        h = handler_pb2.Header(key=k)
        if v is not None:
            h.value = _bytes(v)
        out.append(h)
    return out


def result_to_pb(res: Optional[Result]) -> handler_pb2.Result:
    out = handler_pb2.Result()
    if res is None:
        return out
    if not isinstance(res, Result):
        raise TypeError(f"handler returned {type(res).__name__}, want weir_sdk.Result or None")
    outputs = out.outputs
    for o in res.outputs:
        p = outputs.add(index=o.index, sink=o.sink, timestamp_unix_nano=o.timestamp_ns)
        if o.key is not None:
            p.key = _bytes(o.key)
        if o.value is not None:
            p.value = _bytes(o.value)
        if o.headers:
            p.headers.extend(_headers_to_pb(o.headers))
    for f in res.failures:
        out.failures.add(index=f.index, message=f.message, retryable=f.retryable, **{"class": int(f.error_class)})
    return out


def _abort_with_batch_error(context: grpc.ServicerContext, cls: ErrorClass, retryable: bool, message: str):
    """Fails the call as a whole with a BatchError in the status details,
    as the Go SDK does (plugins.errorToStatus)."""
    code = grpc.StatusCode.INVALID_ARGUMENT if cls == ErrorClass.INVALID_INPUT else grpc.StatusCode.UNKNOWN
    be = handler_pb2.BatchError(retryable=retryable, message=message, **{"class": int(cls)})
    st = status_pb2.Status(code=code.value[0], message=message,
                           details=[any_pb2.Any(type_url=_BATCH_ERROR_TYPE_URL, value=be.SerializeToString())])
    context.set_trailing_metadata(((_STATUS_DETAILS_KEY, st.SerializeToString()),))
    context.abort(code, message)


class _HandlerServicer(handler_pb2_grpc.HandlerServicer):
    def __init__(self, fn: BatchFunc, name: str, version: str):
        self._fn = fn
        self._name = name
        self._version = version

    def Describe(self, request, context):
        return handler_pb2.DescribeResponse(name=self._name, version=self._version,
                                            protocol_version=PROTOCOL_VERSION)

    def Handle(self, request, context):
        try:
            res = self._fn(batch_from_pb(request))
            return result_to_pb(res)
        except Exception as exc:  # noqa: BLE001 - every exception fails the batch
            cls, retryable = classify(exc, per_record=False)
            if cls == ErrorClass.HANDLER:
                traceback.print_exc(file=sys.stderr)
            msg = _message(exc)
        _abort_with_batch_error(context, cls, retryable, msg)


class _ControllerServicer(grpc_controller_pb2_grpc.GRPCControllerServicer):
    """go-plugin's plugin.GRPCController: the host's Client.Kill calls
    Shutdown, and the process exits at once instead of being killed after
    two seconds."""

    def __init__(self, stop: threading.Event):
        self._stop = stop

    def Shutdown(self, request, context):
        self._stop.set()
        return grpc_controller_pb2.Empty()


def _max_reply_bytes() -> int:
    """The largest reply the host accepts (WEIR_MAX_REPLY_BYTES, set by the
    host from handler.max_reply_bytes), else MAX_MESSAGE_SIZE."""
    try:
        n = int(os.environ.get("WEIR_MAX_REPLY_BYTES", ""))
    except ValueError:
        return MAX_MESSAGE_SIZE
    return n if n > 0 else MAX_MESSAGE_SIZE


def serve(handler: BatchFunc, *, name: str, version: str = "0.0.0", max_workers: int = 4) -> None:
    """Serves handler as a weir handler plugin until the host shuts it down,
    then exits the process.

    handler takes a weir_sdk.Batch and returns a weir_sdk.Result (or None
    for no outputs and no failures); raising fails the whole batch (see
    weir_sdk.classify). Wrap a function of one record with per_record.

    It must be the only thing the process writes to stdout before it is
    called: go-plugin reads its handshake line there. Afterwards stdout is
    redirected to stderr, which the host logs line by line. A process not
    started by a weir host prints a notice and exits with status 1."""
    if os.environ.get(MAGIC_COOKIE_KEY) != MAGIC_COOKIE_VALUE:
        sys.stderr.write(
            "This program is a weir handler plugin: it is started by the weir host "
            "(weir run), not by hand.\n")
        sys.exit(1)
    # The host handles Ctrl-C (it reaches the whole process group) and asks
    # us to stop through Shutdown, as go-plugin's Go servers do.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    sock_dir = tempfile.mkdtemp(prefix="weir-plugin-", dir=os.environ.get("PLUGIN_UNIX_SOCKET_DIR") or None)
    sock = os.path.join(sock_dir, "plugin.sock")
    opts = [("grpc.max_receive_message_length", MAX_MESSAGE_SIZE),
            ("grpc.max_send_message_length", _max_reply_bytes())]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers), options=opts)
    stop = threading.Event()
    handler_pb2_grpc.add_HandlerServicer_to_server(_HandlerServicer(handler, name, version), server)
    grpc_controller_pb2_grpc.add_GRPCControllerServicer_to_server(_ControllerServicer(stop), server)
    hs = health.HealthServicer()
    hs.set("plugin", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(hs, server)
    server.add_insecure_port("unix:" + sock)
    server.start()

    sys.stdout.write(f"{CORE_PROTOCOL_VERSION}|{PROTOCOL_VERSION}|unix|{sock}|grpc\n")
    sys.stdout.flush()
    # From here on stdout belongs to the handler's logs: send it to stderr.
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    finally:
        server.stop(grace=1).wait()
        shutil.rmtree(sock_dir, ignore_errors=True)
    sys.exit(0)
