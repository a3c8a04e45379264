package test

// A tiny Kafka wire client for the requests a client library refuses to send:
// pinned versions, unadvertised versions, unknown keys, broken frames and
// hand-made record batches. Requests are encoded with kmsg, framed as
//
//	+-------------+---------+-------------+----------+-------------------+------------+------+
//	| size int32  | key i16 | version i16 | corr i32 | client id i16+str | [tags u8]  | body |
//	+-------------+---------+-------------+----------+-------------------+------------+------+
//
// and responses are read as size, correlation id, [tags] (flexible versions,
// never for ApiVersions), body.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const (
	rawIOTimeout  = 10 * time.Second
	rawMaxRespLen = 64 << 20
)

// rawConn is one TCP connection to a broker, driven frame by frame.
type rawConn struct {
	t    testing.TB
	c    net.Conn
	corr int32
	f    *kmsg.RequestFormatter
}

// rawDial connects to addr; the connection is closed at test cleanup.
func rawDial(t testing.TB, addr string) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	r := &rawConn{t: t, c: c, f: kmsg.NewRequestFormatter(kmsg.FormatterClientID("strata-rawclient"))}
	t.Cleanup(func() { c.Close() })
	return r
}

func (r *rawConn) Close() { r.c.Close() }

// encode frames req with the next correlation id.
func (r *rawConn) encode(req kmsg.Request) ([]byte, int32) {
	r.corr++
	return r.f.AppendRequest(nil, req, r.corr), r.corr
}

// write sends raw bytes as they are.
func (r *rawConn) write(b []byte) error {
	if err := r.c.SetWriteDeadline(time.Now().Add(rawIOTimeout)); err != nil {
		return err
	}
	_, err := r.c.Write(b)
	return err
}

// send writes one request and returns its correlation id.
func (r *rawConn) send(req kmsg.Request) int32 {
	r.t.Helper()
	b, corr := r.encode(req)
	if err := r.write(b); err != nil {
		r.t.Fatalf("write %s v%d: %v", kmsg.NameForKey(req.Key()), req.GetVersion(), err)
	}
	return corr
}

// readFrame reads one response frame (without its size prefix).
func (r *rawConn) readFrame(timeout time.Duration) ([]byte, error) {
	if err := r.c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return nil, err
	}
	var size [4]byte
	if _, err := io.ReadFull(r.c, size[:]); err != nil {
		return nil, err
	}
	n := int32(binary.BigEndian.Uint32(size[:]))
	if n < 4 || n > rawMaxRespLen {
		return nil, fmt.Errorf("response frame size %d out of range", n)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r.c, buf); err != nil {
		return nil, err
	}
	return buf, nil
}

// recvBody reads one frame and checks its correlation id; it returns what
// follows the correlation id.
func (r *rawConn) recvBody(wantCorr int32) []byte {
	r.t.Helper()
	frame, err := r.readFrame(rawIOTimeout)
	if err != nil {
		r.t.Fatalf("read response corr %d: %v", wantCorr, err)
	}
	if got := int32(binary.BigEndian.Uint32(frame)); got != wantCorr {
		r.t.Fatalf("response correlation id %d, want %d", got, wantCorr)
	}
	return frame[4:]
}

// rawDecode decodes a response body for req answered at version v: it skips
// the header tagged fields of flexible versions (never for ApiVersions).
func rawDecode(req kmsg.Request, v int16, body []byte) (kmsg.Response, error) {
	resp := req.ResponseKind()
	resp.SetVersion(v)
	if resp.IsFlexible() && req.Key() != 18 {
		var err error
		if body, err = rawSkipTags(body); err != nil {
			return nil, err
		}
	}
	if err := resp.ReadFrom(body); err != nil {
		return nil, fmt.Errorf("decode %s v%d response: %w", kmsg.NameForKey(req.Key()), v, err)
	}
	return resp, nil
}

