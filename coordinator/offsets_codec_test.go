package coordinator

import (
	"testing"
)

func TestOffsetsBucketRoundTrip(t *testing.T) {
	md, empty := "meta", ""
	in := map[topicPartition]CommittedOffset{}
	for _, o := range []CommittedOffset{
		{Topic: "b", Partition: 0, Offset: -1, LeaderEpoch: -1, CommitTimestamp: 0},
		{Topic: "b", Partition: 1<<31 - 1, Offset: 1<<63 - 1, LeaderEpoch: 1<<31 - 1, Metadata: &md, CommitTimestamp: -5},
		{Topic: "a", Partition: 7, Offset: 3, LeaderEpoch: -1 << 31, Metadata: &empty, CommitTimestamp: 1 << 62},
	} {
		in[topicPartition{o.Topic, o.Partition}] = o
	}
	val := encodeBucket(in)
	out, err := decodeBucket(val)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(in) {
		t.Fatalf("decoded %d offsets, want %d", len(out), len(in))
	}
	for k, w := range in {
		g := out[k]
		if g.Topic != w.Topic || g.Partition != w.Partition || g.Offset != w.Offset || g.LeaderEpoch != w.LeaderEpoch ||
			g.CommitTimestamp != w.CommitTimestamp || (g.Metadata == nil) != (w.Metadata == nil) ||
			(g.Metadata != nil && *g.Metadata != *w.Metadata) {
			t.Fatalf("decoded %+v, want %+v", g, w)
		}
	}
	// Every strict prefix is refused (it cannot end on an entry boundary
	// unless it is one; those decode to a subset).
	for i := 0; i < len(val); i++ {
		if got, err := decodeBucket(val[:i]); err == nil && len(got) >= len(in) {
			t.Fatalf("prefix of %d/%d bytes decoded to %d offsets", i, len(val), len(got))
		}
	}
	if _, err := decodeBucket([]byte{2}); err == nil {
		t.Fatal("unknown version decoded")
	}
}

func FuzzDecodeOffsetsBucket(f *testing.F) {
	md := "x"
	f.Add(encodeBucket(map[topicPartition]CommittedOffset{{"t", 1}: {Topic: "t", Partition: 1, Offset: 9, Metadata: &md}}))
	f.Add([]byte{1, 1, 't', 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := decodeBucket(b)
		if err != nil {
			return
		}
		// What decodes re-encodes to something that decodes the same.
		again, err := decodeBucket(encodeBucket(out))
		if err != nil || len(again) != len(out) {
			t.Fatalf("re-decode: %d offsets, %v; want %d", len(again), err, len(out))
		}
	})
}
