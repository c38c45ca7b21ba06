/**
 * weir SDK for TypeScript: write a weir handler as one function over a batch
 * of records, served as a plugin process of the weir host (go-plugin over
 * gRPC, the protocol of plugins/proto/weir/handler/v1/handler.proto).
 *
 *     import * as weir from "@weirhq/weir-sdk";
 *
 *     weir.serve(weir.perRecord((r) => {
 *       if (!r.value?.length) throw new weir.Invalid("empty value"); // dead-lettered
 *       return [{ sink: "out", key: r.key, value: r.value }];
 *     }), { name: "upper", version: "1.0.0" });
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

/** The handler protocol version this SDK speaks (plugins.ProtocolVersion). */
export const PROTOCOL_VERSION = 1;
/** go-plugin's core protocol version. */
export const CORE_PROTOCOL_VERSION = 1;
/** The go-plugin handshake cookie (plugins.Handshake in the weir host). */
export const MAGIC_COOKIE_KEY = "WEIR_PLUGIN";
export const MAGIC_COOKIE_VALUE = "b7c1f4e2-weir-handler-9d3a";
/** Largest gRPC message sent or accepted (plugins.MaxMessageSize). */
export const MAX_MESSAGE_SIZE = 64 << 20;

/** The largest reply the host accepts (WEIR_MAX_REPLY_BYTES, set by the
 * host from handler.max_reply_bytes), else MAX_MESSAGE_SIZE. */
function maxReplyBytes(): number {
  const n = Number.parseInt(process.env.WEIR_MAX_REPLY_BYTES ?? "", 10);
  return Number.isSafeInteger(n) && n > 0 ? n : MAX_MESSAGE_SIZE;
}

/** Classifies a failure; the numbers are the protocol's ErrorClass. */
export enum ErrorClass {
  UNSPECIFIED = 0,
  /** The record is malformed; never retried (dead-lettered at once). */
  INVALID_INPUT = 1,
  /** A downstream dependency failed; retrying may succeed. */
  TRANSIENT = 2,
  /** The handler failed on this record (a bug). */
  HANDLER = 3,
  /** Set by the host only. */
  TIMEOUT = 4,
  CRASH = 5,
  BAD_REPLY = 6,
}

/** Parses "invalid_input", "INVALID_INPUT" or "1". */
export function parseErrorClass(name: string): ErrorClass {
  if (/^\d+$/.test(name)) return Number(name) as ErrorClass;
  const c = (ErrorClass as unknown as { [k: string]: number })[name.toUpperCase()];
  if (c === undefined) throw new Error(`unknown error class ${JSON.stringify(name)}`);
  return c;
}

/**
 * An error with a class and a retryable flag. Thrown from a per-record
 * function it fails that record only; from a batch function, the whole
 * batch (sent to the host as the protocol's BatchError).
 */
export class WeirError extends Error {
  errorClass: ErrorClass = ErrorClass.HANDLER;
  retryable = false;
  constructor(message: string, opts: { errorClass?: ErrorClass; retryable?: boolean } = {}) {
    super(message);
    this.name = new.target.name;
    if (opts.errorClass !== undefined) this.errorClass = opts.errorClass;
    if (opts.retryable !== undefined) this.retryable = opts.retryable;
  }
}

/** The record's own fault (malformed input): class invalid_input, never retried. */
export class Invalid extends WeirError {
  constructor(message: string) {
    super(message, { errorClass: ErrorClass.INVALID_INPUT, retryable: false });
  }
}

/** A transient failure (a dependency that may recover): class transient, retried. */
export class Retryable extends WeirError {
  constructor(message: string) {
    super(message, { errorClass: ErrorClass.TRANSIENT, retryable: true });
  }
}

/**
 * Maps a thrown value to [class, retryable]. A WeirError carries its own.
 * Any other error is a handler bug, class handler: not retryable when it
 * concerns one record, retryable when it fails a whole batch (so the host
 * can bisect the batch to find the record that triggers it).
 */
