package broker

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/stratabroker/strata/kafkaproto"
)

// TestFetchResponseBuffersMatchKmsg checks our zero-copy Fetch encoder
// against kmsg's own encoding, byte for byte, for every version we serve.
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
			for _, b := range fetchResponseBuffers(42, r) {
				got = append(got, b...)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("v%d trial %d: encodings differ\n got %x\nwant %x", v, trial, got, want)
			}
		}
	}
}