// rawSkipTags skips a tagged-field section.
func rawSkipTags(b []byte) ([]byte, error) {
	n, l := kbin.Uvarint(b)
	if l == 0 {
		return nil, errors.New("bad tag count")
	}
	b = b[l:]
	for i := uint32(0); i < n; i++ {
		_, l = kbin.Uvarint(b)
		if l == 0 {
			return nil, errors.New("bad tag key")
		}
		b = b[l:]
		size, l := kbin.Uvarint(b)
		if l == 0 || int(size) > len(b)-l {
			return nil, errors.New("bad tag size")
		}
		b = b[l+int(size):]
	}
	return b, nil
}

// recv reads the response to req sent with corr.
func (r *rawConn) recv(req kmsg.Request, corr int32) kmsg.Response {
	r.t.Helper()
	resp, err := rawDecode(req, req.GetVersion(), r.recvBody(corr))
	if err != nil {
		r.t.Fatal(err)
	}
	return resp
}

// do sends req and returns its response.
func (r *rawConn) do(req kmsg.Request) kmsg.Response {
	r.t.Helper()
	return r.recv(req, r.send(req))
}

// expectClosed asserts that the broker closes the connection within d
// (EOF or reset), sending nothing before that.
func (r *rawConn) expectClosed(d time.Duration) {
	r.t.Helper()
	frame, err := r.readFrame(d)
	if err == nil {
		r.t.Fatalf("connection still open: got a %d-byte frame", len(frame))
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		r.t.Fatalf("connection not closed within %v", d)
	}
}

// rawReq dials addr, sends req (at the version set on it) and returns the
// typed response.
func rawReq[R kmsg.Response](t testing.TB, addr string, req kmsg.Request) R {
	t.Helper()
	c := rawDial(t, addr)
	defer c.Close()
	resp, ok := c.do(req).(R)
	if !ok {
		t.Fatalf("unexpected response type for %s", kmsg.NameForKey(req.Key()))
	}
	return resp
}

// rawHeaderFrame builds a frame with an arbitrary key and version and a
// non-flexible header (v1) followed by body.
func rawHeaderFrame(key, version int16, corr int32, body []byte) []byte {
	b := make([]byte, 4, 64+len(body))
	b = kbin.AppendInt16(b, key)
	b = kbin.AppendInt16(b, version)
	b = kbin.AppendInt32(b, corr)
	b = kbin.AppendNullableString(b, nil)
	b = append(b, body...)
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	return b
}

// rawRecord is one record of a hand-made batch.
type rawRecord struct {
	Key, Value []byte
	TsDelta    int64
}

// rawBatchSpec describes a hand-made magic-2 record batch. The zero value is
// a plain, non-idempotent, uncompressed batch stamped now.
type rawBatchSpec struct {
	BaseTimestamp int64 // 0 = now
	Attributes    int16
	Magic         int8 // 0 = 2
	// NumRecords overrides the record count field when non-nil.
	NumRecords *int32
	BadCRC     bool
}

// rawBatch encodes a record batch:
//
//	baseOffset i64 | length i32 | leaderEpoch i32 | magic i8 | crc u32 |
//	attributes i16 | lastOffsetDelta i32 | baseTs i64 | maxTs i64 |
//	producerId i64 | producerEpoch i16 | baseSeq i32 | count i32 | records
//
// with the CRC32C over attributes..end.
func rawBatch(spec rawBatchSpec, recs ...rawRecord) []byte {
	base := spec.BaseTimestamp
	if base == 0 {
		base = time.Now().UnixMilli()
	}
	magic := spec.Magic
	if magic == 0 {
		magic = 2
	}
	var records []byte
	maxTs := base
	for i, rec := range recs {
		var body []byte
		body = kbin.AppendInt8(body, 0)
		body = kbin.AppendVarlong(body, rec.TsDelta)
		body = kbin.AppendVarint(body, int32(i))
		body = kbin.AppendVarintBytes(body, rec.Key)
		body = kbin.AppendVarintBytes(body, rec.Value)
		body = kbin.AppendVarint(body, 0) // headers
		records = kbin.AppendVarint(records, int32(len(body)))
		records = append(records, body...)
		if base+rec.TsDelta > maxTs {
			maxTs = base + rec.TsDelta
		}
	}
	count := int32(len(recs))
	if spec.NumRecords != nil {
		count = *spec.NumRecords
	}
	b := make([]byte, 0, 61+len(records))
	b = kbin.AppendInt64(b, 0)
	b = kbin.AppendInt32(b, 0) // length, below
	b = kbin.AppendInt32(b, -1)
	b = kbin.AppendInt8(b, magic)
	b = kbin.AppendUint32(b, 0) // crc, below
	b = kbin.AppendInt16(b, spec.Attributes)
	b = kbin.AppendInt32(b, int32(len(recs))-1)
	b = kbin.AppendInt64(b, base)
	b = kbin.AppendInt64(b, maxTs)
	b = kbin.AppendInt64(b, -1)
	b = kbin.AppendInt16(b, -1)
	b = kbin.AppendInt32(b, -1)
	b = kbin.AppendInt32(b, count)
	b = append(b, records...)
	binary.BigEndian.PutUint32(b[8:], uint32(len(b)-12))
	crc := crc32.Checksum(b[21:], crc32.MakeTable(crc32.Castagnoli))
	if spec.BadCRC {
		crc ^= 0xdeadbeef
	}
	binary.BigEndian.PutUint32(b[17:], crc)
	return b
}

