// Package locallog is the local, on-disk log of one partition: segment
// files, their sparse offset and time indexes, crash recovery, retention,
// DeleteRecords, truncation and the leader-epoch cache. It is Kafka's
// LocalLog/UnifiedLog without replication; the broker owns one Log per
// partition replica, in a directory named "<topic>-<partition>".
//
// It must never re-encode or decompress on the produce or fetch paths: an
// append is one write of the producer's bytes (stamped in place), a read is
// one pread per segment located through the offset index. It knows nothing
// of the network, of other replicas or of the object store.
//
// # Files
//
// Per segment, named by the 20-digit base offset:
//
//	00000000000000000000.log        record batches exactly as produced (magic 2),
//	                                 base offset and leader epoch stamped
//	00000000000000000000.index      sparse offset index
//	00000000000000000000.timeindex  sparse time index
//
// A batch (see kafkaproto) is laid out as
//
//	0        8        12       16  17       21     23       27        35       43     51    53      57      61
//	+--------+--------+--------+---+--------+------+--------+---------+--------+------+-----+-------+-------+---------+
//	|baseOff |length  |leader  |mag|crc32c  |attrs |lastOff |baseTs   |maxTs   |pid   |pepch|baseSeq|count  |records…|
//	|i64     |i32     |epoch   |i8 |u32     |i16   |delta   |i64      |i64     |i64   |i16  |i32    |i32    |         |
//	+--------+--------+--------+---+--------+------+--------+---------+--------+------+-----+-------+-------+---------+
//	                                 crc32c covers bytes 21 .. 12+length
//
// Offset index entry (8 bytes, big-endian): the batch with base offset
// base+rel starts at byte pos of the .log file. One entry is added before a
// batch once IndexIntervalBytes have been written since the previous entry;
// relative offsets and positions strictly increase.
//
//	0        4        8
//	+--------+--------+
//	|rel u32 |pos u32 |
//	+--------+--------+
//
// Time index entry (12 bytes, big-endian): every record with offset <=
// base+rel has a timestamp <= ts. Added with an offset entry when the
// segment's max timestamp grew, and once more when the segment is rolled
// (its max timestamp at its last offset), so a sealed segment's max
// timestamp is its last time entry. Timestamps strictly increase.
//
//	0                 8        12
//	+-----------------+--------+
//	|ts i64 (ms)      |rel u32 |
//	+-----------------+--------+
//
// Index files hold exactly their entries (no preallocation); a copy lives
// in memory and lookups never touch the files.
//
// # Checkpoints
//
// leader-epoch-checkpoint, log-start-offset, recovery-point and
// high-watermark-checkpoint are whole files replaced atomically (write .tmp, fsync, rename, fsync directory):
//
//	0          4          8                8+n        12+n
//	+----------+----------+----------------+----------+
//	|version=1 |length n  |payload         |crc32c    |   crc32c of bytes 0 .. 8+n
//	|u32       |u32       |                |u32       |
//	+----------+----------+----------------+----------+
//
//	log-start-offset, recovery-point,
//	high-watermark-checkpoint payload:         offset i64
//	leader-epoch-checkpoint payload:           count u32, then count × (epoch i32, start offset i64)
//
// .clean-shutdown is an empty checkpoint written by Close and removed by
// Open; with it Open validates only the last segment's tail.
//
// # Producer state
//
// Per idempotent producer (producer id >= 0, non-transactional) the log keeps
// its latest epoch and its last five batches (first/last sequence,
// first/last offset), as Kafka's ProducerStateManager does. AppendAsLeader
// checks each such batch under the append lock before writing: an older
// epoch is ErrInvalidProducerEpoch; a repeat of one of the five (same epoch,
// same first and last sequence) is answered Duplicate with its original
// offsets and not written; a new epoch must start at sequence 0 and an
// unknown producer too (ErrOutOfOrderSequence, ErrUnknownProducerID);
// otherwise the first sequence must follow the last (wrapping after
// MaxInt32). Followers and recovery update the state without checks.
//
// The state is written as <base offset>.snapshot whenever a segment is
// rolled (the state before the new segment's first offset) and by Close (at
// the log end), atomically like a checkpoint, with the checkpoint frame
// (version 1, length, payload, crc32c). Payload, big-endian:
//
//	0        8         12
//	+--------+---------+---------------------------------
//	|offset  |count n  | n × entry, producer ids ascending
//	|i64     |u32      |
//	+--------+---------+---------------------------------
//	entry:
//	0        8      10       18  19
//	+--------+------+--------+---+-----------------------------
//	|pid i64 |epoch |lastTs  |k  | k × (firstSeq i32, lastSeq i32,
//	|        |i16   |i64     |u8 |      firstOffset i64, lastOffset i64)
//	+--------+------+--------+---+-----------------------------
//
// offset repeats the file name; every batch lies below it. Open loads the
// newest valid snapshot at or below the recovered log end (deleting those
// above it) and replays the batch headers from there; with none it replays
// the whole log. TruncateTo does the same for its new end. Deleting
// segments deletes the snapshots below the new first segment but never the
// newest. Producers are kept when their batches leave the log (as Kafka
// does since KIP-360); they are not yet expired.
//
// # Durability
//
// Appends go to the page cache. Flush (and the flush policy
// log.flush.interval.messages / log.flush.interval.ms, checked on append)
// fsyncs segments, indexes and the directory and advances the recovery
// point; recovery validates every batch from there on. With GroupCommit an
// append returns only after an fsync covering it; concurrent appenders
// share one.
//
// # Concurrency
//
// A Log is safe for concurrent use. Lock order: writeMu (mutations) →
// flushMu (fsync vs closing files) → mu (published state). Reads hold mu
// shared while they pread, so they never wait for an append's write(2) and
// never see a batch before it is complete.
package locallog
