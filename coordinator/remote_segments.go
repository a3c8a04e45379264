package coordinator

// Remote-segment metadata: KIP-405's RemoteLogMetadataManager on etcd. The
// key layout and the value format are drawn in doc.go ("Remote segments").

import (
	"cmp"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrFenced: a remote-segment write was refused because the fence's broker is
// not the partition's leader at the fence's leader epoch (DESIGN.md invariant
// 5). The caller must stop acting as leader for that partition; retrying with
// the same fence cannot succeed. A missing topic (or one deleted and
// re-created under the same name, so with another ID) and a missing partition
// are fenced too: those errors wrap ErrFenced together with ErrTopicNotFound
// or ErrPartitionNotFound.
var ErrFenced = errors.New("coordinator: fenced: not the partition leader at this epoch")

// ErrSegmentNotFound: UpdateRemoteSegmentState found no record of that id.
var ErrSegmentNotFound = errors.New("coordinator: remote segment not found")

// RemoteSegmentState is the life cycle of one upload attempt (KIP-405):
// CopyStarted → CopyFinished → DeleteStarted → DeleteFinished, and a copy
// that failed goes CopyStarted → DeleteStarted.
type RemoteSegmentState uint8

const (
	CopyStarted   RemoteSegmentState = 1
	CopyFinished  RemoteSegmentState = 2
	DeleteStarted RemoteSegmentState = 3
	// DeleteFinished is terminal: the record is removed from etcd.
	DeleteFinished RemoteSegmentState = 4
)

// String returns the state in KIP-405's words ("copy-started", ...).
func (s RemoteSegmentState) String() string {
	switch s {
	case CopyStarted:
		return "copy-started"
	case CopyFinished:
		return "copy-finished"
	case DeleteStarted:
		return "delete-started"
	case DeleteFinished:
		return "delete-finished"
	}
	return "RemoteSegmentState(" + strconv.Itoa(int(s)) + ")"
}

// legalTransition reports whether a record may move from one state to
// another (different) state.
func legalTransition(from, to RemoteSegmentState) bool {
	switch {
	case from == CopyStarted && (to == CopyFinished || to == DeleteStarted):
		return true
	case from == CopyFinished && to == DeleteStarted:
		return true
	case from == DeleteStarted && to == DeleteFinished:
		return true
	}
	return false
}

// EpochStart is one leader epoch of a segment and the first offset written
// in it.
type EpochStart struct {
	Epoch       int32
	StartOffset int64
}

// RemoteSegment is the metadata of one upload attempt of one segment.
type RemoteSegment struct {
	TopicID   [16]byte
	Partition int32
	ID        [16]byte // fresh random id per upload attempt

	StartOffset, EndOffset int64 // EndOffset inclusive (last offset in the segment)
	MaxTimestamp           int64
	BrokerID               int32
	LeaderEpoch            int32        // epoch of the leader that uploaded it
	Epochs                 []EpochStart // the segment's leader epochs, ascending
	SizeBytes              int64        // .log bytes
	State                  RemoteSegmentState
	StateTimeMs            int64 // when State was last set (unix ms)
}

// LeaderFence makes a write conditional on BrokerID still being the leader of
// Topic's partition Partition at LeaderEpoch (DESIGN.md invariant 5).
type LeaderFence struct {
	Topic       string
	Partition   int32
	BrokerID    int32
	LeaderEpoch int32
}

const (
	// remoteAttempts bounds the fenced writes' re-read-and-retry loop when
	// its transaction loses to a change that keeps the fence valid (an ISR
	// update, a concurrent state change of the same record).
	remoteAttempts = 8
	// remotePageSize is how many keys RemoteSegments reads per request.
	remotePageSize = 1000
	// maxSegmentEpochs bounds Epochs (keeps a record small; a segment with
	// more leader epochs than this is a bug upstream).
	maxSegmentEpochs = 1024
	// remoteFormatV1 is the version byte of a remote-segment value.
	remoteFormatV1 = 1
)

// Keys (drawn in doc.go):
//
//	<prefix>/remote/<topicIdHex>/<p>/<20-digit start offset>-<segmentIdHex>   record
//	<prefix>/remote/<topicIdHex>/ids/<p>/<segmentIdHex>                       start offset (decimal)
func (k keys) remote() string { return k.prefix + "/remote/" }
func (k keys) remoteTopic(topicID [16]byte) string {
	return k.remote() + hex.EncodeToString(topicID[:]) + "/"
}
func (k keys) remotePartition(topicID [16]byte, p int32) string {
	return k.remoteTopic(topicID) + strconv.FormatInt(int64(p), 10) + "/"
}
func (k keys) remoteSegment(topicID [16]byte, p int32, start int64, id [16]byte) string {
	return k.remotePartition(topicID, p) + fmt.Sprintf("%020d", start) + "-" + hex.EncodeToString(id[:])
}
func (k keys) remoteSegmentID(topicID [16]byte, p int32, id [16]byte) string {
	return k.remoteTopic(topicID) + "ids/" + strconv.FormatInt(int64(p), 10) + "/" + hex.EncodeToString(id[:])
}

// parseRemoteSegmentKey returns the start offset and segment id from the last
// element of a record key ("<20 digits>-<32 hex>").
func parseRemoteSegmentKey(key string) (start int64, id [16]byte, err error) {
	last := key[strings.LastIndexByte(key, '/')+1:]
	so, ih, ok := strings.Cut(last, "-")
	if !ok || len(so) != 20 || len(ih) != 32 {
		return 0, id, fmt.Errorf("malformed remote segment key %q", key)
	}
	start, err = strconv.ParseInt(so, 10, 64)
	if err != nil || start < 0 {
		return 0, id, fmt.Errorf("malformed remote segment key %q: start offset", key)
	}
	if _, err := hex.Decode(id[:], []byte(ih)); err != nil {
		return 0, id, fmt.Errorf("malformed remote segment key %q: segment id", key)
	}
	return start, id, nil
}

// encodeRemoteSegment writes the value drawn in doc.go. TopicID, Partition
// and ID are in the key, not the value.
func encodeRemoteSegment(seg RemoteSegment) []byte {
	b := make([]byte, 0, 48+12*len(seg.Epochs))
	b = append(b, remoteFormatV1, byte(seg.State))
	b = binary.AppendVarint(b, seg.StartOffset)
	b = binary.AppendUvarint(b, uint64(seg.EndOffset-seg.StartOffset))
	b = binary.AppendVarint(b, seg.MaxTimestamp)
	b = binary.AppendVarint(b, int64(seg.BrokerID))
	b = binary.AppendVarint(b, int64(seg.LeaderEpoch))
	b = binary.AppendVarint(b, seg.SizeBytes)
	b = binary.AppendVarint(b, seg.StateTimeMs)
	b = binary.AppendUvarint(b, uint64(len(seg.Epochs)))
	for _, e := range seg.Epochs {
		b = binary.AppendVarint(b, int64(e.Epoch))
		b = binary.AppendVarint(b, e.StartOffset)
	}
	return b
}

// decodeRemoteSegment reads a value written by encodeRemoteSegment into the
// offsets, epochs, sizes and state of seg (its key fields are left alone).
// Any malformed, truncated or over-long value is an error.
func decodeRemoteSegment(b []byte, seg *RemoteSegment) error {
	if len(b) < 2 {
		return fmt.Errorf("remote segment value of %d bytes: truncated", len(b))
	}
	if b[0] != remoteFormatV1 {
		return fmt.Errorf("remote segment value: unsupported version %d", b[0])
	}
	st := RemoteSegmentState(b[1])
	if st < CopyStarted || st > DeleteStarted {
		return fmt.Errorf("remote segment value: bad state %d", b[1])
	}
	d := varintReader{b: b[2:]}
	start := d.varint()
	span := d.uvarint()
	maxTs := d.varint()
	broker := d.int32()
	epoch := d.int32()
	size := d.varint()
	stateMs := d.varint()
	n := d.uvarint()
	if d.err != nil {
		return fmt.Errorf("remote segment value: %w", d.err)
	}
	if start < 0 || span > uint64(math.MaxInt64-start) {
		return fmt.Errorf("remote segment value: bad offsets %d + %d", start, span)
	}
	if n > maxSegmentEpochs || n > uint64(len(d.b))/2 {
		return fmt.Errorf("remote segment value: bad epoch count %d", n)
	}
	var epochs []EpochStart
	if n > 0 {
		epochs = make([]EpochStart, n)
		for i := range epochs {
			epochs[i] = EpochStart{Epoch: d.int32(), StartOffset: d.varint()}
		}
	}
	if d.err != nil {
		return fmt.Errorf("remote segment value: epochs: %w", d.err)
	}
	if len(d.b) != 0 {
		return fmt.Errorf("remote segment value: %d trailing bytes", len(d.b))
	}
	seg.State, seg.StartOffset, seg.EndOffset = st, start, start+int64(span)
	seg.MaxTimestamp, seg.BrokerID, seg.LeaderEpoch = maxTs, broker, epoch
	seg.SizeBytes, seg.StateTimeMs, seg.Epochs = size, stateMs, epochs
	return nil
}

// varintReader reads varints from b, keeping the first error.
type varintReader struct {
	b   []byte
	err error
}

func (r *varintReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errors.New("truncated or overflowing varint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *varintReader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errors.New("truncated or overflowing varint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *varintReader) int32() int32 {
	v := r.varint()
	if v < math.MinInt32 || v > math.MaxInt32 {
		if r.err == nil {
			r.err = fmt.Errorf("value %d out of int32 range", v)
		}
		return 0
	}
	return int32(v)
}

// sameRemoteSegment reports whether a and b are the same record (used to make
// a retried AddRemoteSegment succeed).
func sameRemoteSegment(a, b RemoteSegment) bool {
	return a.TopicID == b.TopicID && a.Partition == b.Partition && a.ID == b.ID &&
		a.StartOffset == b.StartOffset && a.EndOffset == b.EndOffset && a.MaxTimestamp == b.MaxTimestamp &&
		a.BrokerID == b.BrokerID && a.LeaderEpoch == b.LeaderEpoch && slices.Equal(a.Epochs, b.Epochs) &&
		a.SizeBytes == b.SizeBytes && a.State == b.State && a.StateTimeMs == b.StateTimeMs
}

func validateFence(f LeaderFence) error {
	if err := validateName(f.Topic); err != nil {
		return fmt.Errorf("fence: %w", err)
	}
	if f.Partition < 0 || f.BrokerID < 0 || f.LeaderEpoch < 0 {
		return fmt.Errorf("%w: fence %+v has a negative partition, broker or epoch", ErrInvalid, f)
	}
	return nil
}

func validateRemoteSegment(seg RemoteSegment, fence LeaderFence) error {
	switch {
	case seg.State != CopyStarted:
		return fmt.Errorf("%w: a new record must be %s, not %s", ErrInvalid, CopyStarted, seg.State)
	case seg.TopicID == [16]byte{}:
		return fmt.Errorf("%w: zero topic id", ErrInvalid)
	case seg.ID == [16]byte{}:
		return fmt.Errorf("%w: zero segment id", ErrInvalid)
	case seg.Partition != fence.Partition:
		return fmt.Errorf("%w: segment of partition %d under a fence for partition %d", ErrInvalid, seg.Partition, fence.Partition)
	case seg.BrokerID != fence.BrokerID || seg.LeaderEpoch != fence.LeaderEpoch:
		return fmt.Errorf("%w: segment says broker %d epoch %d, fence says broker %d epoch %d",
			ErrInvalid, seg.BrokerID, seg.LeaderEpoch, fence.BrokerID, fence.LeaderEpoch)
	case seg.StartOffset < 0 || seg.EndOffset < seg.StartOffset:
		return fmt.Errorf("%w: offsets [%d, %d]", ErrInvalid, seg.StartOffset, seg.EndOffset)
	case seg.SizeBytes < 0:
		return fmt.Errorf("%w: size %d", ErrInvalid, seg.SizeBytes)
	case len(seg.Epochs) > maxSegmentEpochs:
		return fmt.Errorf("%w: %d leader epochs (at most %d)", ErrInvalid, len(seg.Epochs), maxSegmentEpochs)
	}
	for i, e := range seg.Epochs {
		if e.Epoch < 0 || e.StartOffset < 0 || e.StartOffset > seg.EndOffset {
			return fmt.Errorf("%w: leader epoch entry %+v outside the segment [%d, %d]", ErrInvalid, e, seg.StartOffset, seg.EndOffset)
		}
		if i > 0 && (e.Epoch <= seg.Epochs[i-1].Epoch || e.StartOffset <= seg.Epochs[i-1].StartOffset) {
			return fmt.Errorf("%w: leader epochs %v not strictly ascending", ErrInvalid, seg.Epochs)
		}
	}
	return nil
}

// AddRemoteSegment records seg in state CopyStarted, if fence.BrokerID is the
// leader of fence's partition at fence.LeaderEpoch (ErrFenced otherwise; see
// ErrFenced for a missing topic or partition). seg.State must be CopyStarted,
// seg.Partition, seg.BrokerID and seg.LeaderEpoch must match the fence, and
// the offsets and epochs must make sense (ErrInvalid otherwise). A zero
// StateTimeMs is set to now.
//
// Retrying after ErrUnavailable is safe: adding a record identical to the one
// stored succeeds; a different record under the same segment id is
// ErrConflict. The write compares the partition state's revision and is
// re-read and retried (bounded) when only an unrelated change (an ISR update)
// intervened.
func (s *Store) AddRemoteSegment(ctx context.Context, seg RemoteSegment, fence LeaderFence) error {
	return s.addRemoteSegment(ctx, seg, fence, nil)
}

// addRemoteSegment is AddRemoteSegment with a test hook run before each write.
func (s *Store) addRemoteSegment(ctx context.Context, seg RemoteSegment, fence LeaderFence, beforeWrite func(attempt int)) error {
	op := fmt.Sprintf("add remote segment %x of %s-%d at %d", seg.ID, fence.Topic, seg.Partition, seg.StartOffset)
	if err := validateFence(fence); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if err := validateRemoteSegment(seg, fence); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if seg.StateTimeMs == 0 {
		seg.StateTimeMs = time.Now().UnixMilli()
	}
	seg.Epochs = slices.Clone(seg.Epochs)
	val := encodeRemoteSegment(seg)
	skey := s.keys.remoteSegment(seg.TopicID, seg.Partition, seg.StartOffset, seg.ID)
	ikey := s.keys.remoteSegmentID(seg.TopicID, seg.Partition, seg.ID)
	start := strconv.FormatInt(seg.StartOffset, 10)
	return s.fencedWrite(ctx, op, fence, seg.TopicID, []string{skey, ikey}, beforeWrite,
		func(kvs []*mvccpb.KeyValue) ([]clientv3.Cmp, []clientv3.Op, error) {
			if kvs[0] != nil {
				cur := RemoteSegment{TopicID: seg.TopicID, Partition: seg.Partition, ID: seg.ID}
				if err := decodeRemoteSegment(kvs[0].Value, &cur); err != nil {
					return nil, nil, fmt.Errorf("decode %s: %w", kvs[0].Key, err)
				}
				if sameRemoteSegment(cur, seg) {
					return nil, nil, nil // a retry of an add that happened
				}
				return nil, nil, fmt.Errorf("%w: segment id already recorded as %+v", ErrConflict, cur)
			}
			if kvs[1] != nil {
				return nil, nil, fmt.Errorf("%w: segment id already recorded at start offset %s", ErrConflict, kvs[1].Value)
			}
			return []clientv3.Cmp{
					clientv3.Compare(clientv3.CreateRevision(skey), "=", 0),
					clientv3.Compare(clientv3.CreateRevision(ikey), "=", 0),
				}, []clientv3.Op{
					clientv3.OpPut(skey, string(val)),
					clientv3.OpPut(ikey, start),
				}, nil
		})
}

// UpdateRemoteSegmentState moves a record along CopyStarted→CopyFinished,
// CopyStarted→DeleteStarted, CopyFinished→DeleteStarted and
// DeleteStarted→DeleteFinished (which deletes the record), setting
// StateTimeMs to now; other transitions are ErrInvalid. Like
// AddRemoteSegment it is fenced (ErrFenced) and retried on unrelated changes.
//
// Retries are idempotent: moving a record to the state it is in succeeds
// without writing, and so does DeleteFinished when the record is already gone
// (the terminal state is its absence). Any other state for a record that does
// not exist is ErrSegmentNotFound.
func (s *Store) UpdateRemoteSegmentState(ctx context.Context, topicID [16]byte, partition int32, id [16]byte, to RemoteSegmentState, fence LeaderFence) error {
	return s.updateRemoteSegmentState(ctx, topicID, partition, id, to, fence, nil)
}

func (s *Store) updateRemoteSegmentState(ctx context.Context, topicID [16]byte, partition int32, id [16]byte, to RemoteSegmentState, fence LeaderFence, beforeWrite func(attempt int)) error {
	op := fmt.Sprintf("set remote segment %x of %s-%d %s", id, fence.Topic, partition, to)
	if err := validateFence(fence); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	switch {
	case to < CopyStarted || to > DeleteFinished:
		return fmt.Errorf("%s: %w: unknown state %s", op, ErrInvalid, to)
	case partition != fence.Partition:
		return fmt.Errorf("%s: %w: partition %d under a fence for partition %d", op, ErrInvalid, partition, fence.Partition)
	case topicID == [16]byte{} || id == [16]byte{}:
		return fmt.Errorf("%s: %w: zero topic or segment id", op, ErrInvalid)
	}
	// The id key gives the start offset, hence the record key. It never
	// changes while the record exists; an absent id key means no record.
	ikey := s.keys.remoteSegmentID(topicID, partition, id)
	gctx, cancel := s.opCtx(ctx)
	resp, err := s.cli.Get(gctx, ikey)
	cancel()
	if err != nil {
		return s.classify(op, gctx, err)
	}
	watch := []string{ikey}
	var skey string
	if len(resp.Kvs) == 1 {
		start, err := strconv.ParseInt(string(resp.Kvs[0].Value), 10, 64)
		if err != nil || start < 0 {
			return fmt.Errorf("%s: decode %s = %q: bad start offset", op, ikey, resp.Kvs[0].Value)
		}
		skey = s.keys.remoteSegment(topicID, partition, start, id)
		watch = append(watch, skey)
	}
	return s.fencedWrite(ctx, op, fence, topicID, watch, beforeWrite,
		func(kvs []*mvccpb.KeyValue) ([]clientv3.Cmp, []clientv3.Op, error) {
			if len(kvs) < 2 || kvs[0] == nil || kvs[1] == nil {
				// Fence checked: the record is gone.
				if to == DeleteFinished {
					return nil, nil, nil
				}
				return nil, nil, ErrSegmentNotFound
			}
			cur := RemoteSegment{TopicID: topicID, Partition: partition, ID: id}
			if err := decodeRemoteSegment(kvs[1].Value, &cur); err != nil {
				return nil, nil, fmt.Errorf("decode %s: %w", skey, err)
			}
			if cur.State == to {
				return nil, nil, nil
			}
			if !legalTransition(cur.State, to) {
				return nil, nil, fmt.Errorf("%w: illegal transition %s -> %s", ErrInvalid, cur.State, to)
			}
			cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(skey), "=", kvs[1].ModRevision)}
			if to == DeleteFinished {
				return cmps, []clientv3.Op{clientv3.OpDelete(skey), clientv3.OpDelete(ikey)}, nil
			}
			cur.State, cur.StateTimeMs = to, time.Now().UnixMilli()
			return cmps, []clientv3.Op{clientv3.OpPut(skey, string(encodeRemoteSegment(cur)))}, nil
		})
}

