// Package coordinator owns Strata's cluster metadata in etcd: the cluster ID,
// the registry of live brokers (etcd leases), topics with their configs, and
// each partition's state (replicas, leader, leader epoch, ISR, partition
// epoch), changed only by compare-and-swap transactions. It starts an embedded
// single-member etcd when no endpoints are given, so `strata serve` needs
// nothing installed.
//
// The embedded etcd listens on 127.0.0.1 (or Config.EmbedListen) with a
// free peer port, compacts history older than one hour, and forwards its
// error logs to Config.Logger.
//
// It is not the consumer-group coordinator (that lives under broker) and it
// imports nothing else of this project. It never interprets configs, never
// picks leaders on its own and never retries a lost compare-and-swap on the
// caller's behalf in a way that could hide a concurrent change: a stale
// revision or epoch is always ErrConflict.
//
// # Key space
//
// Every key lives under Config.Prefix (default "/strata"). One subtree per
// kind of metadata, so later kinds slot in without touching existing ones:
//
//	<prefix>/cluster/id                        cluster ID, 22 chars (base64url UUID), created once
//	<prefix>/brokers/<id>                      BrokerInfo JSON, attached to the broker's lease
//	<prefix>/topics/<name>                     topic record JSON (see below)
//	<prefix>/topics/<name>/partitions/<p>      current state of partition p, once it changed
//	<prefix>/groups/<g>/owner                  owning broker ID (decimal), attached to its lease
//	<prefix>/groups/<g>/offsets/<b>            committed offsets of the topics in bucket b (0..63), binary
//	<prefix>/groups/<g>/state                  the group's membership as of its last Stable or Empty (opaque to etcd)
//	<prefix>/producer-ids/next                 next free producer ID (decimal), advanced by CAS
//	<prefix>/remote/<tid>/<p>/<start>-<sid>    remote-segment record, binary (see below)
//	<prefix>/remote/<tid>/ids/<p>/<sid>        that record's start offset (decimal): finds it by id
//	<prefix>/controller                        elected controller's broker ID (decimal), attached to its lease
//
// Controller (controller.go): Campaign creates <prefix>/controller only if
// absent ("create revision = 0"), attached to the campaigning broker's
// registration lease, so at most one broker is controller and the key goes
// with the broker: at once on Close (lease revoked) or Resign, within the
// lease TTL (10 s by default) after kill -9 or a lost etcd. Losers watch the
// key and campaign again when it is deleted; the holder watches it and learns
// (Campaign's lost channel) when it is deleted or re-created by another. The
// key's create revision identifies one term of leadership.
//
// Remote segments (remote_segments.go, KIP-405's metadata manager): <tid> and
// <sid> are the topic ID and the per-attempt segment ID in 32 lowercase hex
// digits, <start> the segment's start offset in 20 zero-padded digits, so a
// range read of "<tid>/<p>/" lists a partition in offset order (paged, 1,000
// keys per request, at one revision) and one prefix delete of "<tid>/" drops
// a topic. A record and its id key are created, and deleted (DeleteFinished),
// in one transaction that also compares the topic record's create revision
// and the partition-state key's mod revision read when the fence (leader and
// leader epoch) was checked; a lost compare re-reads, so a changed leader or
// epoch is ErrFenced and an ISR change is retried (bounded). Value (varints as
// in encoding/binary; u = unsigned, s = zig-zag signed), about 40 bytes:
//
//	| ver = 1 | state (1..3) | s start | u end-start | s max timestamp | s broker
//	| s leader epoch | s size bytes | s state time ms | u n | (s epoch, s start offset) × n |
//
// <g> is the group ID path-escaped (url.PathEscape: '/' is %2F, '%' is
// %25), since Kafka group IDs may contain any character; empty IDs are
// refused.
// Topic names are legal Kafka names ([a-zA-Z0-9._-], at most 249), so they
// never contain '/', and "<prefix>/topics/" alone holds every topic and all
// its partition state: one range read lists the cluster at one revision and
// one prefix watch follows it.
//
// # Records
//
// Values are JSON with short field names and a version; etcd gives integrity
// (raft log and bbolt checksums), so no CRC is added. Topic record:
//
//	{"v":1,
//	 "id":"6ba7b810-9dad-41d1-80b4-00c04fd430c8",   topic UUID
//	 "configs":{"retention.ms":"86400000"},           omitted when empty
//	 "partitions":[{"p":0,"r":[1,2,3],"l":1,"le":0,"isr":[1,2,3],"pe":0}, ...]}
//
// Partition state record (same shape as one element above):
//
//	{"p":0,"r":[1,2,3],"l":2,"le":1,"isr":[2,3],"pe":1}
//	 p partition, r replicas, l leader (-1 none), le leader epoch,
//	 isr in-sync replicas, pe partition epoch
//
// # Why partitions live in the topic record
//
// etcd allows 128 operations per transaction, yet CreateTopic must be atomic
// for any partition count. So the topic record carries every partition's
// initial state and creation is a single put (guarded by "create revision =
// 0"): atomic for 1 or 10,000 partitions, bounded only by the record size
// (refused above 1.4 MiB, about 20,000 three-replica partitions; etcd's
// default request limit is 1.5 MiB). AddPartitions rewrites the record with a
// compare on its mod revision.
//
// Leadership and ISR change often and per partition, so UpdatePartition writes
// <prefix>/topics/<name>/partitions/<p> instead, created lazily on the first
// change. The current state of a partition is that key if present, else the
// record's entry. An update compares the partition key's mod revision (or its
// absence) and the topic record's create revision (so a deleted and re-created
// topic is never written to), and it refuses unless the stored partition epoch
// is the expected one. Because partition updates never touch the record, the
// topic Revision used by SetTopicConfigs/AddPartitions does not move with ISR
// churn. DeleteTopic removes the record and the whole "<name>/" subtree in one
// transaction.
//
// # Consumer groups
//
// One broker owns a group at a time. AcquireGroup creates the owner key
// (guarded by "create revision = 0") under the broker's registration lease,
// so the ownership dies with the broker: at once on Close (lease revoked),
// after the lease TTL on kill -9. The key's create revision is the ownership
// epoch (GroupOwner.Revision): it is new on every acquisition, and every
// offset write (commit, delete, expire, delete group) compares it in the
// same transaction, so a broker that lost the group writes nothing and gets
// ErrConflict (it answers NOT_COORDINATOR). Offsets outlive owners.
//
// The coordinator also keeps the group's membership (generation, protocol,
// leader, members and their assignments) under the state key, written
// fenced the same way each time the group becomes Stable or Empty, so that
// a broker taking the group over resumes it instead of making every member
// rejoin (SaveGroupState, LoadGroupState).
//
// Offsets are spread over at most 64 keys per group: topic t lives in bucket
// FNV-1a-32(t) mod 64. A commit reads the buckets it touches, merges its
// partitions in, and writes them back in one transaction that compares the
// owner key's create revision and each bucket's mod revision (0 = absent):
// at most 65 compares and 64 puts for any number of topics, under etcd's 128
// operations per transaction; so one commit of any size is atomic. Losing
// only a bucket race (a concurrent commit of the same group) re-reads and
// retries, bounded; merges are per partition, so concurrent commits never
// lose each other. A write whose bucket values exceed 1.4 MiB in total
// (about 50,000 partitions without metadata) is refused with ErrInvalid,
// under etcd's 1.5 MiB request limit. DeleteGroup deletes the offsets/
// prefix in one fenced transaction and leaves the ownership.
//
// The consumer-group coordinator writes through an OffsetWriter instead: it
// keeps the buckets of the groups it owns in memory (still compared by mod
// revision, so anyone else's change is noticed, re-read and redone), skips
// the read before a write, and batches the commits of all groups waiting at
// once into one transaction (one nested transaction per group, each fenced
// on its own), so many committers share one etcd WAL fsync.
//
// Offsets bucket value (varints as in encoding/binary; u = unsigned,
// s = zig-zag signed), topics and their partitions sorted:
//
//	+---------+------------------------------------------------------+
//	| ver = 1 | topic entry ...                                      |
//	+---------+------------------------------------------------------+
//	topic entry:  u len | name bytes | u count | partition entry × count
//	partition entry:
//	  u partition | s offset | s leader epoch | s commit timestamp (ms)
//	  | u metadata length + 1 (0 = null metadata) | metadata bytes
//
// About 6 to 20 bytes per partition plus metadata. No CRC: etcd checks
// integrity; a value that fails to decode is an error, never half-read.
//
// # Producer IDs
//
// AllocateProducerIDs reads <prefix>/producer-ids/next and advances it by
// n in a transaction comparing its mod revision (absent = 0, starting at 0),
// retrying a lost race on a fresh read. Blocks are disjoint across Stores,
// brokers and restarts; a block whose transaction outcome is unknown
// (ErrUnavailable) is never handed out again, only wasted.
//
// # Failure behaviour
//
// Errors: ErrTopicExists, ErrTopicNotFound, ErrPartitionNotFound, ErrConflict
// (a compare-and-swap lost, or a broker ID taken), ErrInvalid (bad argument,
// nothing written) and ErrUnavailable, matched with errors.Is.
//
// Every request is bounded by Config.DialTimeout; a timeout, a missing etcd
// leader or a refused connection is ErrUnavailable (an unreachable etcd makes
// Open fail within DialTimeout, never hang). Each write is one transaction:
// it happened entirely or not at all, but after ErrUnavailable the caller
// cannot tell which and must re-read.
//
// # Goroutines
//
// The Store owns the lease keep-alive of RegisterBroker, one goroutine per
// WatchTopics / WatchBrokers / WatchController call and one per held
// controller leadership (Campaign); Close cancels and waits for all of them, then revokes the
// broker lease (so the broker vanishes at once), closes the client and stops
// the embedded etcd. An embedded etcd's shutdown waits up to about 7s for
// watch or keep-alive streams of other processes' clients to end. Lock: Store.mu guards only the closed flag and the
// registration; no etcd I/O happens under it.
package coordinator
