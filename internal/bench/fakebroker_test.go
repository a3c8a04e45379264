package bench

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// fakeBroker is a minimal in-process Kafka broker, just enough to drive
// the load generator and the lean fetcher in tests without a strata
// binary: ApiVersions, Metadata, CreateTopics, Produce (offsets stamped),
// ListOffsets and Fetch (whole batches from the requested offset).
type fakeBroker struct {
	ln   net.Listener
	wg   sync.WaitGroup
	mu   sync.Mutex
	tops map[string]*fakeTopic
}

type fakeTopic struct {
	id    [16]byte
	parts []*fakePart
}

type fakePart struct {
	batches [][]byte // each stamped with its base offset
	bases   []int64
	hw      int64
}

var fakeVersions = map[int16][2]int16{
	0:  {3, 9},  // Produce
	1:  {4, 12}, // Fetch (topic names)
	2:  {1, 7},  // ListOffsets
	3:  {1, 12}, // Metadata
	18: {0, 3},  // ApiVersions
	19: {2, 7},  // CreateTopics
}

func startFakeBroker(t *testing.T) *fakeBroker {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeBroker{ln: ln, tops: map[string]*fakeTopic{}}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				defer c.Close()
				_ = f.serve(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		f.wg.Wait()
	})
	return f
}

func (f *fakeBroker) addr() string { return f.ln.Addr().String() }

