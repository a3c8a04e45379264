package coordinator

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// GroupOwner is the ownership of one consumer group by one broker. Exactly
// one live broker owns a group at a time: the owner key
// <prefix>/groups/<group>/owner holds the broker ID and is attached to that
// broker's registration lease, so it vanishes when the owner dies.
//
// Revision is the etcd create revision of the owner key: the ownership
// epoch. It grows with every new ownership, and every offset write compares
// it, so a broker that lost the group can no longer write its offsets.
type GroupOwner struct {
	BrokerID int32
	Revision int64
}

// Group key builders. Group IDs are arbitrary strings (Kafka allows '/'), so
// they are path-escaped (url.PathEscape: '/' → %2F, '%' → %25) into one key
// segment.
func escapeGroup(group string) string { return url.PathEscape(group) }

func unescapeGroup(seg string) (string, bool) {
	g, err := url.PathUnescape(seg)
	return g, err == nil && g != ""
}

func (k keys) groups() string                 { return k.prefix + "/groups/" }
func (k keys) group(group string) string      { return k.groups() + escapeGroup(group) + "/" }
func (k keys) groupOwner(group string) string { return k.group(group) + "owner" }
func (k keys) groupState(group string) string { return k.group(group) + "state" }
func (k keys) groupOffsets(group string) string {
	return k.group(group) + "offsets/"
}
func (k keys) groupOffsetBucket(group string, bucket int) string {
	return k.groupOffsets(group) + strconv.Itoa(bucket)
}
func (k keys) producerIDs() string { return k.prefix + "/producer-ids/next" }

func validateGroup(op, group string) error {
	if group == "" {
		return fmt.Errorf("%s: %w: empty group id", op, ErrInvalid)
	}
	return nil
}

// liveRegistration returns this Store's broker registration if it is alive:
// ErrInvalid if RegisterBroker never succeeded, ErrUnavailable if its lease
// was lost (re-register first).
func (s *Store) liveRegistration(op string) (*registration, error) {
	s.mu.Lock()
	reg := s.reg
	s.mu.Unlock()
	if reg == nil {
		return nil, fmt.Errorf("%s: %w: no broker registered on this store", op, ErrInvalid)
	}
	select {
	case <-reg.lost:
		return nil, fmt.Errorf("%s: %w: broker %d registration lease lost", op, ErrUnavailable, reg.id)
	default:
	}
	return reg, nil
}

// GroupOwnerOf returns the current owner of group, or ok=false if none.
func (s *Store) GroupOwnerOf(ctx context.Context, group string) (GroupOwner, bool, error) {
	op := fmt.Sprintf("group owner of %q", group)
	if err := validateGroup(op, group); err != nil {
		return GroupOwner{}, false, err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, s.keys.groupOwner(group))
	if err != nil {
		return GroupOwner{}, false, s.classify(op, ctx, err)
	}
	if len(resp.Kvs) == 0 {
		return GroupOwner{}, false, nil
	}
	own, err := decodeOwner(resp.Kvs[0].Value, resp.Kvs[0].CreateRevision)
	if err != nil {
		return GroupOwner{}, false, fmt.Errorf("%s: %w", op, err)
	}
	return own, true, nil
}

func decodeOwner(val []byte, createRev int64) (GroupOwner, error) {
	id, err := strconv.ParseInt(string(val), 10, 32)
	if err != nil {
		return GroupOwner{}, fmt.Errorf("decode owner %q: %w", val, err)
	}
	return GroupOwner{BrokerID: int32(id), Revision: createRev}, nil
}

// AcquireGroup makes this Store's registered broker the owner of group if
// nobody owns it (one transaction guarded by "create revision = 0") and
// returns the new ownership. If this broker already owns it under its
// current lease, the existing ownership is returned. If another broker (or
// an earlier process of this one, whose lease has not expired yet) owns
// it, AcquireGroup returns that owner and an error wrapping ErrConflict.
//
// It requires a live registration: ErrInvalid if RegisterBroker never
// succeeded on this Store, ErrUnavailable if its lease was lost.
func (s *Store) AcquireGroup(ctx context.Context, group string) (GroupOwner, error) {
	op := fmt.Sprintf("acquire group %q", group)
	if err := validateGroup(op, group); err != nil {
		return GroupOwner{}, err
	}
	reg, err := s.liveRegistration(op)
	if err != nil {
		return GroupOwner{}, err
	}
	key := s.keys.groupOwner(group)
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, strconv.FormatInt(int64(reg.id), 10), clientv3.WithLease(reg.lease))).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return GroupOwner{}, fmt.Errorf("%s: %w: broker %d registration lease expired (%w)", op, ErrUnavailable, reg.id, err)
		}
		return GroupOwner{}, s.classify(op, ctx, err)
	}
	if resp.Succeeded {
		// The put is the transaction's only write: the key's create
		// revision is the transaction's revision.
		own := GroupOwner{BrokerID: reg.id, Revision: resp.Header.Revision}
		s.log.Info("acquired group", "group", group, "broker", reg.id, "revision", own.Revision)
		return own, nil
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 {
		// Unreachable: the compare failed, so the key existed at that revision.
		return GroupOwner{}, fmt.Errorf("%s: %w: owner key vanished", op, ErrConflict)
	}
	own, err := decodeOwner(kvs[0].Value, kvs[0].CreateRevision)
	if err != nil {
		return GroupOwner{}, fmt.Errorf("%s: %w", op, err)
	}
	if own.BrokerID == reg.id && clientv3.LeaseID(kvs[0].Lease) == reg.lease {
		return own, nil
	}
	return own, fmt.Errorf("%s: %w: owned by broker %d (revision %d)", op, ErrConflict, own.BrokerID, own.Revision)
}

