// The IoT example's handler in TypeScript: the same behaviour as the Go
// handler in examples/iot (iot.go), on the weir TypeScript SDK. It
// validates sensor readings, normalizes them to Celsius, derives comfort and
// battery fields, and emits one enriched reading per good input to the sink
// "enriched", keyed by device id. A malformed reading fails alone, as a
// non-retryable invalid_input failure (weir dead-letters it).
//
// Input, one JSON object per record value:
//
//   {"device_id":"d-17","ts":"2026-11-26T06:00:00Z","temperature":71.3,"unit":"F","humidity":40.2,"battery_mv":3710}
//
// device_id, temperature and unit (C, F or K) are required; ts (RFC 3339,
// default: the record's timestamp), humidity (percent, 0-100) and
// battery_mv are optional; unknown fields are ignored. Output:
//
//   {"device_id":"d-17","ts":"2026-11-26T06:00:00Z","temperature_c":21.83,"humidity":40.2,"dew_point_c":7.7,"battery_mv":3710,"battery_low":false,"source":{"temperature":71.3,"unit":"F"}}
//
// The output is a pure function of the record, byte for byte the Go
// handler's (examples/iot/typescript_test.go checks it), so a redelivered
// record produces the same bytes whichever handler runs.
//
// Build: testenv/sdk.sh (or `npm run build` here after the SDK is built);
// run: examples/iot/typescript/weir.yaml.
import * as weir from "../../../../plugins/sdk/typescript/dist";

export const NAME = "iot";
export const VERSION = "1.0.0";
export const SINK = "enriched";
export const HANDLER_HEADER = "weir-handler";
export const BATTERY_LOW_MILLIVOLTS = 3300;

/** The enriched reading; keys in this order, as the Go handler writes them. */
interface Enriched {
  device_id: string;
  ts?: string;
  temperature_c: number;
  humidity?: number;
  dew_point_c?: number;
  heat_index_c?: number;
  battery_mv?: number;
  battery_low?: boolean;
  source: { temperature: number; unit: string };
}

/**
 * What JSON calls a value's type, in the words of Go's decoder: a number
 * that does not fit a whole-number field is "number 3.5".
 */
function kind(v: unknown, wholeTarget = false): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  switch (typeof v) {
    case "string":
      return "string";
    case "number":
      return wholeTarget ? "number " + String(v) : "number";
    case "boolean":
      return "bool";
  }
  return "object";
}

/** The raw text of a top-level number field, for messages about numbers JSON.parse cannot hold (1e999). */
function rawNumber(text: string, field: string): string | null {
  const m = new RegExp(`"${field}"\\s*:\\s*(-?[0-9][0-9.eE+-]*)`).exec(text);
  return m ? m[1] : null;
}

/** Go's fmt %g for the numbers a reading holds. */
function g(n: number): string {
  return String(n);
}

/** Go's math.Round(x*100)/100: halves away from zero. */
function round2(x: number): number {
  const v = x * 100;
  return (Math.sign(v) * Math.round(Math.abs(v))) / 100;
}

function toCelsius(t: number, unit: string): number {
  switch (unit) {
    case "F":
      return ((t - 32) * 5) / 9;
    case "K":
      return t - 273.15;
  }
  return t;
}

/** The Magnus formula (Alduchov and Eskridge coefficients). */
function dewPointC(c: number, rh: number): number {
  const a = 17.625, b = 243.04;
  const gm = Math.log(rh / 100) + (a * c) / (b + c);
  return (b * gm) / (a - gm);
}

