package coordinator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stratabroker/strata/internal/etcdtest"
)

// writerFixture opens a Store registered as broker 1 with an OffsetWriter
// and acquires groups g0…g<n-1>.
func writerFixture(t *testing.T, n int) (*OffsetWriter, []GroupOwner) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	s, err := Open(ctx, Config{Endpoints: etcdtest.Start(t), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if err := s.RegisterBroker(ctx, BrokerInfo{ID: 1, Host: "127.0.0.1", Port: 9001}); err != nil {
		t.Fatal(err)
	}
	w := NewOffsetWriter(s)
	owns := make([]GroupOwner, n)
	for i := range owns {
		if owns[i], err = w.AcquireGroup(ctx, fmt.Sprintf("g%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	return w, owns
}

// commitReq builds the queued call CommitOffsets would make.
func commitReq(t *testing.T, group string, own GroupOwner, offs []CommittedOffset) *offsetReq {
	t.Helper()
	which, edit, err := commitEdit("commit", offs)
	if err != nil {
		t.Fatal(err)
	}
	return &offsetReq{ctx: context.Background(), op: "commit " + group, group: group, own: own, which: which, edit: edit, done: make(chan error, 1)}
}

func (w *OffsetWriter) revision(t *testing.T) int64 {
	t.Helper()
	resp, err := w.cli.Get(context.Background(), "revision-probe")
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

// One flush writes every waiting group in one etcd transaction (one
// revision), two calls of one group included, and remembers the buckets, so
// the next flush reads nothing and writes once more.
func TestFlushWritesAllGroupsInOneTransaction(t *testing.T) {
	w, owns := writerFixture(t, 30)
	for round := int64(1); round <= 2; round++ {
		var reqs []*offsetReq
		for i, own := range owns {
			reqs = append(reqs, commitReq(t, fmt.Sprintf("g%d", i), own, []CommittedOffset{{Topic: "t", Partition: 0, Offset: round}}))
		}
		reqs = append(reqs, commitReq(t, "g3", owns[3], []CommittedOffset{{Topic: "t", Partition: 1, Offset: 10 * round}}))
		before := w.revision(t)
		again, lost := w.flush(reqs)
		if len(again) != 0 || lost != 0 {
			t.Fatalf("round %d: %d calls to redo, %d lost races; want none", round, len(again), lost)
		}
		for _, r := range reqs {
			if err := <-r.done; err != nil {
				t.Fatalf("round %d: %s: %v", round, r.op, err)
			}
		}
		if after := w.revision(t); after != before+1 {
			t.Fatalf("round %d: revision %d → %d, want one transaction", round, before, after)
		}
		got, err := w.FetchOffsets(context.Background(), "g3", nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || got[0].Offset != round || got[1].Offset != 10*round {
			t.Fatalf("round %d: g3 offsets %+v", round, got)
		}
	}
}

// A batch holds at most maxTxnOps operations at each level and about
// maxRecordBytes of values; the calls left over are returned to redo, in
// order, and a call too large alone fails with ErrInvalid.
func TestFlushSplitsOversizedBatches(t *testing.T) {
	w, owns := writerFixture(t, 140)
	var reqs []*offsetReq
	for i, own := range owns {
		reqs = append(reqs, commitReq(t, fmt.Sprintf("g%d", i), own, []CommittedOffset{{Topic: "t", Offset: 1}}))
	}
	again, _ := w.flush(reqs)
	// The outer level holds the groups, each nested level 1 + 1 compares.
	if want := len(owns) - (maxTxnOps - 2); len(again) != want {
		t.Fatalf("%d calls left for the next batch, want %d", len(again), want)
	}
	for i, r := range again {
		if want := fmt.Sprintf("g%d", maxTxnOps-2+i); r.group != want {
			t.Fatalf("left call %d is %s, want %s", i, r.group, want)
		}
	}
	if again, _ := w.flush(again); len(again) != 0 {
		t.Fatalf("second flush left %d calls", len(again))
	}
	for _, r := range reqs {
		if err := <-r.done; err != nil {
			t.Fatalf("%s: %v", r.op, err)
		}
	}

	// Values: two groups of ~1 MB each go in two batches; 2 MB alone fails.
	md := strings.Repeat("m", 1000)
	big := func(n int) []CommittedOffset {
		offs := make([]CommittedOffset, n)
		for p := range offs {
			offs[p] = CommittedOffset{Topic: "big", Partition: int32(p), Metadata: &md}
		}
		return offs
	}
	a, b := commitReq(t, "g0", owns[0], big(1000)), commitReq(t, "g1", owns[1], big(1000))
	tooBig := commitReq(t, "g2", owns[2], big(2000))
	again, _ = w.flush([]*offsetReq{a, tooBig, b})
	if len(again) != 1 || again[0] != b {
		t.Fatalf("left %d calls, want the second 1 MB one", len(again))
	}
	if err := <-a.done; err != nil {
		t.Fatal(err)
	}
	if err := <-tooBig.done; !errors.Is(err, ErrInvalid) {
		t.Fatalf("2 MB commit: %v, want ErrInvalid over the limit", err)
	}
	if again, _ := w.flush(again); len(again) != 0 {
		t.Fatalf("second flush left %d calls", len(again))
	}
	if err := <-b.done; err != nil {
		t.Fatal(err)
	}
	for i, n := range []int{1001, 1001, 1} { // t/0 and the big ones
		got, err := w.FetchOffsets(context.Background(), fmt.Sprintf("g%d", i), []string{"big", "t"})
		if err != nil || len(got) != n {
			t.Fatalf("g%d has %d offsets (%v), want %d", i, len(got), err, n)
		}
	}
}
