package broker

import (
	"context"
	"errors"
	"testing"
)

func TestProducerIDBlocksAndBumps(t *testing.T) {
	var calls []int64
	next := int64(5000)
	fail := false
	ids := newProducerIDs(func(_ context.Context, n int64) (int64, error) {
		if fail {
			return 0, errors.New("etcd down")
		}
		calls = append(calls, n)
		first := next
		next += n
		return first, nil
	})
	ctx := context.Background()
	for i := range int64(producerIDBlockSize + 1) {
		id, epoch, err := ids.init(ctx, -1, -1)
		want := 5000 + i
		if err != nil || id != want || epoch != 0 {
			t.Fatalf("id #%d: %d/%d %v, want %d/0", i, id, epoch, err, want)
		}
	}
	if len(calls) != 2 || calls[0] != producerIDBlockSize {
		t.Fatalf("allocations %v, want two blocks of %d", calls, producerIDBlockSize)
	}
	tests := []struct {
		name      string
		pid       int64
		epoch     int16
		wantID    int64
		wantEpoch int16
	}{
		{"bump", 5000, 0, 5000, 1},
		{"bump again", 5000, 1, 5000, 2},
		{"stale epoch gets a new id", 5000, 1, 6001, 0},
		{"unknown id gets a new id", 42, 3, 6002, 0},
	}
	for _, tt := range tests {
		id, epoch, err := ids.init(ctx, tt.pid, tt.epoch)
		if err != nil || id != tt.wantID || epoch != tt.wantEpoch {
			t.Fatalf("%s: %d/%d %v, want %d/%d", tt.name, id, epoch, err, tt.wantID, tt.wantEpoch)
		}
	}
	// An exhausted block with etcd down fails; a bump needs no etcd.
	for range producerIDBlockSize - 3 {
		if _, _, err := ids.init(ctx, -1, -1); err != nil {
			t.Fatal(err)
		}
	}
	fail = true
	if _, _, err := ids.init(ctx, -1, -1); err == nil {
		t.Fatal("allocation without etcd succeeded")
	}
	if id, epoch, err := ids.init(ctx, 5000, 2); err != nil || id != 5000 || epoch != 3 {
		t.Fatalf("bump without etcd: %d/%d %v", id, epoch, err)
	}
}