export function classify(err: unknown, perRecord: boolean): [ErrorClass, boolean] {
  if (err instanceof WeirError) return [err.errorClass, err.retryable];
  return [ErrorClass.HANDLER, !perRecord];
}

function messageOf(err: unknown): string {
  if (err instanceof WeirError) return err.message || err.name;
  if (err instanceof Error) return err.message ? `${err.name}: ${err.message}` : err.name;
  return String(err);
}

/** A header; value null is a null header value. */
export interface Header {
  key: string;
  value: Buffer | null;
}

/** One input record. key and value are null when absent, empty when present and empty. */
export interface Record {
  key: Buffer | null;
  value: Buffer | null;
  /** In the order the source delivered them; keys may repeat. */
  headers: Header[];
  /** Nanoseconds since the Unix epoch; 0n if unknown. */
  timestampNs: bigint;
  /** Kafka offset (0n for Kinesis). */
  offset: bigint;
  /** Kinesis sequence number ("" for Kafka). */
  sequence: string;
}

/** The records of one partition, in order, handed to one call. */
export interface Batch {
  pipeline: string;
  stream: string;
  partition: string;
  /** 1 on the first delivery of these records, then 2, 3, ... */
  attempt: number;
  /** When the host stops waiting, ms since the epoch; null for none. */
  deadline: number | null;
  records: Record[];
}

/** One message emitted to a sink. */
export interface Out {
  sink: string;
  key?: Buffer | string | null;
  value?: Buffer | string | null;
  headers?: { key: string; value: Buffer | string | null }[];
  /** Nanoseconds since the epoch; 0 lets the sink choose. */
  timestampNs?: bigint;
}

export interface Output extends Out {
  /** Index in Batch.records of the record this output derives from. */
  index: number;
}

export interface Failure {
  index: number;
  message: string;
  retryable: boolean;
  errorClass: ErrorClass;
}

/** A handler's answer to a batch. A record without a failure succeeded. */
export class Result {
  outputs: Output[] = [];
  failures: Failure[] = [];

  /** Emits out, attributed to record index of the batch. */
  output(index: number, out: Out): void {
    this.outputs.push({ ...out, index });
  }

  /** Marks record index failed. Non-retryable failures go to the DLQ at once. */
  fail(index: number, errorClass: ErrorClass, retryable: boolean, message: string): void {
    this.failures.push({ index, message, retryable, errorClass });
  }

  /** Marks record index failed by err (see classify). */
  failErr(index: number, err: unknown): void {
    const [c, r] = classify(err, true);
    this.fail(index, c, r, messageOf(err));
  }
}

/** A batch handler. Throwing (or rejecting) fails the whole batch. */
export type BatchFunc = (batch: Batch) => Result | void | Promise<Result | void>;
/** A per-record handler: returns the messages it emits. */
export type RecordFunc = (record: Record) => Out[] | void | Promise<Out[] | void>;

/**
 * A batch handler that calls fn for each record in order. An error on one
 * record fails only that record (see classify).
 */
export function perRecord(fn: RecordFunc): BatchFunc {
  return async (batch) => {
    const res = new Result();
    for (let i = 0; i < batch.records.length; i++) {
      let outs: Out[] | void;
      try {
        outs = await fn(batch.records[i]);
      } catch (err) {
        res.failErr(i, err);
        continue;
      }
      for (const o of outs ?? []) res.output(i, o);
    }
    return res;
  };
}

// --- wire conversion -------------------------------------------------------

interface PbHeader { key?: string; value?: Buffer }
interface PbRecord {
  key?: Buffer; value?: Buffer; headers: PbHeader[];
  timestamp_unix_nano?: string; offset?: string; sequence?: string;
}
interface PbBatch {
  pipeline?: string; stream?: string; partition?: string; attempt?: number;
  deadline_unix_nano?: string; records: PbRecord[];
}

