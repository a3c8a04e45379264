package groups

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// State is a group's state, named as Kafka names it in DescribeGroups and
// ListGroups.
type State string

const (
	Empty               State = "Empty"
	PreparingRebalance  State = "PreparingRebalance"
	CompletingRebalance State = "CompletingRebalance"
	Stable              State = "Stable"
	Dead                State = "Dead"
)

type member struct {
	id               string
	instanceID       *string
	clientID         string
	clientHost       string
	sessionTimeout   time.Duration
	rebalanceTimeout time.Duration
	protocolType     string
	protocols        []kmsg.JoinGroupRequestProtocol
	assignment       []byte
	seq              uint64 // join order; the first is the default leader

	joinCh      chan *kmsg.JoinGroupResponse // non-nil while awaiting a join response
	joinVersion int16
	syncCh      chan *kmsg.SyncGroupResponse // non-nil while awaiting a sync response
	syncVersion int16
	lastSeen    time.Time
}

func (m *member) awaiting() bool { return m.joinCh != nil || m.syncCh != nil }

func (m *member) metadata(protocol string) []byte {
	for _, p := range m.protocols {
		if p.Name == protocol {
			return p.Metadata
		}
	}
	return nil
}

func sameProtocols(a, b []kmsg.JoinGroupRequestProtocol) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || !bytes.Equal(a[i].Metadata, b[i].Metadata) {
			return false
		}
	}
	return true
}

// group is one coordinated group. Every field is guarded by mu.
type group struct {
	id  string
	own Owner
	cfg *Config

	mu           sync.Mutex
	state        State
	stateSince   time.Time
	protocolType string
	protocol     string
	generation   int32
	leader       string
	members      map[string]*member
	pending      map[string]time.Time // member ids handed out with MEMBER_ID_REQUIRED → expiry
	static       map[string]string    // group.instance.id → member id
	seq          uint64
	hadMembers   bool

	// Saving the membership (persist.go): changes counts transitions to
	// Stable or Empty, savedChanges the last one saved; saveMu orders saves.
	changes      uint64
	savedChanges uint64
	saveMu       sync.Mutex

	// rebalance timing (PreparingRebalance)
	rebalanceDeadline time.Time
	delayed           bool // initial rebalance delay of a new group in force
	delayUntil        time.Time
	delayRemaining    time.Duration
	newMemberAdded    bool
}

func newGroup(id string, own Owner, cfg *Config, now time.Time) *group {
	return &group{
		id: id, own: own, cfg: cfg,
		state: Empty, stateSince: now,
		members: make(map[string]*member),
		pending: make(map[string]time.Time),
		static:  make(map[string]string),
	}
}

func (g *group) setState(s State, now time.Time) {
	g.state, g.stateSince = s, now
	if s == Stable || s == Empty {
		g.changes++
	}
}

func newMemberID(prefix string) string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%s-%x-%x-%x-%x-%x", prefix, b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// sortedMembers returns the members in join order.
func (g *group) sortedMembers() []*member {
	ms := make([]*member, 0, len(g.members))
	for _, m := range g.members {
		ms = append(ms, m)
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].seq < ms[j].seq })
	return ms
}

// supports reports whether a member (other than exclude) with these
// protocols could join: same protocol type and at least one protocol every
// other member supports.
func (g *group) supports(exclude, protocolType string, protocols []kmsg.JoinGroupRequestProtocol) bool {
	others := 0
	for id := range g.members {
		if id != exclude {
			others++
		}
	}
	if others == 0 {
		return protocolType != "" && len(protocols) > 0
	}
	if protocolType != g.protocolType {
		return false
	}
	for _, p := range protocols {
		n := 0
		for id, m := range g.members {
			if id != exclude && hasProtocol(m, p.Name) {
				n++
			}
		}
		if n == others {
			return true
		}
	}
	return false
}

