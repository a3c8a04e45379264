package coordinator

import (
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// CommittedOffset is one partition's committed offset in a consumer group.
// Metadata nil is Kafka's null metadata (distinct from ""). CommitTimestamp
// is in Unix milliseconds and drives ExpireOffsets.
type CommittedOffset struct {
	Topic           string
	Partition       int32
	Offset          int64
	LeaderEpoch     int32
	Metadata        *string
	CommitTimestamp int64
}

// A group's offsets are spread over offsetBuckets etcd keys
// <prefix>/groups/<group>/offsets/<b>, b = FNV-1a(topic) mod offsetBuckets;
// each key holds every committed partition of the topics hashing to it. Any
// commit therefore touches at most offsetBuckets keys: its one transaction
// has at most offsetBuckets+1 compares and offsetBuckets puts, within etcd's
// 128 operations per transaction whatever the number of topics.
const offsetBuckets = 64

// offsetAttempts bounds the read-modify-write retries of one offset write
// when its transaction loses only to a concurrent write of the same buckets
// (a lost ownership fence is never retried).
const offsetAttempts = 64

// bucketOf returns the offsets bucket of topic.
func bucketOf(topic string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(topic))
	return int(h.Sum32() % offsetBuckets)
}

type topicPartition struct {
	topic string
	part  int32
}

// bucket is one offsets key as read: its mod revision (0 = absent) and
// contents.
type bucket struct {
	modRev int64
	offs   map[topicPartition]CommittedOffset
}

const offsetsFormatV1 = 1

// encodeBucket writes a bucket value (drawn in doc.go): a version byte, then
// per topic (sorted) its name and partitions (sorted).
func encodeBucket(offs map[topicPartition]CommittedOffset) []byte {
	sorted := make([]CommittedOffset, 0, len(offs))
	for _, o := range offs {
		sorted = append(sorted, o)
	}
	sortOffsets(sorted)
	buf := make([]byte, 0, 1+len(sorted)*24)
	buf = append(buf, offsetsFormatV1)
	for i := 0; i < len(sorted); {
		j := i
		for j < len(sorted) && sorted[j].Topic == sorted[i].Topic {
			j++
		}
		buf = binary.AppendUvarint(buf, uint64(len(sorted[i].Topic)))
		buf = append(buf, sorted[i].Topic...)
		buf = binary.AppendUvarint(buf, uint64(j-i))
		for _, o := range sorted[i:j] {
			buf = binary.AppendUvarint(buf, uint64(o.Partition))
			buf = binary.AppendVarint(buf, o.Offset)
			buf = binary.AppendVarint(buf, int64(o.LeaderEpoch))
			buf = binary.AppendVarint(buf, o.CommitTimestamp)
			if o.Metadata == nil {
				buf = binary.AppendUvarint(buf, 0)
			} else {
				buf = binary.AppendUvarint(buf, uint64(len(*o.Metadata))+1)
				buf = append(buf, *o.Metadata...)
			}
		}
		i = j
	}
	return buf
}

