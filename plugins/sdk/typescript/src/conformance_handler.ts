/**
 * The TypeScript SDK's conformance handler (see plugins/conformance): echoes
 * each record to sink "out", except a record whose value is
 * FAIL:<class>:<retryable> (fails that record), BATCHFAIL:<class>:<retryable>
 * (fails the batch), CRASH (exits) or SLEEP:<ms> (sleeps, then echoes).
 * With WEIR_CONFORMANCE_NOOP=1 it emits nothing (for benchmarks).
 */
import * as weir from "./index";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function handle(batch: weir.Batch): Promise<weir.Result> {
  const res = new weir.Result();
  for (let i = 0; i < batch.records.length; i++) {
    const r = batch.records[i];
    const text = r.value && r.value.length < 64 ? r.value.toString("utf8") : "";
    if (text === "CRASH") {
      process.stderr.write("conformance: CRASH record; exiting\n");
      process.exit(3);
    } else if (text.startsWith("SLEEP:")) {
      await sleep(Number(text.slice(6)));
    } else if (text.startsWith("FAIL:")) {
      const [, cls, retryable] = text.split(":");
      res.fail(i, weir.parseErrorClass(cls), retryable === "true", text);
      continue;
    } else if (text.startsWith("BATCHFAIL:")) {
      const [, cls, retryable] = text.split(":");
      throw new weir.WeirError(text, { errorClass: weir.parseErrorClass(cls), retryable: retryable === "true" });
    }
    res.output(i, { sink: "out", key: r.key, value: r.value, headers: r.headers });
  }
  return res;
}

const noop = (): weir.Result => new weir.Result();

weir.serve(process.env.WEIR_CONFORMANCE_NOOP === "1" ? noop : handle, { name: "conformance", version: "1.0.0" });
