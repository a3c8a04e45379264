package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"

	"github.com/google/uuid"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// maxRecordBytes keeps a topic record well under etcd's default request limit
// (1.5 MiB). About 20,000 partitions with three replicas fit.
const maxRecordBytes = 1400 * 1024

// updateAttempts bounds UpdatePartition's internal retries when its
// transaction loses only to an unrelated change (never to an epoch change).
const updateAttempts = 8

// PartitionState is one partition's replica assignment and leadership.
// Leader is -1 when there is none. PartitionEpoch increases by one on every
// change (UpdatePartition enforces it) and is what updates compare against.
type PartitionState struct {
	Partition      int32
	Replicas       []int32
	Leader         int32
	LeaderEpoch    int32
	ISR            []int32
	PartitionEpoch int32
}

// Topic is a topic's metadata. Revision is the etcd mod revision of the topic
// record: SetTopicConfigs and AddPartitions compare against it. Partition
// state changes (UpdatePartition) do not change Revision.
type Topic struct {
	Name       string
	ID         [16]byte // UUID
	Configs    map[string]string
	Partitions []PartitionState
	Revision   int64
}

// topicRecord is the JSON value at <prefix>/topics/<name>.
type topicRecord struct {
	V          int               `json:"v"`
	ID         string            `json:"id"`
	Configs    map[string]string `json:"configs,omitempty"`
	Partitions []partRecord      `json:"partitions"`
}

// partRecord is one partition's state, inside a topic record (initial state)
// and alone at <prefix>/topics/<name>/partitions/<p> (current state, once
// changed).
type partRecord struct {
	P   int32   `json:"p"`
	R   []int32 `json:"r"`
	L   int32   `json:"l"`
	LE  int32   `json:"le"`
	ISR []int32 `json:"isr"`
	PE  int32   `json:"pe"`
}

const topicRecordVersion = 1

func toPartRecord(p PartitionState) partRecord {
	return partRecord{P: p.Partition, R: slices.Clone(p.Replicas), L: p.Leader, LE: p.LeaderEpoch, ISR: slices.Clone(p.ISR), PE: p.PartitionEpoch}
}

func (r partRecord) state() PartitionState {
	return PartitionState{Partition: r.P, Replicas: r.R, Leader: r.L, LeaderEpoch: r.LE, ISR: r.ISR, PartitionEpoch: r.PE}
}

