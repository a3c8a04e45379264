package broker

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/stratabroker/strata/kafkaproto"
)

// TestFetchResponseBuffersMatchKmsg checks our zero-copy Fetch encoder
// against kmsg's own encoding, byte for byte, for every version we serve,
// with partitions' records whole and split into parts (fetchResponse.more),
// and checks that Flatten gives the same bytes.
func TestFetchResponseBuffersMatchKmsg(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for v := int16(4); v <= 12; v++ {
		for trial := 0; trial < 20; trial++ {
			r := kmsg.NewPtrFetchResponse()
			r.Version = v
			r.ThrottleMillis = rng.Int32N(100)
			r.ErrorCode = int16(rng.IntN(3))
			r.SessionID = rng.Int32()
			for ti := 0; ti < rng.IntN(4); ti++ {
				tp := kmsg.NewFetchResponseTopic()
				tp.Topic = string(bytes.Repeat([]byte{'a' + byte(ti)}, 1+rng.IntN(300)))
				for pi := 0; pi < rng.IntN(5); pi++ {
					p := kmsg.NewFetchResponseTopicPartition()
					p.Partition = int32(pi)
					p.ErrorCode = int16(rng.IntN(2))
					p.HighWatermark, p.LastStableOffset, p.LogStartOffset = rng.Int64(), rng.Int64(), rng.Int64()
					p.PreferredReadReplica = -1
					switch rng.IntN(4) {
					case 0:
						p.RecordBatches = nil
					case 1:
						p.RecordBatches = []byte{}
					default:
						p.RecordBatches = make([]byte, rng.IntN(300))
						for i := range p.RecordBatches {
							p.RecordBatches[i] = byte(rng.Int())
						}
					}
					if rng.IntN(3) == 0 {
						p.AbortedTransactions = []kmsg.FetchResponseTopicPartitionAbortedTransaction{{ProducerID: 7, FirstOffset: 9}}
					}
					tp.Partitions = append(tp.Partitions, p)
				}
				r.Topics = append(r.Topics, tp)
			}
			want := kafkaproto.AppendResponse(nil, 42, r)
			var got []byte
			for _, b := range fetchResponseBuffers(42, r, nil) {
				got = append(got, b...)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("v%d trial %d: encodings differ\n got %x\nwant %x", v, trial, got, want)
			}
			// The same records cut into parts at random points.
			split := &fetchResponse{FetchResponse: r}
			for ti := range r.Topics {
				for pi := range r.Topics[ti].Partitions {
					op := &r.Topics[ti].Partitions[pi]
					rec := op.RecordBatches
					if len(rec) < 2 || rng.IntN(2) == 0 {
						continue
					}
					cuts := []int{0, 1 + rng.IntN(len(rec)-1)}
					if c := 1 + rng.IntN(len(rec)-1); c > cuts[1] {
						cuts = append(cuts, c)
					}
					cuts = append(cuts, len(rec))
					op.RecordBatches = rec[:cuts[1]]
					for i := 1; i+1 < len(cuts); i++ {
						split.addParts(op, [][]byte{rec[cuts[i]:cuts[i+1]]})
					}
				}
			}
			got = got[:0]
			for _, b := range fetchResponseBuffers(42, r, split.more) {
				got = append(got, b...)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("v%d trial %d: encodings of parts differ\n got %x\nwant %x", v, trial, got, want)
			}
			if flat := kafkaproto.AppendResponse(nil, 42, split.Flatten()); !bytes.Equal(flat, want) {
				t.Fatalf("v%d trial %d: flattened parts differ\n got %x\nwant %x", v, trial, flat, want)
			}
		}
	}
}