// decodeBucket parses a bucket value; any truncation, overflow or unknown
// version is an error (nothing partial is returned).
func decodeBucket(val []byte) (map[topicPartition]CommittedOffset, error) {
	d := decoder{b: val}
	if v := d.byte(); d.err == nil && v != offsetsFormatV1 {
		return nil, fmt.Errorf("offsets value version %d, want %d", v, offsetsFormatV1)
	}
	out := make(map[topicPartition]CommittedOffset)
	for d.err == nil && len(d.b) > 0 {
		topic := d.str(d.uvarint())
		n := d.uvarint()
		if d.err == nil && n > uint64(len(d.b)) {
			d.fail("partition count")
		}
		for i := uint64(0); i < n && d.err == nil; i++ {
			o := CommittedOffset{Topic: topic}
			p := d.uvarint()
			o.Offset = d.varint()
			le := d.varint()
			o.CommitTimestamp = d.varint()
			if ml := d.uvarint(); ml > 0 {
				m := d.str(ml - 1)
				o.Metadata = &m
			}
			if p > 1<<31-1 || le < -1<<31 || le > 1<<31-1 {
				d.fail("partition or leader epoch out of range")
			}
			o.Partition, o.LeaderEpoch = int32(p), int32(le)
			out[topicPartition{topic, o.Partition}] = o
		}
	}
	if d.err != nil {
		return nil, d.err
	}
	return out, nil
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("offsets value: bad %s", what)
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if d.err != nil || len(d.b) < 1 {
		d.fail("length")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("uvarint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) str(n uint64) string {
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.b)) {
		d.fail("string length")
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func sortOffsets(offs []CommittedOffset) {
	slices.SortFunc(offs, func(a, b CommittedOffset) int {
		if c := strings.Compare(a.Topic, b.Topic); c != 0 {
			return c
		}
		return cmp.Compare(a.Partition, b.Partition)
	})
}

// readBuckets reads the group's offsets buckets at one revision: all of
// them when which is nil, else only those listed (absent ones with
// modRev 0). It returns the buckets by number.
func (s *Store) readBuckets(ctx context.Context, op, group string, which []int) (map[int]*bucket, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	var kvs []*mvccpb.KeyValue
	if which == nil {
		resp, err := s.cli.Get(ctx, s.keys.groupOffsets(group), clientv3.WithPrefix())
		if err != nil {
			return nil, s.classify(op, ctx, err)
		}
		kvs = resp.Kvs
	} else {
		ops := make([]clientv3.Op, len(which))
		for i, b := range which {
			ops[i] = clientv3.OpGet(s.keys.groupOffsetBucket(group, b))
		}
		resp, err := s.cli.Txn(ctx).Then(ops...).Commit()
		if err != nil {
			return nil, s.classify(op, ctx, err)
		}
		for _, r := range resp.Responses {
			kvs = append(kvs, r.GetResponseRange().Kvs...)
		}
	}
	out := make(map[int]*bucket, len(which))
	for _, b := range which {
		out[b] = &bucket{offs: map[topicPartition]CommittedOffset{}}
	}
	prefix := s.keys.groupOffsets(group)
	for _, kv := range kvs {
		n, ok := bucketNumber(string(kv.Key), prefix)
		if !ok {
			continue
		}
		offs, err := decodeBucket(kv.Value)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", op, kv.Key, err)
		}
		out[n] = &bucket{modRev: kv.ModRevision, offs: offs}
	}
	return out, nil
}

// bucketNumber returns the bucket number of key, an offsets key of the group
// whose offsets prefix is prefix; ok is false for any other key.
func bucketNumber(key, prefix string) (n int, ok bool) {
	rest, found := strings.CutPrefix(key, prefix)
	if !found {
		return 0, false
	}
	n, err := strconv.Atoi(rest)
	return n, err == nil && n >= 0 && n < offsetBuckets
}

// mutateOffsets is the fenced read-modify-write behind every offset change:
// it reads the buckets `which` (nil = all), lets edit change them in place
// and return the numbers of those it changed, and writes those in one
// transaction comparing the owner key's create revision with own.Revision
// and each changed bucket's mod revision with the one read. A write that
// loses only to a concurrent offsets write is redone on fresh data (edits
// are per partition, so nothing is lost); a lost fence is ErrConflict and
// writes nothing. edit may be called several times.
func (s *Store) mutateOffsets(ctx context.Context, op, group string, own GroupOwner, which []int,
	edit func(map[int]*bucket) []int) error {
	if err := validateOwnership(op, group, own); err != nil {
		return err
	}
	ownerKey := s.keys.groupOwner(group)
	for attempt := 0; ; attempt++ {
		bs, err := s.readBuckets(ctx, op, group, which)
		if err != nil {
			return err
		}
		changed := edit(bs)
		if len(changed) == 0 {
			// Nothing to write, but the caller still learns whether it owns the group.
			return s.checkOwner(ctx, op, group, own)
		}
		cmps := []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(ownerKey), "=", own.Revision)}
		var puts []clientv3.Op
		size := 0
		for _, n := range changed {
			b, key := bs[n], s.keys.groupOffsetBucket(group, n)
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(key), "=", b.modRev))
			if len(b.offs) == 0 {
				puts = append(puts, clientv3.OpDelete(key))
				continue
			}
			val := encodeBucket(b.offs)
			size += len(key) + len(val)
			puts = append(puts, clientv3.OpPut(key, string(val)))
		}
		if size > maxRecordBytes {
			return fmt.Errorf("%s: %w: %d bytes of offsets in one write, limit %d", op, ErrInvalid, size, maxRecordBytes)
		}
		tctx, cancel := s.opCtx(ctx)
		resp, err := s.cli.Txn(tctx).If(cmps...).Then(puts...).Else(clientv3.OpGet(ownerKey)).Commit()
		cancel()
		if err != nil {
			return s.classify(op, tctx, err)
		}
		if resp.Succeeded {
			return nil
		}
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) == 0 || kvs[0].CreateRevision != own.Revision {
			return fmt.Errorf("%s: %w: group not owned at revision %d", op, ErrConflict, own.Revision)
		}
		if attempt+1 >= offsetAttempts {
			return fmt.Errorf("%s: %w: lost %d times to concurrent offset writes", op, ErrConflict, offsetAttempts)
		}
		if err := backoff(ctx, attempt); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
	}
}