// rawValues is a convenience: one record per value, no key.
func rawValues(values ...string) []rawRecord {
	out := make([]rawRecord, len(values))
	for i, v := range values {
		out[i] = rawRecord{Value: []byte(v)}
	}
	return out
}

// rawProduceReq builds a one-partition produce request.
func rawProduceReq(version int16, acks int16, topic string, partition int32, batch []byte) *kmsg.ProduceRequest {
	req := kmsg.NewPtrProduceRequest()
	req.Version = version
	req.Acks = acks
	req.TimeoutMillis = 10000
	tp := kmsg.NewProduceRequestTopic()
	tp.Topic = topic
	p := kmsg.NewProduceRequestTopicPartition()
	p.Partition = partition
	p.Records = batch
	tp.Partitions = append(tp.Partitions, p)
	req.Topics = append(req.Topics, tp)
	return req
}

// rawProducePartition returns the only partition of a produce response.
func rawProducePartition(t testing.TB, resp *kmsg.ProduceResponse) kmsg.ProduceResponseTopicPartition {
	t.Helper()
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		t.Fatalf("produce response has %d topics, want 1 topic with 1 partition: %+v", len(resp.Topics), resp.Topics)
	}
	return resp.Topics[0].Partitions[0]
}

// rawFetchReq builds a one-partition fetch request.
func rawFetchReq(version int16, topic string, partition int32, offset int64, maxWaitMs, minBytes int32) *kmsg.FetchRequest {
	req := kmsg.NewPtrFetchRequest()
	req.Version = version
	req.MaxWaitMillis = maxWaitMs
	req.MinBytes = minBytes
	req.MaxBytes = 50 << 20
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = topic
	fp := kmsg.NewFetchRequestTopicPartition()
	fp.Partition = partition
	fp.FetchOffset = offset
	fp.PartitionMaxBytes = 10 << 20
	ft.Partitions = append(ft.Partitions, fp)
	req.Topics = append(req.Topics, ft)
	return req
}

// rawFetchPartition returns the only partition of a fetch response.
func rawFetchPartition(t testing.TB, resp *kmsg.FetchResponse) kmsg.FetchResponseTopicPartition {
	t.Helper()
	if resp.ErrorCode != 0 {
		t.Fatalf("fetch top-level error %d", resp.ErrorCode)
	}
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		t.Fatalf("fetch response has %d topics, want 1 topic with 1 partition", len(resp.Topics))
	}
	return resp.Topics[0].Partitions[0]
}

// rawFetched is one record read back from a fetch response.
type rawFetched struct {
	Offset    int64
	Timestamp int64
	Key       []byte
	Value     []byte
}