func encodeTopic(t Topic) ([]byte, error) {
	rec := topicRecord{V: topicRecordVersion, ID: uuid.UUID(t.ID).String(), Configs: t.Configs}
	rec.Partitions = make([]partRecord, len(t.Partitions))
	for i, p := range t.Partitions {
		rec.Partitions[i] = toPartRecord(p)
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	if len(b) > maxRecordBytes {
		return nil, fmt.Errorf("%w: topic record of %d bytes exceeds %d (too many partitions)", ErrInvalid, len(b), maxRecordBytes)
	}
	return b, nil
}

func decodeTopic(name string, kv *mvccpb.KeyValue) (Topic, error) {
	var rec topicRecord
	if err := json.Unmarshal(kv.Value, &rec); err != nil {
		return Topic{}, fmt.Errorf("decode topic record %s: %w", kv.Key, err)
	}
	if rec.V != topicRecordVersion {
		return Topic{}, fmt.Errorf("decode topic record %s: unsupported version %d", kv.Key, rec.V)
	}
	id, err := uuid.Parse(rec.ID)
	if err != nil {
		return Topic{}, fmt.Errorf("decode topic record %s: id: %w", kv.Key, err)
	}
	t := Topic{Name: name, ID: id, Configs: rec.Configs, Revision: kv.ModRevision}
	if t.Configs == nil {
		t.Configs = map[string]string{}
	}
	t.Partitions = make([]PartitionState, len(rec.Partitions))
	for i, p := range rec.Partitions {
		t.Partitions[i] = p.state()
	}
	return t, nil
}

// applyPartition overlays a partition-state key on t. Keys for partitions the
// record does not have are ignored.
func applyPartition(t *Topic, p int32, kv *mvccpb.KeyValue) error {
	var r partRecord
	if err := json.Unmarshal(kv.Value, &r); err != nil {
		return fmt.Errorf("decode partition state %s: %w", kv.Key, err)
	}
	if p >= 0 && int(p) < len(t.Partitions) && r.P == p {
		t.Partitions[p] = r.state()
	}
	return nil
}

// ValidTopicName reports whether name is a legal Kafka topic name: 1 to 249
// characters of [a-zA-Z0-9._-], not "." or "..".
func ValidTopicName(name string) bool {
	if name == "" || len(name) > 249 || name == "." || name == ".." {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func validatePartition(p PartitionState, want int32) error {
	if p.Partition != want {
		return fmt.Errorf("%w: partition %d where %d expected (numbering must be dense from 0)", ErrInvalid, p.Partition, want)
	}
	if len(p.Replicas) == 0 {
		return fmt.Errorf("%w: partition %d has no replicas", ErrInvalid, p.Partition)
	}
	seen := make(map[int32]bool, len(p.Replicas))
	for _, r := range p.Replicas {
		if r < 0 || seen[r] {
			return fmt.Errorf("%w: partition %d: replica list %v has a negative or repeated broker", ErrInvalid, p.Partition, p.Replicas)
		}
		seen[r] = true
	}
	inISR := make(map[int32]bool, len(p.ISR))
	for _, r := range p.ISR {
		if !seen[r] || inISR[r] {
			return fmt.Errorf("%w: partition %d: ISR %v is not a set of replicas %v", ErrInvalid, p.Partition, p.ISR, p.Replicas)
		}
		inISR[r] = true
	}
	if p.Leader != -1 && !seen[p.Leader] {
		return fmt.Errorf("%w: partition %d: leader %d is not a replica", ErrInvalid, p.Partition, p.Leader)
	}
	if p.LeaderEpoch < 0 || p.PartitionEpoch < 0 {
		return fmt.Errorf("%w: partition %d: negative epoch", ErrInvalid, p.Partition)
	}
	return nil
}

func validateName(name string) error {
	if !ValidTopicName(name) {
		return fmt.Errorf("%w: topic name %q", ErrInvalid, name)
	}
	return nil
}

// CreateTopic writes the topic record, which holds every partition's initial
// state, in one transaction: all or nothing, for any partition count that fits
// a record (about 20,000). ErrTopicExists if the name exists; ErrInvalid for a
// bad name, a zero ID, no partitions or non-dense numbering.
func (s *Store) CreateTopic(ctx context.Context, t Topic) error {
	op := "create topic " + t.Name
	if err := validateName(t.Name); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if t.ID == ([16]byte{}) {
		return fmt.Errorf("%s: %w: zero topic id", op, ErrInvalid)
	}
	if len(t.Partitions) == 0 {
		return fmt.Errorf("%s: %w: no partitions", op, ErrInvalid)
	}
	for i, p := range t.Partitions {
		if err := validatePartition(p, int32(i)); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
	}
	val, err := encodeTopic(t)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	key := s.keys.topic(t.Name)
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(
			clientv3.OpPut(key, string(val)),
			// Nothing should be there; clear leftovers of any older layout.
			clientv3.OpDelete(s.keys.topicSub(t.Name), clientv3.WithPrefix()),
		).
		Commit()
	if err != nil {
		return s.classify(op, ctx, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("%s: %w", op, ErrTopicExists)
	}
	return nil
}

// DeleteTopic removes the topic record and all its partition-state keys in one
// transaction. ErrTopicNotFound if there is no such topic.
func (s *Store) DeleteTopic(ctx context.Context, name string) error {
	op := "delete topic " + name
	if err := validateName(name); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	key := s.keys.topic(name)
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), ">", 0)).
		Then(
			clientv3.OpDelete(key),
			clientv3.OpDelete(s.keys.topicSub(name), clientv3.WithPrefix()),
		).
		Commit()
	if err != nil {
		return s.classify(op, ctx, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("%s: %w", op, ErrTopicNotFound)
	}
	return nil
}

// Topic returns one topic with the current state of every partition, read at
// one etcd revision.
func (s *Store) Topic(ctx context.Context, name string) (Topic, error) {
	return s.readTopic(ctx, "get topic "+name, name)
}

// readTopic reads the record and partition keys of one topic at one revision.
func (s *Store) readTopic(ctx context.Context, op, name string) (Topic, error) {
	if err := validateName(name); err != nil {
		return Topic{}, fmt.Errorf("%s: %w", op, err)
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	resp, err := s.cli.Txn(ctx).Then(
		clientv3.OpGet(s.keys.topic(name)),
		clientv3.OpGet(s.keys.partitions(name), clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return Topic{}, s.classify(op, ctx, err)
	}
	rec := resp.Responses[0].GetResponseRange().Kvs
	if len(rec) == 0 {
		return Topic{}, fmt.Errorf("%s: %w", op, ErrTopicNotFound)
	}
	t, err := decodeTopic(name, rec[0])
	if err != nil {
		return Topic{}, fmt.Errorf("%s: %w", op, err)
	}
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		if _, p, isPart, ok := s.keys.parseTopicsKey(string(kv.Key)); ok && isPart {
			if err := applyPartition(&t, p, kv); err != nil {
				return Topic{}, fmt.Errorf("%s: %w", op, err)
			}
		}
	}
	return t, nil
}

// Topics returns every topic, sorted by name, read at one etcd revision.
func (s *Store) Topics(ctx context.Context) ([]Topic, error) {
	ts, _, err := s.listTopics(ctx, 0)
	return ts, err
}

// listTopics reads all topics at rev (0 = latest) and returns the revision read.
func (s *Store) listTopics(ctx context.Context, rev int64) ([]Topic, int64, error) {
	const op = "list topics"
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	opts := []clientv3.OpOption{clientv3.WithPrefix()}
	if rev > 0 {
		opts = append(opts, clientv3.WithRev(rev))
	}
	resp, err := s.cli.Get(ctx, s.keys.topics(), opts...)
	if err != nil {
		return nil, 0, s.classify(op, ctx, err)
	}
	byName := map[string]*Topic{}
	type part struct {
		name string
		p    int32
		kv   *mvccpb.KeyValue
	}
	var parts []part
	for _, kv := range resp.Kvs {
		name, p, isPart, ok := s.keys.parseTopicsKey(string(kv.Key))
		switch {
		case !ok:
		case isPart:
			parts = append(parts, part{name, p, kv})
		default:
			t, err := decodeTopic(name, kv)
			if err != nil {
				return nil, 0, fmt.Errorf("%s: %w", op, err)
			}
			byName[name] = &t
		}
	}
	for _, pt := range parts {
		if t := byName[pt.name]; t != nil {
			if err := applyPartition(t, pt.p, pt.kv); err != nil {
				return nil, 0, fmt.Errorf("%s: %w", op, err)
			}
		}
	}
	out := make([]Topic, 0, len(byName))
	for _, t := range byName {
		out = append(out, *t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, resp.Header.Revision, nil
}

// getRecord reads the topic record alone (initial partition states).
func (s *Store) getRecord(ctx context.Context, op, name string) (Topic, error) {
	if err := validateName(name); err != nil {
		return Topic{}, fmt.Errorf("%s: %w", op, err)
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, s.keys.topic(name))
	if err != nil {
		return Topic{}, s.classify(op, ctx, err)
	}
	if len(resp.Kvs) == 0 {
		return Topic{}, fmt.Errorf("%s: %w", op, ErrTopicNotFound)
	}
	t, err := decodeTopic(name, resp.Kvs[0])
	if err != nil {
		return Topic{}, fmt.Errorf("%s: %w", op, err)
	}
	return t, nil
}

// casRecord replaces the topic record if its mod revision is still expected.
func (s *Store) casRecord(ctx context.Context, op string, t Topic, expected int64) error {
	val, err := encodeTopic(t)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	key := s.keys.topic(t.Name)
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", expected)).
		Then(clientv3.OpPut(key, string(val))).
		Else(clientv3.OpGet(key, clientv3.WithKeysOnly())).
		Commit()
	if err != nil {
		return s.classify(op, ctx, err)
	}
	if !resp.Succeeded {
		if len(resp.Responses[0].GetResponseRange().Kvs) == 0 {
			return fmt.Errorf("%s: %w", op, ErrTopicNotFound)
		}
		return fmt.Errorf("%s: %w: topic revision changed since %d", op, ErrConflict, expected)
	}
	return nil
}

// SetTopicConfigs replaces the topic's whole config map if the topic record's
// revision still equals expectedRevision (ErrConflict otherwise,
// ErrTopicNotFound if the topic is gone).
func (s *Store) SetTopicConfigs(ctx context.Context, name string, configs map[string]string, expectedRevision int64) error {
	op := "set configs of topic " + name
	t, err := s.getRecord(ctx, op, name)
	if err != nil {
		return err
	}
	if t.Revision != expectedRevision {
		return fmt.Errorf("%s: %w: topic revision is %d, not %d", op, ErrConflict, t.Revision, expectedRevision)
	}
	t.Configs = maps.Clone(configs)
	return s.casRecord(ctx, op, t, expectedRevision)
}

// AddPartitions appends partitions to the topic if the topic record's revision
// still equals expectedRevision (ErrConflict otherwise). Their numbers must
// continue densely from the current count (ErrInvalid otherwise).
func (s *Store) AddPartitions(ctx context.Context, name string, parts []PartitionState, expectedRevision int64) error {
	op := "add partitions to topic " + name
	if len(parts) == 0 {
		return fmt.Errorf("%s: %w: no partitions", op, ErrInvalid)
	}
	t, err := s.getRecord(ctx, op, name)
	if err != nil {
		return err
	}
	if t.Revision != expectedRevision {
		return fmt.Errorf("%s: %w: topic revision is %d, not %d", op, ErrConflict, t.Revision, expectedRevision)
	}
	for i, p := range parts {
		if err := validatePartition(p, int32(len(t.Partitions)+i)); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
	}
	t.Partitions = append(t.Partitions, parts...)
	return s.casRecord(ctx, op, t, expectedRevision)
}

// UpdatePartition replaces one partition's state only if its stored
// PartitionEpoch equals expectedPartitionEpoch and p.PartitionEpoch is
// expectedPartitionEpoch+1; ErrConflict otherwise. The new state is written
// to the partition's own key, in a transaction that also checks the topic was
// not deleted and re-created meanwhile. Concurrent changes to other partitions
// or to configs never make it fail.
func (s *Store) UpdatePartition(ctx context.Context, topic string, p PartitionState, expectedPartitionEpoch int32) error {
	return s.updatePartition(ctx, topic, nil, p, expectedPartitionEpoch)
}

// UpdatePartitionFenced is UpdatePartition that also requires the topic to
// still have ID topicID: a caller that read a topic which was then deleted and
// re-created under the same name gets ErrTopicNotFound rather than writing
// into the new topic (whose epochs restart at 0).
func (s *Store) UpdatePartitionFenced(ctx context.Context, topic string, topicID [16]byte, p PartitionState, expectedPartitionEpoch int32) error {
	return s.updatePartition(ctx, topic, &topicID, p, expectedPartitionEpoch)
}

// UpdatePartitionAsController is UpdatePartitionFenced for the controller:
// the write also requires the controller key to be the one of term, so a
// deposed controller (its lease lapsed while it was paused or cut off, and
// another broker was elected) is refused with ErrNotController instead of
// acting on its stale view of the cluster (DESIGN.md invariant 6).
func (s *Store) UpdatePartitionAsController(ctx context.Context, term ControllerTerm, topic string, topicID [16]byte, p PartitionState, expectedPartitionEpoch int32) error {
	return s.updatePartitionGuarded(ctx, topic, &topicID, p, expectedPartitionEpoch, &term)
}

// ErrNotController: a controller write was refused because the writer's
// controller term is over.
var ErrNotController = errors.New("coordinator: fenced: no longer the controller")

func (s *Store) updatePartition(ctx context.Context, topic string, topicID *[16]byte, p PartitionState, expectedPartitionEpoch int32) error {
	return s.updatePartitionGuarded(ctx, topic, topicID, p, expectedPartitionEpoch, nil)
}

func (s *Store) updatePartitionGuarded(ctx context.Context, topic string, topicID *[16]byte, p PartitionState, expectedPartitionEpoch int32, term *ControllerTerm) error {
	op := fmt.Sprintf("update partition %s-%d", topic, p.Partition)
	if p.PartitionEpoch != expectedPartitionEpoch+1 {
		return fmt.Errorf("%s: %w: new partition epoch %d is not %d+1", op, ErrConflict, p.PartitionEpoch, expectedPartitionEpoch)
	}
	if err := validatePartition(p, p.Partition); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	val, err := json.Marshal(toPartRecord(p))
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	tkey, pkey := s.keys.topic(topic), s.keys.partition(topic, p.Partition)
	for range updateAttempts {
		cur, id, createRev, pmod, err := s.readPartition(ctx, op, topic, p.Partition)
		if err != nil {
			return err
		}
		if topicID != nil && id != *topicID {
			return fmt.Errorf("%s: %w: topic id is %s, not %s", op, ErrTopicNotFound, uuid.UUID(id), uuid.UUID(*topicID))
		}
		if cur.PartitionEpoch != expectedPartitionEpoch {
			return fmt.Errorf("%s: %w: partition epoch is %d, not %d", op, ErrConflict, cur.PartitionEpoch, expectedPartitionEpoch)
		}
		pcmp := clientv3.Compare(clientv3.CreateRevision(pkey), "=", 0)
		if pmod != 0 {
			pcmp = clientv3.Compare(clientv3.ModRevision(pkey), "=", pmod)
		}
		cmps := []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(tkey), "=", createRev), pcmp}
		var orElse []clientv3.Op
		if term != nil {
			ckey := s.keys.controller()
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(ckey), "=", term.Revision))
			orElse = append(orElse, clientv3.OpGet(ckey))
		}
		tctx, cancel := s.opCtx(ctx)
		resp, err := s.cli.Txn(tctx).If(cmps...).Then(clientv3.OpPut(pkey, string(val))).Else(orElse...).Commit()
		cancel()
		if err != nil {
			return s.classify(op, tctx, err)
		}
		if resp.Succeeded {
			return nil
		}
		if term != nil {
			kvs := resp.Responses[0].GetResponseRange().Kvs
			if len(kvs) == 0 || kvs[0].CreateRevision != term.Revision {
				return fmt.Errorf("%s: %w (term of revision %d)", op, ErrNotController, term.Revision)
			}
		}
		// Lost to a concurrent write: re-read and decide again.
	}
	return fmt.Errorf("%s: %w: still contended after %d attempts", op, ErrConflict, updateAttempts)
}

// readPartition returns one partition's current state, the topic ID, the
// topic record's create revision and the partition key's mod revision (0 if the state is
// still the record's initial one).
func (s *Store) readPartition(ctx context.Context, op, topic string, p int32) (PartitionState, [16]byte, int64, int64, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	resp, err := s.cli.Txn(ctx).Then(
		clientv3.OpGet(s.keys.topic(topic)),
		clientv3.OpGet(s.keys.partition(topic, p)),
	).Commit()
	if err != nil {
		return PartitionState{}, [16]byte{}, 0, 0, s.classify(op, ctx, err)
	}
	rec := resp.Responses[0].GetResponseRange().Kvs
	if len(rec) == 0 {
		return PartitionState{}, [16]byte{}, 0, 0, fmt.Errorf("%s: %w", op, ErrTopicNotFound)
	}
	t, err := decodeTopic(topic, rec[0])
	if err != nil {
		return PartitionState{}, [16]byte{}, 0, 0, fmt.Errorf("%s: %w", op, err)
	}
	if p < 0 || int(p) >= len(t.Partitions) {
		return PartitionState{}, [16]byte{}, 0, 0, fmt.Errorf("%s: %w: topic has %d partitions", op, ErrPartitionNotFound, len(t.Partitions))
	}
	var pmod int64
	if kvs := resp.Responses[1].GetResponseRange().Kvs; len(kvs) > 0 {
		if err := applyPartition(&t, p, kvs[0]); err != nil {
			return PartitionState{}, [16]byte{}, 0, 0, fmt.Errorf("%s: %w", op, err)
		}
		pmod = kvs[0].ModRevision
	}
	return t.Partitions[p], t.ID, rec[0].CreateRevision, pmod, nil
}
