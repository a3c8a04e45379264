package locallog

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/stratabroker/strata/kafkaproto"
)

// logBuffer collects slog output so tests can assert what recovery reported.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// smallConfig rolls often and indexes densely; nothing expires.
func smallConfig() Config {
	c := DefaultConfig()
	c.SegmentBytes = 1024
	c.IndexIntervalBytes = 100
	c.SegmentMs = -1
	c.RetentionMs = -1
	c.RetentionBytes = -1
	return c
}

func openTest(t testing.TB, dir string, cfg Config) (*Log, *logBuffer) {
	t.Helper()
	lb := &logBuffer{}
	l, err := Open(dir, cfg, newLogger(lb))
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l, lb
}

// makeBatch builds a batch of n records whose values are "v<offset>" for
// offsets first.. (as the leader will assign them), with record i at
// timestamp ts+i.
func makeBatch(t testing.TB, first int64, n int, ts int64, codec kafkaproto.Codec) []byte {
	t.Helper()
	recs := make([]kafkaproto.Record, n)
	for i := range recs {
		recs[i] = kafkaproto.Record{OffsetDelta: int32(i), TimestampDelta: int64(i), Value: fmt.Appendf(nil, "v%d", first+int64(i))}
	}
	b, err := kafkaproto.BuildBatch(kafkaproto.BatchHeader{BaseTimestamp: ts, ProducerID: -1, BaseSequence: -1}, recs, codec)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// appendN appends one batch of n records at the log end with timestamps
// from ts and checks the assigned offsets.
func appendN(t testing.TB, l *Log, n int, ts int64, epoch int32) AppendResult {
	t.Helper()
	leo := l.LogEndOffset()
	res, err := l.AppendAsLeader(makeBatch(t, leo, n, ts, kafkaproto.CodecNone), epoch)
	if err != nil {
		t.Fatalf("append at %d: %v", leo, err)
	}
	if res.FirstOffset != leo || res.LastOffset != leo+int64(n)-1 {
		t.Fatalf("append at %d of %d records: got offsets %d..%d", leo, n, res.FirstOffset, res.LastOffset)
	}
	return res
}

type rec struct {
	off int64
	ts  int64
	val string
}

// decodeAll decodes every batch of b.
func decodeAll(t testing.TB, b []byte) []rec {
	t.Helper()
	var out []rec
	for len(b) > 0 {
		batch, rest, err := kafkaproto.NextBatch(b)
		if err != nil {
			t.Fatalf("next batch: %v", err)
		}
		h, err := kafkaproto.ValidateBatch(batch, 0)
		if err != nil {
			t.Fatalf("batch at %d: %v", h.BaseOffset, err)
		}
		_, recs, err := kafkaproto.DecodeRecords(batch)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			ts := h.BaseTimestamp + r.TimestampDelta
			if h.TimestampType() == 1 {
				ts = h.MaxTimestamp
			}
			out = append(out, rec{h.BaseOffset + int64(r.OffsetDelta), ts, string(r.Value)})
		}
		b = rest
	}
	return out
}

// checkContents reads the log from its start with small reads and checks
// that offsets are dense up to the log end and every value is v<offset>.
func checkContents(t testing.TB, l *Log) {
	t.Helper()
	start, end := l.LogStartOffset(), l.LogEndOffset()
	next := start
	for range 100000 {
		if next >= end {
			break
		}
		b, err := l.Read(next, 300, -1, true)
		if err != nil {
			t.Fatalf("read %d: %v", next, err)
		}
		recs := decodeAll(t, b)
		if len(recs) == 0 {
			t.Fatalf("read %d (log end %d) returned nothing", next, end)
		}
		for _, r := range recs {
			if r.off < next {
				continue // earlier records of the first batch
			}
			if r.off != next || r.val != fmt.Sprintf("v%d", r.off) {
				t.Fatalf("record at %d: offset %d value %q", next, r.off, r.val)
			}
			next++
		}
	}
	if next != end {
		t.Fatalf("read up to %d, log end %d", next, end)
	}
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