// fencedWrite runs read → check fence → decide → conditional write, retried
// (bounded) while the write loses to a change that leaves the fence valid.
// It reads the topic record, the partition-state key and the keys in watch
// at one revision; decide gets watch's key-values (nil = absent) and returns
// extra compares and the operations to run (none = nothing to write,
// success). The write also compares the topic record's create revision and
// the partition key's mod revision (or absence), so it cannot land after a
// leadership change.
func (s *Store) fencedWrite(ctx context.Context, op string, fence LeaderFence, topicID [16]byte, watch []string, beforeWrite func(int),
	decide func(kvs []*mvccpb.KeyValue) ([]clientv3.Cmp, []clientv3.Op, error)) error {
	tkey, pkey := s.keys.topic(fence.Topic), s.keys.partition(fence.Topic, fence.Partition)
	for attempt := range remoteAttempts {
		if attempt > 0 {
			if err := backoff(ctx, attempt); err != nil {
				return fmt.Errorf("%s: %w", op, err)
			}
		}
		fenceCmps, kvs, err := s.readFence(ctx, op, fence, topicID, tkey, pkey, watch)
		if err != nil {
			return err
		}
		cmps, ops, err := decide(kvs)
		if err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		if len(ops) == 0 {
			return nil
		}
		if beforeWrite != nil {
			beforeWrite(attempt)
		}
		tctx, cancel := s.opCtx(ctx)
		resp, err := s.cli.Txn(tctx).If(append(fenceCmps, cmps...)...).Then(ops...).Commit()
		cancel()
		if err != nil {
			return s.classify(op, tctx, err)
		}
		if resp.Succeeded {
			return nil
		}
		// Something changed between read and write: re-read; a changed
		// leader or epoch is then ErrFenced.
	}
	return fmt.Errorf("%s: %w: still contended after %d attempts", op, ErrConflict, remoteAttempts)
}