func (f *fakeBroker) serve(c net.Conn) error {
	r := bufio.NewReaderSize(c, 1<<20)
	for {
		var sz [4]byte
		if _, err := io.ReadFull(r, sz[:]); err != nil {
			return err
		}
		n := int32(binary.BigEndian.Uint32(sz[:]))
		if n < 8 || n > 256<<20 {
			return fmt.Errorf("frame size %d", n)
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(r, buf); err != nil {
			return err
		}
		key := int16(binary.BigEndian.Uint16(buf[0:]))
		ver := int16(binary.BigEndian.Uint16(buf[2:]))
		corr := binary.BigEndian.Uint32(buf[4:])
		body := buf[8:]
		if len(body) < 2 {
			return errors.New("short header")
		}
		cidLen := int(int16(binary.BigEndian.Uint16(body)))
		body = body[2:]
		if cidLen > 0 {
			body = body[cidLen:]
		}
		req := kmsg.RequestForKey(key)
		if req == nil {
			return fmt.Errorf("unknown key %d", key)
		}
		req.SetVersion(ver)
		if req.IsFlexible() {
			// Request header tagged fields: count, then (tag, len, data)s.
			cnt, m := binary.Uvarint(body)
			body = body[m:]
			for range cnt {
				_, m := binary.Uvarint(body)
				body = body[m:]
				l, m := binary.Uvarint(body)
				body = body[m+int(l):]
			}
		}
		if err := req.ReadFrom(body); err != nil {
			return fmt.Errorf("read %d v%d: %w", key, ver, err)
		}
		resp := f.handle(req)
		out := binary.BigEndian.AppendUint32(make([]byte, 4, 1<<16), corr)
		if resp.IsFlexible() && key != 18 {
			out = append(out, 0)
		}
		out = resp.AppendTo(out)
		binary.BigEndian.PutUint32(out, uint32(len(out)-4))
		if _, err := c.Write(out); err != nil {
			return err
		}
	}
}

func (f *fakeBroker) create(name string, parts int32) *fakeTopic {
	if t, ok := f.tops[name]; ok {
		return t
	}
	t := &fakeTopic{}
	copy(t.id[:], "fake-"+name)
	for range parts {
		t.parts = append(t.parts, &fakePart{})
	}
	f.tops[name] = t
	return t
}

func (f *fakeBroker) handle(req kmsg.Request) kmsg.Response {
	f.mu.Lock()
	defer f.mu.Unlock()
	host, portS, _ := net.SplitHostPort(f.addr())
	port, _ := strconv.Atoi(portS)
	switch req := req.(type) {
	case *kmsg.ApiVersionsRequest:
		resp := req.ResponseKind().(*kmsg.ApiVersionsResponse)
		for k, v := range fakeVersions {
			ak := kmsg.NewApiVersionsResponseApiKey()
			ak.ApiKey, ak.MinVersion, ak.MaxVersion = k, v[0], v[1]
			resp.ApiKeys = append(resp.ApiKeys, ak)
		}
		return resp
	case *kmsg.MetadataRequest:
		resp := req.ResponseKind().(*kmsg.MetadataResponse)
		b := kmsg.NewMetadataResponseBroker()
		b.NodeID, b.Host, b.Port = 0, host, int32(port)
		resp.Brokers = append(resp.Brokers, b)
		for _, rt := range req.Topics {
			name := *rt.Topic
			mt := kmsg.NewMetadataResponseTopic()
			mt.Topic = kmsg.StringPtr(name)
			t, ok := f.tops[name]
			if !ok && req.AllowAutoTopicCreation {
				t, ok = f.create(name, 6), true
			}
			if !ok {
				mt.ErrorCode = kerr.UnknownTopicOrPartition.Code
			} else {
				mt.TopicID = t.id
				for i := range t.parts {
					mp := kmsg.NewMetadataResponseTopicPartition()
					mp.Partition, mp.Leader, mp.Replicas, mp.ISR = int32(i), 0, []int32{0}, []int32{0}
					mt.Partitions = append(mt.Partitions, mp)
				}
			}
			resp.Topics = append(resp.Topics, mt)
		}
		return resp
	case *kmsg.CreateTopicsRequest:
		resp := req.ResponseKind().(*kmsg.CreateTopicsResponse)
		for _, rt := range req.Topics {
			ct := kmsg.NewCreateTopicsResponseTopic()
			ct.Topic = rt.Topic
			if _, ok := f.tops[rt.Topic]; ok {
				ct.ErrorCode = kerr.TopicAlreadyExists.Code
			} else {
				f.create(rt.Topic, rt.NumPartitions)
			}
			resp.Topics = append(resp.Topics, ct)
		}
		return resp
	case *kmsg.ProduceRequest:
		resp := req.ResponseKind().(*kmsg.ProduceResponse)
		for _, rt := range req.Topics {
			pt := kmsg.NewProduceResponseTopic()
			pt.Topic = rt.Topic
			t := f.tops[rt.Topic]
			for _, rp := range rt.Partitions {
				pp := kmsg.NewProduceResponseTopicPartition()
				pp.Partition = rp.Partition
				if t == nil || int(rp.Partition) >= len(t.parts) || len(rp.Records) < batchHeaderLen {
					pp.ErrorCode = kerr.UnknownTopicOrPartition.Code
				} else {
					p := t.parts[rp.Partition]
					b := append([]byte(nil), rp.Records...)
					binary.BigEndian.PutUint64(b, uint64(p.hw))
					delta := int64(int32(binary.BigEndian.Uint32(b[23:])))
					pp.BaseOffset = p.hw
					p.batches, p.bases = append(p.batches, b), append(p.bases, p.hw)
					p.hw += delta + 1
				}
				pt.Partitions = append(pt.Partitions, pp)
			}
			resp.Topics = append(resp.Topics, pt)
		}
		return resp
	case *kmsg.ListOffsetsRequest:
		resp := req.ResponseKind().(*kmsg.ListOffsetsResponse)
		for _, rt := range req.Topics {
			lt := kmsg.NewListOffsetsResponseTopic()
			lt.Topic = rt.Topic
			t := f.tops[rt.Topic]
			for _, rp := range rt.Partitions {
				lp := kmsg.NewListOffsetsResponseTopicPartition()
				lp.Partition, lp.Timestamp = rp.Partition, -1
				switch {
				case t == nil || int(rp.Partition) >= len(t.parts):
					lp.ErrorCode = kerr.UnknownTopicOrPartition.Code
				case rp.Timestamp == -2:
					lp.Offset = 0
				default:
					lp.Offset = t.parts[rp.Partition].hw
				}
				lt.Partitions = append(lt.Partitions, lp)
			}
			resp.Topics = append(resp.Topics, lt)
		}
		return resp
	case *kmsg.FetchRequest:
		resp := req.ResponseKind().(*kmsg.FetchResponse)
		budget := req.MaxBytes
		for _, rt := range req.Topics {
			ft := kmsg.NewFetchResponseTopic()
			ft.Topic = rt.Topic
			t := f.tops[rt.Topic]
			for _, rp := range rt.Partitions {
				fp := kmsg.NewFetchResponseTopicPartition()
				fp.Partition = rp.Partition
				if t == nil || int(rp.Partition) >= len(t.parts) {
					fp.ErrorCode = kerr.UnknownTopicOrPartition.Code
				} else {
					p := t.parts[rp.Partition]
					fp.HighWatermark, fp.LastStableOffset = p.hw, p.hw
					var got int32
					for i, base := range p.bases {
						if base < rp.FetchOffset {
							continue
						}
						b := p.batches[i]
						if got > 0 && (got+int32(len(b)) > rp.PartitionMaxBytes || got+int32(len(b)) > budget) {
							break
						}
						fp.RecordBatches = append(fp.RecordBatches, b...)
						got += int32(len(b))
					}
					budget -= got
				}
				ft.Partitions = append(ft.Partitions, fp)
			}
			resp.Topics = append(resp.Topics, ft)
		}
		return resp
	}
	panic(fmt.Sprintf("fake broker: unhandled %T", req))
}