/** The US National Weather Service heat index (Rothfusz regression), in °F. */
function heatIndexC(c: number, rh: number): number {
  const t = (c * 9) / 5 + 32;
  let hi = 0.5 * (t + 61 + (t - 68) * 1.2 + rh * 0.094);
  if ((hi + t) / 2 >= 80) {
    hi = -42.379 + 2.04901523 * t + 10.14333127 * rh - 0.22475541 * t * rh -
      0.00683783 * t * t - 0.05481717 * rh * rh + 0.00122874 * t * t * rh +
      0.00085282 * t * rh * rh - 0.00000199 * t * t * rh * rh;
    if (rh < 13 && t >= 80 && t <= 112) {
      hi -= ((13 - rh) / 4) * Math.sqrt((17 - Math.abs(t - 95)) / 17);
    } else if (rh > 85 && t >= 80 && t <= 87) {
      hi += ((rh - 85) / 10) * ((87 - t) / 5);
    }
  }
  return ((hi - 32) * 5) / 9;
}

const rfc3339 = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$/;

/** Formats nanoseconds since the epoch as Go's RFC3339Nano in UTC. */
function formatNs(ns: bigint): string {
  let sec = ns / 1_000_000_000n;
  let frac = ns % 1_000_000_000n;
  if (frac < 0n) {
    frac += 1_000_000_000n;
    sec -= 1n;
  }
  const base = new Date(Number(sec) * 1000).toISOString().slice(0, 19);
  const digits = frac.toString().padStart(9, "0").replace(/0+$/, "");
  return base + (digits ? "." + digits : "") + "Z";
}

/** Parses an RFC 3339 time strictly, as Go's time.Parse does, to UTC nanoseconds. */
function parseRFC3339(s: string): bigint | null {
  const m = rfc3339.exec(s);
  if (!m) return null;
  const [y, mo, d, h, mi, se] = m.slice(1, 7).map(Number);
  if (mo < 1 || mo > 12 || h > 23 || mi > 59 || se > 59) return null;
  const ms = Date.UTC(y, mo - 1, d, h, mi, se);
  const back = new Date(ms);
  if (back.getUTCFullYear() !== y || back.getUTCMonth() !== mo - 1 || back.getUTCDate() !== d) return null;
  let offsetMin = 0;
  if (m[8] !== "Z") {
    const oh = Number(m[8].slice(1, 3)), om = Number(m[8].slice(4, 6));
    if (oh > 23 || om > 59) return null;
    offsetMin = (m[8][0] === "-" ? -1 : 1) * (oh * 60 + om);
  }
  const frac = BigInt((m[7] ?? "").padEnd(9, "0") || "0");
  return (BigInt(ms) - BigInt(offsetMin) * 60_000n) * 1_000_000n + frac;
}

/**
 * Validates one reading and computes its enriched form. recordTimeNs is
 * used for ts when the reading has none (0n: ts is left out). Throws an
 * Error saying what is wrong, in words a person fixing the device can use.
 */