// rawParseBatches decodes the complete uncompressed magic-2 batches in b and
// returns their records and the number of complete batches. A trailing
// partial batch (allowed by the protocol) is ignored.
func rawParseBatches(b []byte) ([]rawFetched, int, error) {
	var out []rawFetched
	nb := 0
	for len(b) >= 12 {
		length := int32(binary.BigEndian.Uint32(b[8:]))
		if length < 49 {
			return out, nb, fmt.Errorf("batch length %d too small", length)
		}
		if int(length)+12 > len(b) {
			break // partial trailing batch
		}
		var batch kmsg.RecordBatch
		if err := batch.ReadFrom(b[:12+length]); err != nil {
			return out, nb, fmt.Errorf("batch: %w", err)
		}
		b = b[12+length:]
		nb++
		if batch.Magic != 2 {
			return out, nb, fmt.Errorf("batch magic %d", batch.Magic)
		}
		if batch.Attributes&0x07 != 0 {
			return out, nb, fmt.Errorf("compressed batch (attributes %#x) not expected", batch.Attributes)
		}
		if batch.Attributes&0x20 != 0 {
			continue // control batch
		}
		recs := batch.Records
		for i := int32(0); i < batch.NumRecords; i++ {
			l, n := kbin.Varint(recs)
			if n == 0 || l < 0 || int(l) > len(recs)-n {
				return out, nb, fmt.Errorf("record %d: bad length", i)
			}
			var rec kmsg.Record
			if err := rec.ReadFrom(recs[:n+int(l)]); err != nil {
				return out, nb, fmt.Errorf("record %d: %w", i, err)
			}
			recs = recs[n+int(l):]
			out = append(out, rawFetched{
				Offset:    batch.FirstOffset + int64(rec.OffsetDelta),
				Timestamp: batch.FirstTimestamp + rec.TimestampDelta64,
				Key:       rec.Key,
				Value:     rec.Value,
			})
		}
	}
	return out, nb, nil
}

// rawRSSBytes reads VmRSS of process pid from /proc.
func rawRSSBytes(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("VmRSS %q: %w", line, err)
			}
			return kb << 10, nil
		}
	}
	return 0, errors.New("no VmRSS line")
}

// rawProduceOnce produces one value (Produce v11, acks=all) on a fresh
// connection. It reports errors instead of failing a test, for use from
// other goroutines.
func rawProduceOnce(addr, topic string, partition int32, value string) (int64, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	req := rawProduceReq(11, -1, topic, partition, rawBatch(rawBatchSpec{}, rawValues(value)...))
	if err := c.SetWriteDeadline(time.Now().Add(rawIOTimeout)); err != nil {
		return 0, err
	}
	if _, err := c.Write(kmsg.NewRequestFormatter().AppendRequest(nil, req, 1)); err != nil {
		return 0, err
	}
	frame, err := (&rawConn{c: c}).readFrame(rawIOTimeout)
	if err != nil {
		return 0, err
	}
	if corr := int32(binary.BigEndian.Uint32(frame)); corr != 1 {
		return 0, fmt.Errorf("correlation id %d, want 1", corr)
	}
	resp, err := rawDecode(req, req.Version, frame[4:])
	if err != nil {
		return 0, err
	}
	pr := resp.(*kmsg.ProduceResponse)
	if len(pr.Topics) != 1 || len(pr.Topics[0].Partitions) != 1 {
		return 0, errors.New("malformed produce response")
	}
	if code := pr.Topics[0].Partitions[0].ErrorCode; code != 0 {
		return 0, fmt.Errorf("produce: error code %d", code)
	}
	return pr.Topics[0].Partitions[0].BaseOffset, nil
}

// rawCreateTopicOnce creates a topic (CreateTopics v7) on a fresh
// connection, reporting errors instead of failing a test.
func rawCreateTopicOnce(addr, name string, partitions int32) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	req := apiCreateTopicsReq(7, false, name, partitions, 1, nil)
	if err := c.SetWriteDeadline(time.Now().Add(rawIOTimeout)); err != nil {
		return err
	}
	if _, err := c.Write(kmsg.NewRequestFormatter().AppendRequest(nil, req, 1)); err != nil {
		return err
	}
	frame, err := (&rawConn{c: c}).readFrame(rawIOTimeout)
	if err != nil {
		return err
	}
	resp, err := rawDecode(req, req.Version, frame[4:])
	if err != nil {
		return err
	}
	ct := resp.(*kmsg.CreateTopicsResponse)
	if len(ct.Topics) != 1 {
		return errors.New("malformed create topics response")
	}
	if code := ct.Topics[0].ErrorCode; code != 0 {
		return fmt.Errorf("create topic %s: error code %d", name, code)
	}
	return nil
}
