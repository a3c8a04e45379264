package broker

import (
	"encoding/binary"
	"net"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/stratabroker/strata/tiering"
)

// fetchResponse is a Fetch answer whose partitions' records may be in
// several buffers (views of cold-read chunks, never copied together): a
// partition's RecordBatches holds the first and more the rest, in order.
// Only fetchResponseBuffers knows of more; Flatten joins the parts for any
// other encoder. holds keep the viewed chunks from reuse: Release them once
// the answer is written (an answer never written only costs the reuse).
type fetchResponse struct {
	*kmsg.FetchResponse
	more  map[*kmsg.FetchResponseTopicPartition][][]byte
	holds []*tiering.Hold
}

// Release lets the chunks viewed by the answer be reused.
func (r *fetchResponse) Release() {
	for _, h := range r.holds {
		h.Release()
	}
	r.holds = nil
}

// addParts records the parts of op's records after its RecordBatches.
func (r *fetchResponse) addParts(op *kmsg.FetchResponseTopicPartition, parts [][]byte) {
	if len(parts) == 0 {
		return
	}
	if r.more == nil {
		r.more = map[*kmsg.FetchResponseTopicPartition][][]byte{}
	}
	r.more[op] = append(r.more[op], parts...)
}

// Flatten copies every partition's records into its own RecordBatches,
// releases the holds and returns the plain response.
func (r *fetchResponse) Flatten() *kmsg.FetchResponse {
	for _, t := range r.Topics {
		for i := range t.Partitions {
			op := &t.Partitions[i]
			if len(op.RecordBatches) == 0 && len(r.more[op]) == 0 {
				continue // nothing viewed; null stays null
			}
			b := append([]byte{}, op.RecordBatches...)
			for _, p := range r.more[op] {
				b = append(b, p...)
			}
			op.RecordBatches = b
		}
	}
	r.more = nil
	r.Release()
	return r.FetchResponse
}

// fetchResponseBuffers encodes a whole Fetch response frame (size, header,
// body) for versions 4–12 as a list of buffers in which every partition's
// record batches are referenced, not copied: a hot consumer's bytes go from
// the page cache to the socket with one copy (pread) and a writev. The
// encoding is byte-for-byte what kmsg's AppendTo produces (tested).
//
//	v4–v11: size i32 | corr i32 | throttle i32 | [v7+ error i16, session i32] |
//	        topics i32-array { name i16-string | partitions i32-array {
//	          partition i32 | error i16 | hw i64 | lso i64 | [v5+ log start i64] |
//	          aborted nullable i32-array { producer i64 | first i64 } |
//	          [v11+ preferred replica i32] | records nullable i32-bytes } }
//	v12:    flexible: compact arrays/strings/bytes (uvarint n+1), a tag
//	        section after the header and after every struct (always empty).
func fetchResponseBuffers(corr int32, r *kmsg.FetchResponse, more map[*kmsg.FetchResponseTopicPartition][][]byte) net.Buffers {
	v := r.Version
	flex := v >= 12
	meta := make([]byte, 0, 256)
	type cut struct {
		at  int // position in meta where rec goes
		rec []byte
	}
	var cuts []cut
	meta = binary.BigEndian.AppendUint32(meta, 0) // size, filled in below
	meta = binary.BigEndian.AppendUint32(meta, uint32(corr))
	if flex {
		meta = append(meta, 0) // response header v1 tags
	}
	arrayLen := func(n int) {
		if flex {
			meta = binary.AppendUvarint(meta, uint64(n+1))
		} else {
			meta = binary.BigEndian.AppendUint32(meta, uint32(n))
		}
	}
	i16 := func(x int16) { meta = binary.BigEndian.AppendUint16(meta, uint16(x)) }
	i32 := func(x int32) { meta = binary.BigEndian.AppendUint32(meta, uint32(x)) }
	i64 := func(x int64) { meta = binary.BigEndian.AppendUint64(meta, uint64(x)) }
	tags := func() {
		if flex {
			meta = append(meta, 0)
		}
	}
	i32(r.ThrottleMillis)
	if v >= 7 {
		i16(r.ErrorCode)
		i32(r.SessionID)
	}
	arrayLen(len(r.Topics))
	for _, t := range r.Topics {
		if flex {
			meta = binary.AppendUvarint(meta, uint64(len(t.Topic)+1))
		} else {
			i16(int16(len(t.Topic)))
		}
		meta = append(meta, t.Topic...)
		arrayLen(len(t.Partitions))
		for i := range t.Partitions {
			p := &t.Partitions[i]
			extra := more[p]
			recLen := len(p.RecordBatches)
			for _, b := range extra {
				recLen += len(b)
			}
			i32(p.Partition)
			i16(p.ErrorCode)
			i64(p.HighWatermark)
			i64(p.LastStableOffset)
			if v >= 5 {
				i64(p.LogStartOffset)
			}
			if p.AbortedTransactions == nil {
				if flex {
					meta = append(meta, 0)
				} else {
					i32(-1)
				}
			} else {
				arrayLen(len(p.AbortedTransactions))
				for _, a := range p.AbortedTransactions {
					i64(a.ProducerID)
					i64(a.FirstOffset)
					tags()
				}
			}
			if v >= 11 {
				i32(p.PreferredReadReplica)
			}
			switch {
			case p.RecordBatches == nil && flex:
				meta = append(meta, 0)
			case p.RecordBatches == nil:
				i32(-1)
			case flex:
				meta = binary.AppendUvarint(meta, uint64(recLen+1))
			default:
				i32(int32(recLen))
			}
			for _, b := range append([][]byte{p.RecordBatches}, extra...) {
				if len(b) > 0 {
					cuts = append(cuts, cut{at: len(meta), rec: b})
				}
			}
			tags() // partition tags: diverging epoch, current leader, snapshot id are never sent
		}
		tags()
	}
	tags()

	size := len(meta) - 4
	for _, c := range cuts {
		size += len(c.rec)
	}
	binary.BigEndian.PutUint32(meta[0:4], uint32(size))
	bufs := make(net.Buffers, 0, 2*len(cuts)+1)
	prev := 0
	for _, c := range cuts {
		if c.at > prev {
			bufs = append(bufs, meta[prev:c.at])
		}
		bufs = append(bufs, c.rec)
		prev = c.at
	}
	if prev < len(meta) {
		bufs = append(bufs, meta[prev:])
	}
	return bufs
}