function batchFromPb(b: PbBatch): Batch {
  const records: Record[] = new Array(b.records.length);
  for (let i = 0; i < b.records.length; i++) {
    const r = b.records[i];
    records[i] = {
      key: r.key ?? null,
      value: r.value ?? null,
      headers: r.headers.map((h) => ({ key: h.key ?? "", value: h.value ?? null })),
      timestampNs: BigInt(r.timestamp_unix_nano ?? 0),
      offset: BigInt(r.offset ?? 0),
      sequence: r.sequence ?? "",
    };
  }
  const dl = BigInt(b.deadline_unix_nano ?? 0);
  return {
    pipeline: b.pipeline ?? "", stream: b.stream ?? "", partition: b.partition ?? "",
    attempt: b.attempt ?? 0, deadline: dl === 0n ? null : Number(dl / 1000000n), records,
  };
}

function buf(v: Buffer | string | null | undefined): Buffer | undefined {
  if (v === null || v === undefined) return undefined;
  return typeof v === "string" ? Buffer.from(v, "utf8") : v;
}

function resultToPb(res: Result | void) {
  if (!res) return { outputs: [], failures: [] };
  if (!(res instanceof Result)) throw new TypeError("handler returned something other than a weir Result");
  return {
    outputs: res.outputs.map((o) => {
      const p: { [k: string]: unknown } = {
        index: o.index, sink: o.sink,
        headers: (o.headers ?? []).map((h) => (h.value === null ? { key: h.key } : { key: h.key, value: buf(h.value) })),
        timestamp_unix_nano: (o.timestampNs ?? 0n).toString(),
      };
      const k = buf(o.key), v = buf(o.value);
      if (k !== undefined) p.key = k;
      if (v !== undefined) p.value = v;
      return p;
    }),
    failures: res.failures.map((f) => ({ index: f.index, message: f.message, retryable: f.retryable, class: f.errorClass })),
  };
}

// A minimal protobuf writer for the two messages of a whole-batch error.
function varint(n: number): number[] {
  const out: number[] = [];
  let v = n >>> 0;
  while (v > 0x7f) { out.push((v & 0x7f) | 0x80); v >>>= 7; }
  out.push(v);
  return out;
}
function field(num: number, wire: number, payload: number[] | Buffer): Buffer {
  const tag = Buffer.from(varint((num << 3) | wire));
  if (wire === 0) return Buffer.concat([tag, Buffer.from(payload as number[])]);
  const data = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
  return Buffer.concat([tag, Buffer.from(varint(data.length)), data]);
}
function batchErrorStatus(code: grpc.status, cls: ErrorClass, retryable: boolean, message: string): Buffer {
  const msg = Buffer.from(message, "utf8");
  // weir.handler.v1.BatchError { class = 1; retryable = 2; message = 3 }
  const be = Buffer.concat([field(1, 0, varint(cls)), field(2, 0, [retryable ? 1 : 0]), field(3, 2, msg)]);
  // google.protobuf.Any { type_url = 1; value = 2 }
  const any = Buffer.concat([field(1, 2, Buffer.from("type.googleapis.com/weir.handler.v1.BatchError")), field(2, 2, be)]);
  // google.rpc.Status { code = 1; message = 2; details = 3 }
  return Buffer.concat([field(1, 0, varint(code)), field(2, 2, msg), field(3, 2, any)]);
}

function batchError(err: unknown): Partial<grpc.StatusObject> {
  const [cls, retryable] = classify(err, false);
  if (cls === ErrorClass.HANDLER) process.stderr.write(`handler error: ${err instanceof Error ? err.stack : String(err)}\n`);
  const message = messageOf(err);
  const code = cls === ErrorClass.INVALID_INPUT ? grpc.status.INVALID_ARGUMENT : grpc.status.UNKNOWN;
  const metadata = new grpc.Metadata();
  metadata.set("grpc-status-details-bin", batchErrorStatus(code, cls, retryable, message));
  return { code, details: message, metadata };
}

// --- serving ---------------------------------------------------------------

export interface ServeOptions {
  /** Name of the handler, e.g. "iot". */
  name: string;
  /** Version of the handler; recorded in DLQ envelopes. */
  version?: string;
}