func validateOwnership(op, group string, own GroupOwner) error {
	if err := validateGroup(op, group); err != nil {
		return err
	}
	if own.Revision <= 0 {
		return fmt.Errorf("%s: %w: no ownership revision", op, ErrInvalid)
	}
	return nil
}

// checkOwner answers ErrConflict unless the group is owned at own.Revision.
func (s *Store) checkOwner(ctx context.Context, op, group string, own GroupOwner) error {
	if err := validateOwnership(op, group, own); err != nil {
		return err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, s.keys.groupOwner(group))
	if err != nil {
		return s.classify(op, ctx, err)
	}
	if len(resp.Kvs) == 0 || resp.Kvs[0].CreateRevision != own.Revision {
		return fmt.Errorf("%s: %w: group not owned at revision %d", op, ErrConflict, own.Revision)
	}
	return nil
}

// backoff waits a short random time growing with attempt (at most 50ms).
func backoff(ctx context.Context, attempt int) error {
	limit := time.Duration(min(attempt+1, 25)) * 2 * time.Millisecond
	t := time.NewTimer(time.Duration(rand.Int64N(int64(limit))) + 100*time.Microsecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// bucketsOf returns the sorted distinct buckets of topics.
func bucketsOf(topics []string) []int {
	seen := make(map[int]bool)
	var out []int
	for _, t := range topics {
		if b := bucketOf(t); !seen[b] {
			seen[b] = true
			out = append(out, b)
		}
	}
	slices.Sort(out)
	return out
}

// CommitOffsets writes offs into group atomically (all or nothing), fenced
// by the ownership own: if the group's owner key is not the one created at
// own.Revision (ownership lost, moved or released), nothing is written and
// the error wraps ErrConflict (the broker answers NOT_COORDINATOR).
// Partitions not in offs keep their offsets; a partition listed twice takes
// its last entry. Any number of topics and partitions fits one call as long
// as the touched buckets' values total at most about 1.4 MiB (roughly
// 50,000 partitions without metadata); a larger commit is ErrInvalid.
// Concurrent commits to one group, from any Store, are merged per partition
// (the latest write of a partition wins) and never lose each other.
//
// Each call reads the buckets it changes before writing them (two etcd
// round trips); an OffsetWriter keeps them in memory instead.
func (s *Store) CommitOffsets(ctx context.Context, group string, own GroupOwner, offs []CommittedOffset) error {
	op := fmt.Sprintf("commit %d offsets of group %q", len(offs), group)
	which, edit, err := commitEdit(op, offs)
	if err != nil {
		return err
	}
	if len(which) == 0 {
		return s.checkOwner(ctx, op, group, own)
	}
	return s.mutateOffsets(ctx, op, group, own, which, edit)
}

// commitEdit checks offs and returns the buckets they touch and the edit
// that writes them.
func commitEdit(op string, offs []CommittedOffset) ([]int, func(map[int]*bucket) []int, error) {
	topics := make([]string, 0, len(offs))
	for _, o := range offs {
		if o.Topic == "" || o.Partition < 0 {
			return nil, nil, fmt.Errorf("%s: %w: topic %q partition %d", op, ErrInvalid, o.Topic, o.Partition)
		}
		topics = append(topics, o.Topic)
	}
	which := bucketsOf(topics)
	return which, func(bs map[int]*bucket) []int {
		for _, o := range offs {
			o.Metadata = cloneStr(o.Metadata)
			bs[bucketOf(o.Topic)].offs[topicPartition{o.Topic, o.Partition}] = o
		}
		return which
	}, nil
}

func cloneStr(p *string) *string {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

// FetchOffsets returns the group's committed offsets sorted by topic and
// partition: of every topic when topics is nil, else of the listed topics
// only. An unknown group (or a topic without commits) gives no entries and
// no error. It reads at one etcd revision and is not fenced: any broker may
// read.
func (s *Store) FetchOffsets(ctx context.Context, group string, topics []string) ([]CommittedOffset, error) {
	op := fmt.Sprintf("fetch offsets of group %q", group)
	if err := validateGroup(op, group); err != nil {
		return nil, err
	}
	var which []int
	if topics != nil {
		which = bucketsOf(topics)
		if len(which) == 0 {
			return []CommittedOffset{}, nil
		}
	}
	bs, err := s.readBuckets(ctx, op, group, which)
	if err != nil {
		return nil, err
	}
	var want map[string]bool
	if topics != nil {
		want = make(map[string]bool, len(topics))
		for _, t := range topics {
			want[t] = true
		}
	}
	out := []CommittedOffset{}
	for _, b := range bs {
		for tp, o := range b.offs {
			if want == nil || want[tp.topic] {
				out = append(out, o)
			}
		}
	}
	sortOffsets(out)
	return out, nil
}

// DeleteOffsets removes the offsets of the given partitions (OffsetDelete),
// atomically and fenced like CommitOffsets. Partitions without offsets are
// ignored.
func (s *Store) DeleteOffsets(ctx context.Context, group string, own GroupOwner, parts map[string][]int32) error {
	op := fmt.Sprintf("delete offsets of group %q", group)
	which, edit := deleteEdit(parts)
	if len(which) == 0 {
		return s.checkOwner(ctx, op, group, own)
	}
	return s.mutateOffsets(ctx, op, group, own, which, edit)
}

// deleteEdit returns the buckets of parts and the edit that removes them.
func deleteEdit(parts map[string][]int32) ([]int, func(map[int]*bucket) []int) {
	topics := make([]string, 0, len(parts))
	for t := range parts {
		topics = append(topics, t)
	}
	return bucketsOf(topics), func(bs map[int]*bucket) []int {
		var changed []int
		for t, ps := range parts {
			n := bucketOf(t)
			b := bs[n]
			before := len(b.offs)
			for _, p := range ps {
				delete(b.offs, topicPartition{t, p})
			}
			if len(b.offs) != before && !slices.Contains(changed, n) {
				changed = append(changed, n)
			}
		}
		slices.Sort(changed)
		return changed
	}
}

// DeleteGroup removes every committed offset and the saved state of the
// group (DeleteGroups) in one transaction fenced by own (ErrConflict if not
// owned at own.Revision). The ownership itself stays.
func (s *Store) DeleteGroup(ctx context.Context, group string, own GroupOwner) error {
	op := fmt.Sprintf("delete group %q", group)
	if err := validateOwnership(op, group, own); err != nil {
		return err
	}
	return s.fencedGroupWrite(ctx, op, group, own,
		clientv3.OpDelete(s.keys.groupOffsets(group), clientv3.WithPrefix()),
		clientv3.OpDelete(s.keys.groupState(group)))
}

// ExpireOffsets deletes the group's offsets whose CommitTimestamp is below
// cutoffMs (the caller applies offsets.retention.minutes to empty groups),
// atomically and fenced like CommitOffsets, and returns how many it
// deleted.
func (s *Store) ExpireOffsets(ctx context.Context, group string, own GroupOwner, cutoffMs int64) (int, error) {
	op := fmt.Sprintf("expire offsets of group %q before %d", group, cutoffMs)
	var removed int
	if err := s.mutateOffsets(ctx, op, group, own, nil, expireEdit(cutoffMs, &removed)); err != nil {
		return 0, err
	}
	return removed, nil
}

// expireEdit returns the edit of every bucket (which = nil) that removes
// offsets committed before cutoffMs and counts them in *removed (reset at
// each call: an edit may be redone).
func expireEdit(cutoffMs int64, removed *int) func(map[int]*bucket) []int {
	return func(bs map[int]*bucket) []int {
		*removed = 0
		var changed []int
		for n, b := range bs {
			before := len(b.offs)
			for tp, o := range b.offs {
				if o.CommitTimestamp < cutoffMs {
					delete(b.offs, tp)
				}
			}
			if d := before - len(b.offs); d > 0 {
				*removed += d
				changed = append(changed, n)
			}
		}
		slices.Sort(changed)
		return changed
	}
}
