#!/usr/bin/env python3
"""The Python SDK's conformance handler (see plugins/conformance).

Echoes each record (key, value, headers) to sink "out", except a record
whose value is
  FAIL:<class>:<retryable>        fails that record with that class and flag,
  BATCHFAIL:<class>:<retryable>   fails the whole batch so,
  CRASH                           exits the process with status 3,
  SLEEP:<ms>                      sleeps, then echoes.
With WEIR_CONFORMANCE_NOOP=1 it emits nothing (for benchmarks).
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import weir_sdk as weir  # noqa: E402

NAME, VERSION = "conformance", "1.0.0"


def handle(batch: weir.Batch) -> weir.Result:
    res = weir.Result()
    for i, r in enumerate(batch.records):
        v = r.value
        if v is not None and v[:4] in (b"FAIL", b"BATC", b"CRAS", b"SLEE"):
            text = v.decode("utf-8", "replace")
            if text == "CRASH":
                sys.stderr.write("conformance: CRASH record; exiting\n")
                sys.stderr.flush()
                os._exit(3)
            if text.startswith("SLEEP:"):
                time.sleep(int(text[6:]) / 1000)
            elif text.startswith("FAIL:"):
                _, cls, retryable = text.split(":", 2)
                res.fail(i, weir.ErrorClass.parse(cls), retryable == "true", text)
                continue
            elif text.startswith("BATCHFAIL:"):
                _, cls, retryable = text.split(":", 2)
                raise weir.Error(text, error_class=weir.ErrorClass.parse(cls), retryable=retryable == "true")
        res.output(i, "out", key=r.key, value=v, headers=r.headers)
    return res


def noop(batch: weir.Batch) -> weir.Result:
    return weir.Result()


if __name__ == "__main__":
    weir.serve(noop if os.environ.get("WEIR_CONFORMANCE_NOOP") == "1" else handle, name=NAME, version=VERSION)