/** Where the protocol's .proto files are: the repository's plugins/proto and this package's proto/. */
function protoDirs(): string[] {
  const pkg = path.resolve(__dirname, "..");
  return [process.env.WEIR_PROTO_DIR ?? path.resolve(pkg, "..", "..", "proto"), path.join(pkg, "proto")];
}

function load(file: string): grpc.GrpcObject {
  const def = protoLoader.loadSync(file, {
    keepCase: true, longs: String, enums: Number, bytes: Buffer, defaults: false, arrays: true, oneofs: true,
    includeDirs: protoDirs(),
  });
  return grpc.loadPackageDefinition(def);
}

type Svc = { service: grpc.ServiceDefinition };
function svc(obj: grpc.GrpcObject, name: string): grpc.ServiceDefinition {
  let cur: unknown = obj;
  for (const part of name.split(".")) cur = (cur as { [k: string]: unknown })[part];
  return (cur as Svc).service;
}

/**
 * Serves handler as a weir handler plugin until the host shuts it down,
 * then exits the process. Nothing may be written to stdout before: go-plugin
 * reads its handshake line there; afterwards stdout goes to stderr, which
 * the host logs. Run by hand (not by a weir host) it prints a notice and
 * exits with status 1.
 */
export function serve(handler: BatchFunc, opts: ServeOptions): void {
  if (process.env[MAGIC_COOKIE_KEY] !== MAGIC_COOKIE_VALUE) {
    process.stderr.write("This program is a weir handler plugin: it is started by the weir host (weir run), not by hand.\n");
    process.exit(1);
  }
  // The host handles Ctrl-C and asks us to stop through Shutdown.
  process.on("SIGINT", () => {});

  const server = new grpc.Server({
    "grpc.max_receive_message_length": MAX_MESSAGE_SIZE,
    "grpc.max_send_message_length": maxReplyBytes(),
  });
  const dir = fs.mkdtempSync(path.join(process.env.PLUGIN_UNIX_SOCKET_DIR || os.tmpdir(), "weir-plugin-"));
  const sock = path.join(dir, "plugin.sock");
  const stop = () => {
    server.forceShutdown();
    fs.rmSync(dir, { recursive: true, force: true });
    process.exit(0);
  };
  process.on("SIGTERM", stop);

  server.addService(svc(load("weir/handler/v1/handler.proto"), "weir.handler.v1.Handler"), {
    Describe: (_call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      cb(null, { name: opts.name, version: opts.version ?? "0.0.0", protocol_version: PROTOCOL_VERSION });
    },
    Handle: (call: grpc.ServerUnaryCall<PbBatch, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      Promise.resolve()
        .then(() => handler(batchFromPb(call.request)))
        .then((res) => cb(null, resultToPb(res)))
        .catch((err) => cb(batchError(err), null));
    },
  });
  server.addService(svc(load("plugin/grpc_controller.proto"), "plugin.GRPCController"), {
    Shutdown: (_call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      cb(null, {});
      setTimeout(stop, 10);
    },
  });
  server.addService(svc(load("grpc/health/v1/health.proto"), "grpc.health.v1.Health"), {
    Check: (call: grpc.ServerUnaryCall<{ service?: string }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      const s = call.request.service ?? "";
      if (s === "" || s === "plugin") cb(null, { status: 1 });
      else cb({ code: grpc.status.NOT_FOUND, details: `unknown service ${s}` }, null);
    },
    Watch: (call: grpc.ServerWritableStream<unknown, unknown>) => {
      call.write({ status: 1 });
    },
  });
  server.bindAsync("unix:" + sock, grpc.ServerCredentials.createInsecure(), (err) => {
    if (err) {
      process.stderr.write(`weir sdk: listening on ${sock}: ${err.message}\n`);
      process.exit(1);
    }
    process.stdout.write(`${CORE_PROTOCOL_VERSION}|${PROTOCOL_VERSION}|unix|${sock}|grpc\n`, () => {
      // From here on stdout belongs to the handler's logs: send it to stderr.
      process.stdout.write = process.stderr.write.bind(process.stderr) as typeof process.stdout.write;
    });
  });
}
