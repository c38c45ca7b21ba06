"""weir_sdk: write a weir handler in Python.

A handler is a function over a batch of records that returns outputs and
per-record failures, served as a plugin process of the weir host::

    import weir_sdk as weir

    def upper(record: weir.Record):
        if not record.value:
            raise weir.Invalid("empty value")  # dead-lettered, never retried
        return [weir.Out(sink="out", key=record.key, value=record.value.upper(),
                         headers=record.headers)]

    if __name__ == "__main__":
        weir.serve(weir.per_record(upper), name="upper", version="1.0.0")

See plugins/sdk/python/README.md.
"""

from ._server import MAX_MESSAGE_SIZE, PROTOCOL_VERSION, serve
from ._types import (Batch, BatchFunc, Error, ErrorClass, Failure, Header, Invalid, Out, Output, Record,
                     RecordFunc, Result, Retryable, classify, per_record)

__all__ = [
    "Batch", "BatchFunc", "Error", "ErrorClass", "Failure", "Header", "Invalid", "MAX_MESSAGE_SIZE", "Out",
    "Output", "PROTOCOL_VERSION", "Record", "RecordFunc", "Result", "Retryable", "classify", "per_record",
    "serve",
]
__version__ = "0.1.0"