// ReleaseGroup deletes the owner key if it is still the ownership own (same
// create revision); used on graceful shutdown so another broker can take
// the group at once. If the group is owned at another revision or not at
// all, nothing is deleted and the error wraps ErrConflict.
func (s *Store) ReleaseGroup(ctx context.Context, group string, own GroupOwner) error {
	op := fmt.Sprintf("release group %q (revision %d)", group, own.Revision)
	if err := validateGroup(op, group); err != nil {
		return err
	}
	if own.Revision <= 0 {
		return fmt.Errorf("%s: %w: no ownership revision", op, ErrInvalid)
	}
	key := s.keys.groupOwner(group)
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", own.Revision)).
		Then(clientv3.OpDelete(key)).
		Commit()
	if err != nil {
		return s.classify(op, ctx, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("%s: %w: not owned at that revision", op, ErrConflict)
	}
	s.log.Info("released group", "group", group, "broker", own.BrokerID, "revision", own.Revision)
	return nil
}

// maxGroupStateBytes bounds a saved group state (etcd's default request
// limit is 1.5 MiB).
const maxGroupStateBytes = 1 << 20

// SaveGroupState stores the group's membership state (opaque bytes) if the
// group is still owned at own.Revision (ErrConflict otherwise, and nothing
// is written). A state above 1 MiB is ErrInvalid.
func (s *Store) SaveGroupState(ctx context.Context, group string, own GroupOwner, state []byte) error {
	op := fmt.Sprintf("save state of group %q", group)
	if err := validateOwnership(op, group, own); err != nil {
		return err
	}
	if len(state) > maxGroupStateBytes {
		return fmt.Errorf("%s: %w: %d bytes, at most %d", op, ErrInvalid, len(state), maxGroupStateBytes)
	}
	return s.fencedGroupWrite(ctx, op, group, own, clientv3.OpPut(s.keys.groupState(group), string(state)))
}

// DeleteGroupState deletes the group's saved state (not its offsets) if the
// group is owned at own.Revision (ErrConflict otherwise).
func (s *Store) DeleteGroupState(ctx context.Context, group string, own GroupOwner) error {
	op := fmt.Sprintf("delete state of group %q", group)
	if err := validateOwnership(op, group, own); err != nil {
		return err
	}
	return s.fencedGroupWrite(ctx, op, group, own, clientv3.OpDelete(s.keys.groupState(group)))
}

// fencedGroupWrite applies ops in one transaction if the group is owned at
// own.Revision (its owner key's create revision), else writes nothing and
// answers ErrConflict.
func (s *Store) fencedGroupWrite(ctx context.Context, op, group string, own GroupOwner, ops ...clientv3.Op) error {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(s.keys.groupOwner(group)), "=", own.Revision)).
		Then(ops...).
		Commit()
	if err != nil {
		return s.classify(op, ctx, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("%s: %w: group not owned at revision %d", op, ErrConflict, own.Revision)
	}
	return nil
}

// LoadGroupState returns the group's last saved membership state, nil if
// none.
func (s *Store) LoadGroupState(ctx context.Context, group string) ([]byte, error) {
	op := fmt.Sprintf("load state of group %q", group)
	if err := validateGroup(op, group); err != nil {
		return nil, err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, s.keys.groupState(group))
	if err != nil {
		return nil, s.classify(op, ctx, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	return resp.Kvs[0].Value, nil
}

// Groups lists the IDs of groups that have committed offsets or a saved
// state, sorted.
func (s *Store) Groups(ctx context.Context) ([]string, error) {
	const op = "list groups"
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	prefix := s.keys.groups()
	resp, err := s.cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly(),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, s.classify(op, ctx, err)
	}
	var out []string
	last := ""
	for _, kv := range resp.Kvs {
		rel := strings.TrimPrefix(string(kv.Key), prefix)
		seg, rest, ok := strings.Cut(rel, "/")
		if !ok || !(strings.HasPrefix(rest, "offsets/") || rest == "state") || seg == last {
			continue
		}
		g, ok := unescapeGroup(seg)
		if !ok {
			continue
		}
		last = seg
		out = append(out, g)
	}
	// Keys sort by escaped form; callers expect the IDs themselves sorted.
	slices.Sort(out)
	return out, nil
}
