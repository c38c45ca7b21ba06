// Package checkpoint keeps a pipeline's idempotency marks and its fenced
// per-partition checkpoints in Redis (go-redis v9; Redis ≥ 6, Sentinel or
// Cluster; miniredis for `addr: embedded`).
//
// # How the host uses it
//
// Per lane (one partition, owned at generation gen: the Kafka group
// generation of the assignment, or the Kinesis lease epoch):
//
//	on assign:        Fence(part, gen)                  refuse older owners from now on
//	                  Load(part)                        Kinesis: where to resume
//	per record:       KeyOf(rec)                        ErrNoKey: fail the record, not retryable
//	before dispatch:  Claim(part, gen, keys)            Done: drop (a duplicate); Busy: ask again later
//	after outcome:    MarkDone(part, gen, keys)         outputs and DLQ written; only then complete
//	on a retry:       Release(part, gen, keys)          failed records give their claims back
//	watermark moved:  Commit(part, gen, pos)            before the source commit
//
// In position mode the host skips KeyOf and passes the batch's positions,
// and which of its records arrived one right after another, so that the
// store works with runs of records, not with records (see below):
//
//	per record:       CheckPosition(pos)                an error: fail the record, not retryable
//	before dispatch:  ClaimPositions(part, gen, ps)     Done: drop (a duplicate)
//	after outcome:    MarkPositionsDone(part, gen, ps)  outputs and DLQ written; only then complete
//
// ErrFenced from any call means another owner has the partition: drop the
// lane without committing. IsUnavailable(err) means Redis is down or hung:
// count it in the breaker and pause; nothing is handled without its mark.
// Every call can be repeated safely.
//
// # Data model
//
// Every key starts with KeyPrefix and the pipeline as a cluster hash tag,
// P = "weir:{iot}/", so one pipeline's keys share one slot and each call is
// one single-slot script on a standalone server, Sentinel or Cluster alike
// (a cluster spreads pipelines over its nodes, not one pipeline). S/I is a
// partition: stream and partition (Kafka) or shard id (Kinesis).
//
//	P ck/S/I     hash, no TTL   gen: the partition's generation (the fence)
//	                            ck:  the checkpoint, "o:OFFSET" or "s:SEQUENCE"
//	                            ckm: the checkpoint encoded for comparison
//	P wm/S/I     string, TTL    position mode: the watermark W
//	P done/S/I   zset, TTL      position mode: runs ending above W marked done,
//	                            each a member "LAST:FIRST" (encoded positions)
//	P idem/=ID   string         template mode: "done" (for TTL), or a claim
//	P idem/#HASH                "c:GEN:TOKEN:POS:S/I" (for ClaimTTL)
//
// Positions are encoded as two digits of length and the decimal digits
// ("0242" is offset 42), so that byte order is numeric order for int64
// Kafka offsets and for Kinesis sequence numbers (decimal strings longer
// than any integer type) alike, and Redis and Lua compare them as strings.
// A Kinesis position is the sequence number followed by its sub-sequence
// number (a KPL user record's index in its aggregate) in six digits, so
// the user records of one aggregate have keys of their own.
//
// Position mode (the default) stores a watermark and the runs of done
// records above it, not a key per record. A run [FIRST,LAST] is records
// that arrived one right after another (or whose positions are
// consecutive: the next offset, the next user record of an aggregate), so
// it holds every record of the partition between its ends: a source
// delivers a partition in position order and skips only positions that
// hold no record and never will (Kafka transaction markers, compacted or
// deleted records; Kinesis sequence numbers are not consecutive). A
// record missing from a batch (held back under ordering key, failing and
// retried, or already done) splits the batch's runs, so no run covers a
// record that is not done. A batch of new records under ordering:
// partition is one run, whatever its size.
//
// Claim reports a record done when it is at or below W (no lookup) or
// inside a stored run: the script intersects each of the batch's runs with
// W and the stored runs and answers the done ranges (nothing, usually), and
// one look at the highest stored run skips the lookups when the batch is
// above it. MarkDone adds each run ending above W, merged with the stored
// runs it overlaps (their union has no hole), so stored runs stay disjoint;
// Commit(pos) moves W to pos and drops the runs ending at or below it.
// Members without ':' (written by weir before runs) are read as runs of
// one position. The reverse does not hold: a weir from before runs finds
// no position in a run, so while both versions share a pipeline (a
// rolling upgrade), a partition that moves from a new host to an old one
// may have records redelivered after a crash handled again, never lost. W moves with Commit, not by counting W+1, W+2, ...: Kafka
// offsets have gaps, and only the host's tracker knows which offsets it
// received. The state of a partition is therefore a few hundred bytes plus
// the runs done but not yet committed: under ordering: partition about one
// batch's run between MarkDone and Commit; under key or none, the runs
// complete above the oldest unfinished record. The watermark and set
// expire TTL after the partition's last mark or commit (a replay of old
// positions is then handled again); the checkpoint and generation never
// expire. Position mode catches redelivery after a crash, not records sent
// twice by their producer.
//
// Claim with keys and MarkDone with keys work in position mode too; keys
// say nothing about what arrived between them, so only keys of
// consecutive offsets join a run, and others are runs of their own.
//
// Template mode keys a record by a field of it (ParseTemplate: key,
// header:NAME, json:/POINTER), so that producer duplicates (a device
// resending a reading) are dropped in any partition. The mark of a value
// is kept raw when short printable ASCII (readable in redis-cli), else as
// 32 hex digits of its SHA-256. Claim sets free keys to a claim for
// ClaimTTL (SET PX inside the script, so it acts as SET NX); MarkDone sets
// them to "done" for TTL, replacing the claim; Release deletes the keys
// that still hold this record's claim. A claim names its record (position
// and partition), so two records with one key in one lane, or in one batch,
// are told apart: the later ones are Busy. A claim left by an older
// generation of the same partition (its owner crashed and was fenced out)
// is taken over by the new owner at once instead of after ClaimTTL.
//
// Off mode keeps no marks (Claim reports everything Claimed without calling
// Redis); checkpoints still go to Redis when a server is configured.
//
// # Cost per batch
//
// One round trip per call: Claim, MarkDone, Release, Commit and Fence are
// each one EVALSHA of a script that does the whole batch (after Redis
// restarts, the first call of each script costs one more, NOSCRIPT then
// EVAL). So Claim + MarkDone of a batch is two round trips whatever its
// size, and Commit one more per watermark move. Measured on the wire for a
// batch of 500 records (TestRoundTripsPerBatch; 7-digit Kafka offsets; in
// position mode the records are consecutive, one run):
//
//	position  ClaimPositions     1 round trip   ~0.3 KB sent (2 positions a run)   6 B received (+ 2 positions a done range)
//	          MarkPositionsDone  1 round trip   ~0.3 KB sent                       4 B received
//	          Commit             1 round trip   ~0.3 KB sent                       4 B received
//	template  Claim              1 round trip   ~(len(mark key)+17) B a record     1 B a record
//	          MarkDone           1 round trip   ~(len(mark key)+8) B a record      6 B received
//
// In position mode the work in Redis grows with the runs, not the records:
// per run a few comparisons, and a sorted-set lookup only when the run is
// not above every stored run. BenchmarkBatch1000Position (Claim, MarkDone
// and Commit of 1,000 consecutive records against a redis-server on
// loopback, 2 cores): about 0.08 ms of host CPU and 0.06 ms of redis-server
// CPU a batch, where a position per record cost 0.29 ms and 1.7 ms.
//
// A template mark key is len(KeyPrefix) + len(pipeline) + 8 + the value
// (or 33): with "weir:", pipeline "iot" and 36-character message ids, 53
// bytes, so about 35 KB for Claim and 31 KB for MarkDone of 500 records.
// Redis memory in template mode is one key per distinct value for TTL,
// about 90 bytes plus the key each: 1,000 records/s with a TTL of 24h is
// 86 million keys, about 12 GB; size TTL to the window in which duplicates
// arrive. Position mode's memory does not grow with the rate: one member
// of about 20 bytes (plus the sorted set's own) per run not yet committed.
//
// # Fencing
//
// Each partition has a stored generation (field gen of P ck/S/I). Every
// write carries the writer's generation and is refused with a *FencedError
// (errors.Is ErrFenced) when it is lower than the stored one; equal or
// higher is accepted. Fence(gen) and Commit(gen) raise the stored
// generation to gen; Claim and MarkDone (and ClaimPositions and
// MarkPositionsDone) only check it. The check and the write are one Lua
// script, so they are atomic: once a new owner's Fence has returned, no
// write of an older owner lands, not a checkpoint, not a mark, not a claim.
// A new owner therefore fences before anything else when it takes a
// partition. Release is not fenced: it only deletes the caller's own
// claims. Load is not fenced. A checkpoint never moves backwards: a Commit
// at or below the stored position changes nothing.
//
// The stored generation only grows. A Kafka consumer group that is
// deleted and created again (for example after its offsets expired)
// restarts its generations at 1 and would be fenced by the old stored one:
// delete the partitions' P ck/S/I keys (or their gen field) when resetting
// a group.
//
// # Failures
//
// Calls fail fast when Redis is down: one dial attempt, socket deadlines
// from the caller's context (or Config.Timeout), and two quick retries of
// a command whose connection broke (every script may run twice to the same
// effect). Errors say what was being done ("checkpoint: marking 500 keys
// done for iot/sensor-readings/3: redis unavailable: dial tcp ...:
// connection refused") and never carry the password. After Redis comes
// back, calls succeed within about a second (go-redis probes a server that
// refused its dials once a second). SetRedisLogger sends go-redis's own log
// lines to a zerolog logger.
package checkpoint
