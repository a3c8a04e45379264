// Package groups is Strata's consumer-group coordinator for Kafka's classic
// group protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup, DescribeGroups,
// ListGroups, DeleteGroups) and the group offset APIs (OffsetCommit,
// OffsetFetch, OffsetDelete).
//
// One Manager per broker. A group is coordinated by exactly one broker: the
// Manager claims it through Store.AcquireGroup the first time a request for it
// arrives (or FindCoordinator routes it here), keeps the membership in memory
// and writes offsets, and the membership each time the group becomes Stable
// or Empty, to the store, fenced by the claim; a fenced write that loses
// (another broker took the group) drops the group, and so does losing this
// broker's registration. A group taken over after a failover resumes from
// its saved membership and committed offsets: members keep their ids and
// generation (persist.go).
//
// State machine (Kafka's GroupCoordinator): Empty → PreparingRebalance →
// CompletingRebalance → Stable, and Dead for a deleted or dropped group. The
// broker never reads assignments; it reads the consumer protocol metadata only
// to know which topics an active group subscribes to (OffsetDelete).
//
// It never talks to clients directly: the broker's API files decode requests
// and hand the kmsg requests to the Manager, which returns kmsg responses.
//
// # Concurrency
//
// Manager.mu guards the map of owned groups; each group has its own mu
// guarding its state and members. Lock order: Manager.acquireMu →
// Manager.mu; group.mu is never held together with Manager.mu, and no store
// I/O happens under either mu. JoinGroup and SyncGroup wait on a per-member
// channel outside every lock. Time is read from Config.Now; the Manager's
// tick loop (every Config.TickInterval) expires sessions, pending member ids
// and rebalance timeouts, and its retention loop expires offsets of Empty
// groups. Close stops both loops, waits for them and releases every claim.
package groups