func hasProtocol(m *member, name string) bool {
	for _, p := range m.protocols {
		if p.Name == name {
			return true
		}
	}
	return false
}

// selectProtocol is Kafka's: among the protocols every member supports, each
// member votes for the first of its own list; most votes wins, ties go to the
// order of the first member's list.
func (g *group) selectProtocol() string {
	ms := g.sortedMembers()
	if len(ms) == 0 {
		return ""
	}
	var candidates []string
	for _, p := range ms[0].protocols {
		all := true
		for _, m := range ms[1:] {
			if !hasProtocol(m, p.Name) {
				all = false
				break
			}
		}
		if all {
			candidates = append(candidates, p.Name)
		}
	}
	votes := make(map[string]int)
	for _, m := range ms {
		for _, p := range m.protocols {
			if contains(candidates, p.Name) {
				votes[p.Name]++
				break
			}
		}
	}
	best := ""
	for _, c := range candidates {
		if best == "" || votes[c] > votes[best] {
			best = c
		}
	}
	return best
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func (g *group) maxRebalanceTimeout() time.Duration {
	var d time.Duration
	for _, m := range g.members {
		d = max(d, m.rebalanceTimeout)
	}
	return d
}

func (g *group) addMember(m *member, now time.Time) {
	if len(g.members) == 0 {
		g.protocolType = m.protocolType
	}
	g.seq++
	m.seq = g.seq
	m.lastSeen = now
	g.members[m.id] = m
	if m.instanceID != nil {
		g.static[*m.instanceID] = m.id
	}
	g.hadMembers = true
	if g.state == PreparingRebalance && g.delayed {
		g.newMemberAdded = true
	}
}

// removeMember forgets a member, answering its pending join with code.
func (g *group) removeMember(m *member, code int16) {
	if m.joinCh != nil {
		m.joinCh <- g.joinError(m.joinVersion, code, m.id)
		m.joinCh = nil
	}
	if m.syncCh != nil {
		m.syncCh <- syncError(m.syncVersion, code)
		m.syncCh = nil
	}
	delete(g.members, m.id)
	if m.instanceID != nil && g.static[*m.instanceID] == m.id {
		delete(g.static, *m.instanceID)
	}
	if g.leader == m.id {
		g.leader = ""
		if ms := g.sortedMembers(); len(ms) > 0 {
			g.leader = ms[0].id
		}
	}
}

// memberLeft moves the group on after a member left or expired.
func (g *group) memberLeft(now time.Time) {
	switch g.state {
	case Stable, CompletingRebalance:
		g.prepareRebalance(now)
	case PreparingRebalance:
		g.maybeCompleteJoin(now)
	}
}

func (g *group) prepareRebalance(now time.Time) {
	if g.state == CompletingRebalance {
		for _, m := range g.members {
			m.assignment = nil
			if m.syncCh != nil {
				m.syncCh <- syncError(m.syncVersion, kerr.RebalanceInProgress.Code)
				m.syncCh = nil
				m.lastSeen = now
			}
		}
	}
	rt := g.maxRebalanceTimeout()
	g.delayed = false
	if g.state == Empty && g.cfg.InitialRebalanceDelay > 0 {
		g.delayed = true
		d := min(g.cfg.InitialRebalanceDelay, rt)
		g.delayUntil = now.Add(d)
		g.delayRemaining = rt - d
		g.newMemberAdded = false
	}
	g.rebalanceDeadline = now.Add(rt)
	g.setState(PreparingRebalance, now)
	g.maybeCompleteJoin(now)
}

// maybeCompleteJoin completes the join phase when every member has rejoined
// (and no initial delay holds it), or when the rebalance timeout passed.
func (g *group) maybeCompleteJoin(now time.Time) {
	if g.state != PreparingRebalance {
		return
	}
	if g.delayed {
		if now.Before(g.delayUntil) {
			return
		}
		if g.newMemberAdded && g.delayRemaining > 0 {
			d := min(g.cfg.InitialRebalanceDelay, g.delayRemaining)
			g.newMemberAdded = false
			g.delayUntil = now.Add(d)
			g.delayRemaining -= d
			return
		}
		g.completeJoin(now)
		return
	}
	all := len(g.pending) == 0
	for _, m := range g.members {
		if m.joinCh == nil {
			all = false
			break
		}
	}
	if all || !now.Before(g.rebalanceDeadline) {
		g.completeJoin(now)
	}
}

func (g *group) completeJoin(now time.Time) {
	g.delayed = false
	for _, m := range g.sortedMembers() {
		if m.joinCh == nil && m.instanceID == nil {
			g.removeMember(m, kerr.UnknownMemberID.Code)
		}
	}
	g.generation++
	if len(g.members) == 0 {
		g.protocol = ""
		g.leader = ""
		g.setState(Empty, now)
		return
	}
	g.protocol = g.selectProtocol()
	if lm := g.members[g.leader]; lm == nil || lm.joinCh == nil {
		g.leader = ""
		for _, m := range g.sortedMembers() {
			if m.joinCh != nil {
				g.leader = m.id
				break
			}
		}
	}
	g.setState(CompletingRebalance, now)
	for _, m := range g.sortedMembers() {
		if m.joinCh == nil {
			continue
		}
		m.joinCh <- g.joinResponse(m)
		m.joinCh = nil
		m.lastSeen = now
	}
}

// joinResponse is the current generation as seen by m; the leader gets every
// member's metadata for the chosen protocol.
func (g *group) joinResponse(m *member) *kmsg.JoinGroupResponse {
	r := kmsg.NewPtrJoinGroupResponse()
	r.Version = m.joinVersion
	r.Generation = g.generation
	pt, p := g.protocolType, g.protocol
	r.ProtocolType, r.Protocol = &pt, &p
	r.LeaderID = g.leader
	r.MemberID = m.id
	if m.id == g.leader {
		for _, o := range g.sortedMembers() {
			jm := kmsg.NewJoinGroupResponseMember()
			jm.MemberID = o.id
			jm.InstanceID = o.instanceID
			jm.ProtocolMetadata = o.metadata(g.protocol)
			r.Members = append(r.Members, jm)
		}
	}
	return r
}

func (g *group) joinError(version, code int16, memberID string) *kmsg.JoinGroupResponse {
	r := kmsg.NewPtrJoinGroupResponse()
	r.Version = version
	r.ErrorCode = code
	r.Generation = -1
	r.MemberID = memberID
	if version < 7 {
		empty := ""
		r.Protocol = &empty
	}
	return r
}

func syncError(version, code int16) *kmsg.SyncGroupResponse {
	r := kmsg.NewPtrSyncGroupResponse()
	r.Version = version
	r.ErrorCode = code
	return r
}

// tick expires sessions and pending member ids and runs rebalance timers.
func (g *group) tick(now time.Time) {
	for id, exp := range g.pending {
		if !now.Before(exp) {
			delete(g.pending, id)
		}
	}
	for _, m := range g.sortedMembers() {
		if m.awaiting() {
			continue
		}
		if now.Sub(m.lastSeen) >= m.sessionTimeout {
			g.removeMember(m, kerr.UnknownMemberID.Code)
			g.memberLeft(now)
		}
	}
	g.maybeCompleteJoin(now)
}

// drop ends the group on this broker: every waiter gets code.
func (g *group) drop(code int16, now time.Time) {
	for _, m := range g.members {
		if m.joinCh != nil {
			m.joinCh <- g.joinError(m.joinVersion, code, m.id)
			m.joinCh = nil
		}
		if m.syncCh != nil {
			m.syncCh <- syncError(m.syncVersion, code)
			m.syncCh = nil
		}
	}
	g.members = map[string]*member{}
	g.static = map[string]string{}
	g.pending = map[string]time.Time{}
	g.setState(Dead, now)
}
