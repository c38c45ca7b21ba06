#!/usr/bin/env python3
"""ETL example: JSON order events in, validated, enriched and flattened rows
out (one row per order line, to the sink "rows"); a malformed order fails as
invalid_input, which the host sends to the DLQ without retrying.

An order event (the record's value):

    {"order_id": "o-1001", "created_at": "2026-03-01T12:00:00Z",
     "currency": "EUR", "customer": {"id": "c-7", "country": "DE"},
     "items": [{"sku": "tea-01", "qty": 2, "unit_price": 4.5}]}

A row (the output's value, keyed by order_id, header weir-handler):

    {"order_id": "o-1001", "line": 0, "created_at": "2026-03-01T12:00:00Z",
     "customer_id": "c-7", "country": "DE", "region": "EMEA", "sku": "tea-01",
     "qty": 2, "unit_price": 4.5, "currency": "EUR", "line_total": 9.0,
     "line_total_eur": 9.0, "order_total": 9.0, "order_lines": 1,
     "vat_rate": 0.19}

Environment (set in weir.yaml's handler.env):
    ETL_OUTPUT_SINK   the sink rows go to (default "rows")
"""

import json
import os
import sys
from datetime import datetime

# Use the SDK from this repository (plugins/sdk/python) without installing it.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "plugins", "sdk", "python"))

import weir_sdk as weir  # noqa: E402

NAME, VERSION = "etl-orders", "1.0.0"
SINK = os.environ.get("ETL_OUTPUT_SINK", "rows")

# Enrichment tables: a real handler would load these at start.
REGIONS = {"DE": "EMEA", "FR": "EMEA", "GB": "EMEA", "NL": "EMEA", "US": "AMER", "CA": "AMER",
           "BR": "AMER", "JP": "APAC", "AU": "APAC", "IN": "APAC"}
VAT = {"DE": 0.19, "FR": 0.20, "GB": 0.20, "NL": 0.21, "JP": 0.10, "AU": 0.10, "IN": 0.18}
EUR_RATE = {"EUR": 1.0, "USD": 0.92, "GBP": 1.17, "JPY": 0.0062, "AUD": 0.61, "CAD": 0.68,
            "BRL": 0.18, "INR": 0.011}
HEADERS = [("weir-handler", f"{NAME}/{VERSION}".encode())]


def _require(obj, field, kind, where="order"):
    if field not in obj:
        raise weir.Invalid(f"{where}: missing field {field!r}")
    v = obj[field]
    if not isinstance(v, kind) or isinstance(v, bool) and kind is not bool:
        raise weir.Invalid(f"{where}.{field}: {type(v).__name__} {v!r} is not a {getattr(kind, '__name__', kind)}")
    return v


def transform(record: weir.Record):
    """One order to its rows, or weir.Invalid saying what is wrong with it."""
    if not record.value:
        raise weir.Invalid("empty value: want a JSON order")
    try:
        order = json.loads(record.value)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise weir.Invalid(f"not JSON: {e}") from None
    if not isinstance(order, dict):
        raise weir.Invalid(f"want a JSON object, got {type(order).__name__}")
    order_id = _require(order, "order_id", str)
    if not order_id:
        raise weir.Invalid("order_id is empty")
    created_at = _require(order, "created_at", str)
    try:
        datetime.fromisoformat(created_at.replace("Z", "+00:00"))
    except ValueError:
        raise weir.Invalid(f"created_at: {created_at!r} is not an ISO 8601 time") from None
    currency = _require(order, "currency", str)
    if currency not in EUR_RATE:
        raise weir.Invalid(f"currency: unknown {currency!r}")
    customer = _require(order, "customer", dict)
    customer_id = _require(customer, "id", str, "customer")
    country = _require(customer, "country", str, "customer").upper()
    items = _require(order, "items", list)
    if not items:
        raise weir.Invalid("items: no order lines")

    lines = []
    for n, item in enumerate(items):
        where = f"items[{n}]"
        if not isinstance(item, dict):
            raise weir.Invalid(f"{where}: want an object")
        sku = _require(item, "sku", str, where)
        qty = _require(item, "qty", int, where)
        price = _require(item, "unit_price", (int, float), where)
        if qty <= 0:
            raise weir.Invalid(f"{where}.qty: {qty} is not positive")
        if price < 0:
            raise weir.Invalid(f"{where}.unit_price: {price} is negative")
        price = float(price)
        lines.append((sku, qty, price, round(qty * price, 2)))
    order_total = round(sum(l[3] for l in lines), 2)

    outs = []
    for n, (sku, qty, price, total) in enumerate(lines):
        row = {
            "order_id": order_id, "line": n, "created_at": created_at,
            "customer_id": customer_id, "country": country, "region": REGIONS.get(country, "OTHER"),
            "sku": sku, "qty": qty, "unit_price": price, "currency": currency,
            "line_total": total, "line_total_eur": round(total * EUR_RATE[currency], 2),
            "order_total": order_total, "order_lines": len(lines), "vat_rate": VAT.get(country, 0.0),
        }
        outs.append(weir.Out(sink=SINK, key=order_id.encode(), value=json.dumps(row, separators=(",", ":")).encode(),
                             headers=HEADERS))
    return outs


if __name__ == "__main__":
    weir.serve(weir.per_record(transform), name=NAME, version=VERSION)