// readFence reads the partition's current state and the watch keys at one
// revision, checks the fence and returns the compares that keep it valid.
func (s *Store) readFence(ctx context.Context, op string, fence LeaderFence, topicID [16]byte, tkey, pkey string, watch []string) ([]clientv3.Cmp, []*mvccpb.KeyValue, error) {
	ops := []clientv3.Op{clientv3.OpGet(tkey), clientv3.OpGet(pkey)}
	for _, k := range watch {
		ops = append(ops, clientv3.OpGet(k))
	}
	rctx, cancel := s.opCtx(ctx)
	defer cancel()
	resp, err := s.cli.Txn(rctx).Then(ops...).Commit()
	if err != nil {
		return nil, nil, s.classify(op, rctx, err)
	}
	rec := resp.Responses[0].GetResponseRange().Kvs
	if len(rec) == 0 {
		return nil, nil, fmt.Errorf("%s: %w: %w: topic %s", op, ErrFenced, ErrTopicNotFound, fence.Topic)
	}
	t, err := decodeTopic(fence.Topic, rec[0])
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", op, err)
	}
	if t.ID != topicID {
		return nil, nil, fmt.Errorf("%s: %w: %w: topic %s now has id %x, not %x", op, ErrFenced, ErrTopicNotFound, fence.Topic, t.ID, topicID)
	}
	if int(fence.Partition) >= len(t.Partitions) {
		return nil, nil, fmt.Errorf("%s: %w: %w: topic %s has %d partitions", op, ErrFenced, ErrPartitionNotFound, fence.Topic, len(t.Partitions))
	}
	pcmp := clientv3.Compare(clientv3.CreateRevision(pkey), "=", 0)
	if pk := resp.Responses[1].GetResponseRange().Kvs; len(pk) > 0 {
		if err := applyPartition(&t, fence.Partition, pk[0]); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", op, err)
		}
		pcmp = clientv3.Compare(clientv3.ModRevision(pkey), "=", pk[0].ModRevision)
	}
	st := t.Partitions[fence.Partition]
	if st.Leader != fence.BrokerID || st.LeaderEpoch != fence.LeaderEpoch {
		return nil, nil, fmt.Errorf("%s: %w: leader is %d at epoch %d, fence is broker %d at epoch %d",
			op, ErrFenced, st.Leader, st.LeaderEpoch, fence.BrokerID, fence.LeaderEpoch)
	}
	kvs := make([]*mvccpb.KeyValue, len(watch))
	for i := range watch {
		if r := resp.Responses[2+i].GetResponseRange().Kvs; len(r) > 0 {
			kvs[i] = r[0]
		}
	}
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(tkey), "=", rec[0].CreateRevision), pcmp}
	return cmps, kvs, nil
}

