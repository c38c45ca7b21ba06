"""The Python view of the weir handler protocol: records, batches, results
and the errors that classify failures."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, List, Optional, Sequence, Tuple

# A header: (key, value); value None is a null header value.
Header = Tuple[str, Optional[bytes]]


class ErrorClass(enum.IntEnum):
    """Classifies a failure; the numbers are the protocol's ErrorClass."""

    UNSPECIFIED = 0
    #: The record is malformed; never retried (dead-lettered at once).
    INVALID_INPUT = 1
    #: A downstream dependency failed; retrying may succeed.
    TRANSIENT = 2
    #: The handler failed on this record (a bug).
    HANDLER = 3
    # TIMEOUT (4), CRASH (5) and BAD_REPLY (6) are set by the host only.
    TIMEOUT = 4
    CRASH = 5
    BAD_REPLY = 6

    @classmethod
    def parse(cls, name: str) -> "ErrorClass":
        """Parses "invalid_input", "INVALID_INPUT" or "1"."""
        if name.isdigit():
            return cls(int(name))
        return cls[name.upper()]


class Error(Exception):
    """An error with a class and a retryable flag.

    Raised from a per-record function it fails that record only; raised from
    a batch function it fails the whole batch (sent to the host as the
    protocol's BatchError)."""

    error_class: ErrorClass = ErrorClass.HANDLER
    retryable: bool = False

    def __init__(self, message: str = "", *, error_class: Optional[ErrorClass] = None,
                 retryable: Optional[bool] = None):
        super().__init__(message)
        if error_class is not None:
            self.error_class = ErrorClass(error_class)
        if retryable is not None:
            self.retryable = retryable


class Invalid(Error):
    """The record's own fault (malformed input): class invalid_input, never
    retried; the record goes to the dead-letter queue at once."""

    error_class = ErrorClass.INVALID_INPUT
    retryable = False


class Retryable(Error):
    """A transient failure (a dependency that may recover): class transient,
    retried with backoff."""

    error_class = ErrorClass.TRANSIENT
    retryable = True


def classify(exc: BaseException, *, per_record: bool) -> Tuple[ErrorClass, bool]:
    """Maps an exception to (class, retryable).

    weir_sdk.Error (Invalid, Retryable) carries its own. ConnectionError and
    TimeoutError are transient and retryable. Any other exception is a
    handler bug, class handler: not retryable when it concerns one record
    (retrying the same data hits the same bug), retryable when it fails a
    whole batch (so that the host's bisection can isolate the record that
    triggers it, as the Go SDK does for a panic)."""
    if isinstance(exc, Error):
        return exc.error_class, exc.retryable
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return ErrorClass.TRANSIENT, True
    return ErrorClass.HANDLER, not per_record


class Record:
    """One input record. key and value are None when absent (a null key, a
    tombstone), b"" when present and empty."""

    __slots__ = ("key", "value", "headers", "timestamp_ns", "offset", "sequence")

    def __init__(self, key: Optional[bytes], value: Optional[bytes], headers: List[Header],
                 timestamp_ns: int = 0, offset: int = 0, sequence: str = ""):
        self.key = key
        self.value = value
        #: In the order the source delivered them; keys may repeat.
        self.headers = headers
        #: Nanoseconds since the Unix epoch; 0 if unknown.
        self.timestamp_ns = timestamp_ns
        #: Kafka offset (0 for Kinesis).
        self.offset = offset
        #: Kinesis sequence number ("" for Kafka).
        self.sequence = sequence

    def header(self, key: str) -> Optional[bytes]:
        """The value of the last header named key, or None."""
        for k, v in reversed(self.headers):
            if k == key:
                return v
        return None

    def __repr__(self) -> str:
        return f"Record(key={self.key!r}, value={self.value!r}, offset={self.offset})"


@dataclass
class Batch:
    """The records of one partition, in order, handed to one call."""

    pipeline: str
    stream: str
    partition: str
    #: 1 on the first delivery of these records, then 2, 3, ...
    attempt: int
    #: When the host stops waiting, in seconds since the epoch; None for none.
    deadline: Optional[float]
    records: List[Record]

    def time_left(self) -> Optional[float]:
        """Seconds until the deadline (negative once past), or None."""
        return None if self.deadline is None else self.deadline - time.time()


@dataclass
class Out:
    """One message a per-record function emits to a sink."""

    sink: str
    value: Optional[bytes] = None
    key: Optional[bytes] = None
    headers: Sequence[Header] = ()
    #: Nanoseconds since the epoch; 0 lets the sink choose.
    timestamp_ns: int = 0


@dataclass
class Output:
    index: int
    sink: str
    key: Optional[bytes]
    value: Optional[bytes]
    headers: Sequence[Header]
    timestamp_ns: int = 0


@dataclass
class Failure:
    index: int
    message: str
    retryable: bool
    error_class: ErrorClass


@dataclass
class Result:
    """A handler's answer to a batch: outputs and per-record failures. A
    record without a failure succeeded (with zero or more outputs)."""

    outputs: List[Output] = field(default_factory=list)
    failures: List[Failure] = field(default_factory=list)

    def output(self, index: int, sink: str, value: Optional[bytes] = None, key: Optional[bytes] = None,
               headers: Sequence[Header] = (), timestamp_ns: int = 0) -> None:
        """Emits a message to sink, attributed to record index of the batch."""
        self.outputs.append(Output(index, sink, key, value, headers, timestamp_ns))

    def fail(self, index: int, error_class: ErrorClass, retryable: bool, message: str) -> None:
        """Marks record index as failed. Non-retryable failures go to the
        dead-letter queue at once; retryable ones are retried with backoff."""
        self.failures.append(Failure(index, message, retryable, ErrorClass(error_class)))

    def fail_exc(self, index: int, exc: BaseException) -> None:
        """Marks record index as failed by exc (see classify)."""
        cls, retryable = classify(exc, per_record=True)
        self.fail(index, cls, retryable, _message(exc))


#: A batch handler: takes a Batch, returns a Result. Raising fails the batch.
BatchFunc = Callable[[Batch], Result]
#: A per-record handler: takes a Record, returns the Outs it emits (or None).
RecordFunc = Callable[[Record], Optional[Iterable[Out]]]


def per_record(fn: RecordFunc) -> BatchFunc:
    """Makes a batch handler that calls fn for each record in order. An
    exception on one record fails only that record (see classify); the
    outputs of a failed record are dropped."""

    def handle(batch: Batch) -> Result:
        res = Result()
        outputs = res.outputs
        for i, r in enumerate(batch.records):
            try:
                outs = fn(r)
                if outs is None:
                    continue
                outs = list(outs)
            except Exception as exc:  # noqa: BLE001 - every exception fails the record
                res.fail_exc(i, exc)
                continue
            for o in outs:
                outputs.append(Output(i, o.sink, o.key, o.value, o.headers, o.timestamp_ns))
        return res

    handle.__name__ = getattr(fn, "__name__", "per_record")
    return handle


def _message(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, Error):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