export function parse(value: Buffer | null, recordTimeNs: bigint): Enriched {
  if (!value || value.length === 0) throw new Error("empty value: want a JSON reading");
  let parsed: unknown;
  const text = value.toString("utf8");
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new Error(`invalid JSON: ${(err as Error).message}`);
  }
  if (parsed !== null && (typeof parsed !== "object" || Array.isArray(parsed))) {
    throw new Error(`reading must be a JSON object, got ${kind(parsed)}`);
  }
  const obj = (parsed ?? {}) as { [k: string]: unknown };
  // A field of the wrong JSON type is reported like Go's decoder does: the
  // first one in the document.
  const want: { [field: string]: [string, (v: unknown) => boolean] } = {
    device_id: ["string", (v) => typeof v === "string"],
    ts: ["string", (v) => typeof v === "string"],
    unit: ["string", (v) => typeof v === "string"],
    humidity: ["number", (v) => typeof v === "number"],
    battery_mv: ["whole number", (v) => typeof v === "number" && Number.isInteger(v)],
  };
  for (const field of Object.keys(obj)) {
    const v = obj[field];
    const w = want[field];
    if (w && v !== null && !w[1](v)) throw new Error(`${field} must be a ${w[0]}, got ${kind(v, field === "battery_mv")}`);
  }

  const problems: string[] = [];
  const deviceID = obj.device_id as string | null | undefined;
  let device = "";
  if (deviceID == null) problems.push("device_id is missing");
  else if (deviceID.trim() === "") problems.push("device_id is empty");
  else if (Buffer.byteLength(deviceID) > 256) problems.push(`device_id is ${Buffer.byteLength(deviceID)} bytes long (at most 256)`);
  else device = deviceID;

  let temp = 0;
  let tempOK = false;
  const t = obj.temperature;
  if (t === undefined || t === null) problems.push("temperature is missing");
  else if (typeof t === "string") problems.push(`temperature must be a number, got the string ${JSON.stringify(t)}`);
  else if (typeof t !== "number") problems.push(`temperature must be a number, got ${JSON.stringify(t)}`);
  else if (!Number.isFinite(t)) problems.push(`temperature ${rawNumber(text, "temperature") ?? g(t)} is not a finite number`);
  else {
    temp = t;
    tempOK = true;
  }

  let unit = "";
  const u = obj.unit as string | null | undefined;
  if (u == null) problems.push("unit is missing (want C, F or K)");
  else {
    unit = u.trim().toUpperCase();
    if (unit !== "C" && unit !== "F" && unit !== "K") {
      problems.push(`unit ${JSON.stringify(u)} is unknown (want C, F or K)`);
      unit = "";
    }
  }
  let celsius = 0;
  if (tempOK && unit !== "") {
    celsius = toCelsius(temp, unit);
    if (celsius < -273.15) problems.push(`temperature ${g(temp)} ${unit} is below absolute zero`);
  }

  let ts: string | undefined;
  const tsIn = obj.ts as string | null | undefined;
  if (tsIn != null) {
    const ns = parseRFC3339(tsIn);
    if (ns === null) problems.push(`ts ${JSON.stringify(tsIn)} is not an RFC 3339 time`);
    else ts = formatNs(ns);
  } else if (recordTimeNs !== 0n) {
    ts = formatNs(recordTimeNs);
  }

  let humidity: number | undefined;
  const h = obj.humidity as number | null | undefined;
  if (h != null) {
    if (h < 0 || h > 100) problems.push(`humidity ${g(h)} is out of range (0-100)`);
    else humidity = h;
  }
  let battery: number | undefined;
  const mv = obj.battery_mv as number | null | undefined;
  if (mv != null) {
    if (mv < 0) problems.push(`battery_mv ${mv} is negative`);
    else battery = mv;
  }
  if (problems.length > 0) throw new Error(problems.join("; "));

  const e: Enriched = { device_id: device, ts, temperature_c: round2(celsius), humidity: undefined, dew_point_c: undefined,
    heat_index_c: undefined, battery_mv: undefined, battery_low: undefined, source: { temperature: temp, unit } };
  if (humidity !== undefined) {
    e.humidity = humidity;
    if (humidity > 0) e.dew_point_c = round2(dewPointC(celsius, humidity));
    if (celsius >= 26.7) e.heat_index_c = round2(heatIndexC(celsius, humidity));
  }
  if (battery !== undefined) {
    e.battery_mv = battery;
    e.battery_low = battery < BATTERY_LOW_MILLIVOLTS;
  }
  return e;
}

/** The per-record handler: one output to "enriched" keyed by device id, or an invalid_input failure. */
export function enrich(r: weir.Record): weir.Out[] {
  let e: Enriched;
  try {
    e = parse(r.value, r.timestampNs);
  } catch (err) {
    throw new weir.Invalid((err as Error).message);
  }
  // JSON.stringify leaves out undefined fields, like Go's omitempty.
  const value = JSON.stringify(e);
  const headers = r.headers.filter((hd) => hd.key !== HANDLER_HEADER);
  headers.push({ key: HANDLER_HEADER, value: Buffer.from(`${NAME}/${VERSION}`) });
  return [{ sink: SINK, key: e.device_id, value, headers }];
}

if (require.main === module) {
  weir.serve(weir.perRecord(enrich), { name: NAME, version: VERSION });
}