// RemoteSegments lists a partition's records in every state, sorted by
// StartOffset then StateTimeMs (then segment id). It reads 1,000 keys per
// request, all pages at the revision of the first, so a partition of any
// size lists consistently. Records of deleted topics are listed too (no
// fence: any broker may read). An empty partition gives an empty list.
func (s *Store) RemoteSegments(ctx context.Context, topicID [16]byte, partition int32) ([]RemoteSegment, error) {
	return s.listRemoteSegments(ctx, topicID, partition, remotePageSize)
}

func (s *Store) listRemoteSegments(ctx context.Context, topicID [16]byte, partition int32, page int) ([]RemoteSegment, error) {
	op := fmt.Sprintf("list remote segments of %x-%d", topicID, partition)
	if topicID == [16]byte{} || partition < 0 {
		return nil, fmt.Errorf("%s: %w: zero topic id or negative partition", op, ErrInvalid)
	}
	prefix := s.keys.remotePartition(topicID, partition)
	end := clientv3.GetPrefixRangeEnd(prefix)
	var out []RemoteSegment
	var rev int64
	for from := prefix; ; {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(int64(page))}
		if rev > 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		gctx, cancel := s.opCtx(ctx)
		resp, err := s.cli.Get(gctx, from, opts...)
		cancel()
		if err != nil {
			return nil, s.classify(op, gctx, err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			seg := RemoteSegment{TopicID: topicID, Partition: partition}
			start, id, err := parseRemoteSegmentKey(string(kv.Key))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", op, err)
			}
			seg.ID = id
			if err := decodeRemoteSegment(kv.Value, &seg); err != nil {
				return nil, fmt.Errorf("%s: decode %s: %w", op, kv.Key, err)
			}
			if seg.StartOffset != start {
				return nil, fmt.Errorf("%s: decode %s: start offset %d in the value", op, kv.Key, seg.StartOffset)
			}
			out = append(out, seg)
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	// Keys are in (start offset, id) order; ties on the start offset are
	// attempts of the same segment, ordered by when their state was set.
	slices.SortStableFunc(out, func(a, b RemoteSegment) int {
		return cmp.Or(cmp.Compare(a.StartOffset, b.StartOffset), cmp.Compare(a.StateTimeMs, b.StateTimeMs))
	})
	if out == nil {
		out = []RemoteSegment{}
	}
	return out, nil
}

// DeleteAllRemoteSegments removes every record of a topic, all partitions and
// states, in one delete (used once a deleted topic's objects are gone). Not
// fenced; deleting a topic with no records succeeds.
func (s *Store) DeleteAllRemoteSegments(ctx context.Context, topicID [16]byte) error {
	op := fmt.Sprintf("delete remote segments of topic %x", topicID)
	if topicID == [16]byte{} {
		return fmt.Errorf("%s: %w: zero topic id", op, ErrInvalid)
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	if _, err := s.cli.Delete(ctx, s.keys.remoteTopic(topicID), clientv3.WithPrefix()); err != nil {
		return s.classify(op, ctx, err)
	}
	return nil
}

// RemoteTopicIDs lists, sorted, the ids of the topics that have
// remote-segment records (to find the leftovers of deleted topics). It skips
// from topic to topic, one small request per topic, never reading records.
func (s *Store) RemoteTopicIDs(ctx context.Context) ([][16]byte, error) {
	const op = "list topics with remote segments"
	base := s.keys.remote()
	end := clientv3.GetPrefixRangeEnd(base)
	var out [][16]byte
	var rev int64
	for from := base; ; {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(1), clientv3.WithKeysOnly()}
		if rev > 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		gctx, cancel := s.opCtx(ctx)
		resp, err := s.cli.Get(gctx, from, opts...)
		cancel()
		if err != nil {
			return nil, s.classify(op, gctx, err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		if len(resp.Kvs) == 0 {
			break
		}
		key := string(resp.Kvs[0].Key)
		rel := strings.TrimPrefix(key, base)
		elem, _, sub := strings.Cut(rel, "/")
		if !sub {
			from = key + "\x00" // a stray key, not a topic's subtree: step over it
			continue
		}
		var id [16]byte
		if len(elem) == 32 {
			if _, err := hex.Decode(id[:], []byte(elem)); err == nil {
				out = append(out, id)
			}
		}
		from = base + elem + "0" // '0' follows '/': the first key after this topic's subtree
	}
	return out, nil
}
