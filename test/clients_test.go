package test

// End-to-end compatibility: real client libraries (franz-go, kcat /
// librdkafka 2.0.2, sarama, kafka-go) produce to and consume from a real
// strata process, and every record comes back exactly.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kgo"
)

// clientRecord builds the i-th deterministic test record: some keys and
// values are null, sizes vary from empty to 40 KiB, 0–2 headers.
func clientRecord(codec string, i int) *kgo.Record {
	r := &kgo.Record{Partition: int32(i % 4)}
	if i%7 != 0 {
		r.Key = []byte(fmt.Sprintf("key-%s-%06d", codec, i))
	}
	if i%11 != 0 {
		sizes := []int{0, 1, 17, 300, 4096, 40 << 10}
		n := sizes[i%len(sizes)]
		v := make([]byte, n)
		for j := range v {
			v[j] = byte('a' + (i*31+j*7)%26)
		}
		if n > 0 {
			copy(v, fmt.Sprintf("%06d", i))
		}
		r.Value = v
	}
	for h := 0; h < i%3; h++ {
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: fmt.Sprintf("h%d", h), Value: []byte(fmt.Sprintf("hv-%d-%d", i, h))})
	}
	return r
}

func clientSameBytes(a, b []byte) bool {
	return (a == nil) == (b == nil) && bytes.Equal(a, b)
}

func TestClientFranzGoCodecs(t *testing.T) {
	b := clientStartBroker(t)
	const n = 240
	codecs := []struct {
		name string
		id   int8
		opt  kgo.CompressionCodec
	}{
		{"none", 0, kgo.NoCompression()},
		{"gzip", 1, kgo.GzipCompression()},
		{"snappy", 2, kgo.SnappyCompression()},
		{"lz4", 3, kgo.Lz4Compression()},
		{"zstd", 4, kgo.ZstdCompression()},
	}
	for _, c := range codecs {
		t.Run(c.name, func(t *testing.T) {
			topic := "franz-" + c.name
			cl := clientKgo(t, b.Addr,
				kgo.ProducerBatchCompression(c.opt),
				kgo.RecordPartitioner(kgo.ManualPartitioner()),
				kgo.ProducerLinger(5*time.Millisecond),
			)
			clientCreateTopic(t, cl, topic, 4, nil)

			sent := make([]*kgo.Record, n)
			for i := range sent {
				sent[i] = clientRecord(c.name, i)
				sent[i].Topic = topic
			}
			ctx := clientCtx(t, 30*time.Second)
			if err := cl.ProduceSync(ctx, sent...).FirstErr(); err != nil {
				t.Fatalf("produce: %v", err)
			}
			perPart := map[int32][]*kgo.Record{}
			for _, r := range sent {
				perPart[r.Partition] = append(perPart[r.Partition], r)
			}
			ends := map[int32]int64{}
			for p, rs := range perPart {
				for j, r := range rs {
					if r.Offset != int64(j) {
						t.Fatalf("partition %d: record %d acknowledged at offset %d, want %d", p, j, r.Offset, j)
					}
				}
				ends[p] = int64(len(rs))
			}
			if got := clientEndOffsets(t, cl, topic); fmt.Sprint(got) != fmt.Sprint(ends) {
				t.Fatalf("end offsets %v, want %v", got, ends)
			}

			got := clientConsumeAll(t, b.Addr, topic, ends, 30*time.Second)
			for p, want := range perPart {
				rs := got[p]
				if len(rs) != len(want) {
					t.Errorf("partition %d: consumed %d records, want %d", p, len(rs), len(want))
					continue
				}
				for j, r := range rs {
					w := want[j]
					if r.Offset != int64(j) || r.Partition != p {
						t.Errorf("p%d record %d: at %d/%d, want %d/%d", p, j, r.Partition, r.Offset, p, j)
					}
					if !clientSameBytes(r.Key, w.Key) {
						t.Errorf("p%d@%d: key %q (nil=%v), want %q (nil=%v)", p, j, r.Key, r.Key == nil, w.Key, w.Key == nil)
					}
					if !clientSameBytes(r.Value, w.Value) {
						t.Errorf("p%d@%d: value of %d bytes (nil=%v), want %d (nil=%v)", p, j, len(r.Value), r.Value == nil, len(w.Value), w.Value == nil)
					}
					if fmt.Sprint(r.Headers) != fmt.Sprint(w.Headers) {
						t.Errorf("p%d@%d: headers %v, want %v", p, j, r.Headers, w.Headers)
					}
				}
			}

			for p, end := range ends {
				batches, hwm := clientFetchRawBatches(t, cl, topic, p)
				clientCheckBatches(t, fmt.Sprintf("%s/%d", topic, p), batches, end)
				if hwm != end {
					t.Errorf("%s/%d: high watermark %d, want %d", topic, p, hwm, end)
				}
				for _, bt := range batches {
					if bt.Codec() != c.id {
						t.Errorf("%s/%d: batch at %d stored with codec %d, want %d", topic, p, bt.BaseOffset, bt.Codec(), c.id)
					}
				}
			}
		})
	}
}

// clientKcatProblems returns the lines of kcat's stderr that are warnings
// or errors: librdkafka log lines of level 0–4, any line saying a codec is
// not supported (librdkafka says so only at debug level, hence -d msg), and
// kcat's own lines that mention a warning, error or failure.
func clientKcatProblems(stderr string) []string {
	var bad []string
	for _, line := range strings.Split(stderr, "\n") {
		l := strings.ToLower(line)
		isLog := len(line) > 2 && line[0] == '%' && line[1] >= '0' && line[1] <= '7' && line[2] == '|'
		switch {
		case strings.TrimSpace(line) == "":
		case strings.Contains(l, "does not support compression"):
			bad = append(bad, line)
		case isLog && line[1] <= '4':
			bad = append(bad, line)
		case !isLog && (strings.Contains(l, "warn") || strings.Contains(l, "error") || strings.Contains(l, "fail")):
			bad = append(bad, line)
		}
	}
	return bad
}

func TestClientKcat(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		if kcat, err = exec.LookPath("kafkacat"); err != nil {
			t.Skip("kcat not on PATH (make test installs Debian's kcat; CI must not skip this)")
		}
	}
	b := clientStartBroker(t)
	admin := clientKgo(t, b.Addr)
	codecs := []struct {
		name string
		id   int8
	}{{"gzip", 1}, {"snappy", 2}, {"lz4", 3}, {"zstd", 4}}

	for _, c := range codecs {
		t.Run(c.name, func(t *testing.T) {
			topic := "kcat-" + c.name
			clientCreateTopic(t, admin, topic, 1, nil)
			var in bytes.Buffer
			const lines = 2000
			for i := 0; i < lines; i++ {
				// Long repetitive lines so that even a one-record batch
				// compresses smaller: librdkafka sends a batch uncompressed
				// when compression does not pay.
				fmt.Fprintf(&in, "line %05d codec %s %s\n", i, c.name, strings.Repeat("the quick brown fox ", 10+i%10))
			}
			ctx := clientCtx(t, 40*time.Second)

			prod := exec.CommandContext(ctx, kcat, "-P", "-b", b.Addr, "-t", topic, "-z", c.name, "-p", "0", "-d", "msg")
			prod.Stdin = bytes.NewReader(in.Bytes())
			var perr bytes.Buffer
			prod.Stderr = &perr
			if err := prod.Run(); err != nil {
				t.Fatalf("kcat -P: %v\nstderr:\n%s", err, perr.String())
			}
			if bad := clientKcatProblems(perr.String()); len(bad) > 0 {
				t.Errorf("kcat -P -z %s stderr has %d warning lines, first:\n%s", c.name, len(bad), strings.Join(bad[:min(3, len(bad))], "\n"))
			}

			// -e exits at the end of the partition; a broker whose Fetch
			// answers librdkafka cannot parse makes kcat retry forever.
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			cons := exec.CommandContext(cctx, kcat, "-C", "-b", b.Addr, "-t", topic, "-o", "beginning", "-e", "-q")
			var out, cerr bytes.Buffer
			cons.Stdout, cons.Stderr = &out, &cerr
			if err := cons.Run(); err != nil {
				t.Errorf("kcat -C -e did not finish: %v (consumed %d of %d bytes; run it with -d fetch,protocol to see why)\nstderr:\n%s", err, out.Len(), in.Len(), cerr.String())
			} else if !bytes.Equal(out.Bytes(), in.Bytes()) {
				t.Errorf("kcat consumed %d bytes, produced %d; first difference at line %d", out.Len(), in.Len(), clientFirstDiffLine(out.Bytes(), in.Bytes()))
			}
			if bad := clientKcatProblems(cerr.String()); len(bad) > 0 {
				t.Errorf("kcat -C stderr has %d warning lines, first:\n%s", len(bad), strings.Join(bad[:min(3, len(bad))], "\n"))
			}

			batches, hwm := clientFetchRawBatches(t, admin, topic, 0)
			if hwm != lines {
				t.Errorf("high watermark %d, want %d", hwm, lines)
			}
			clientCheckBatches(t, topic+"/0", batches, lines)
			wrong := 0
			for _, bt := range batches {
				if bt.Codec() != c.id {
					if wrong < 3 {
						t.Errorf("batch at %d (%d records) stored with codec %d, want %d (%s)", bt.BaseOffset, bt.RecordCount, bt.Codec(), c.id, c.name)
					}
					wrong++
				}
			}
			if wrong > 0 {
				t.Errorf("%d of %d batches not compressed with %s", wrong, len(batches), c.name)
			}
		})
	}
}

func clientFirstDiffLine(a, b []byte) int {
	sa, sb := bufio.NewScanner(bytes.NewReader(a)), bufio.NewScanner(bytes.NewReader(b))
	for n := 1; ; n++ {
		oka, okb := sa.Scan(), sb.Scan()
		if !oka || !okb || sa.Text() != sb.Text() {
			return n
		}
	}
}

func TestClientSarama(t *testing.T) {
	b := clientStartBroker(t)
	const topic, parts, n = "sarama", 3, 300
	clientCreateTopic(t, clientKgo(t, b.Addr), topic, parts, nil)

	cfg := sarama.NewConfig()
	cfg.Version = sarama.V2_8_0_0
	cfg.ClientID = "strata-e2e"
	cfg.Producer.Return.Successes = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Partitioner = sarama.NewManualPartitioner
	cfg.Producer.Compression = sarama.CompressionSnappy
	cfg.Net.DialTimeout = 5 * time.Second
	cfg.Metadata.Retry.Max = 10
	cfg.Metadata.Retry.Backoff = 100 * time.Millisecond
	cfg.Consumer.MaxWaitTime = 200 * time.Millisecond

	prod, err := sarama.NewSyncProducer([]string{b.Addr}, cfg)
	if err != nil {
		t.Fatalf("sarama.NewSyncProducer: %v", err)
	}
	defer prod.Close()
	type sent struct {
		key, value string
		offset     int64
	}
	want := map[int32][]sent{}
	for i := 0; i < n; i++ {
		p := int32(i % parts)
		m := &sarama.ProducerMessage{
			Topic:     topic,
			Partition: p,
			Key:       sarama.StringEncoder(fmt.Sprintf("sk-%d", i)),
			Value:     sarama.ByteEncoder(bytes.Repeat([]byte{byte('A' + i%26)}, 1+i*13%2000)),
			Headers:   []sarama.RecordHeader{{Key: []byte("i"), Value: []byte(fmt.Sprint(i))}},
		}
		gotP, off, err := prod.SendMessage(m)
		if err != nil {
			t.Fatalf("sarama SendMessage %d: %v", i, err)
		}
		if gotP != p || off != int64(len(want[p])) {
			t.Fatalf("sarama SendMessage %d: stored at %d/%d, want %d/%d", i, gotP, off, p, len(want[p]))
		}
		v, _ := m.Value.Encode()
		want[p] = append(want[p], sent{fmt.Sprintf("sk-%d", i), string(v), off})
	}

	cons, err := sarama.NewConsumer([]string{b.Addr}, cfg)
	if err != nil {
		t.Fatalf("sarama.NewConsumer: %v", err)
	}
	defer cons.Close()
	for p := int32(0); p < parts; p++ {
		pc, err := cons.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			t.Fatalf("sarama ConsumePartition %d: %v", p, err)
		}
		timeout := time.NewTimer(20 * time.Second)
		for j, w := range want[p] {
			select {
			case m := <-pc.Messages():
				if m.Offset != w.offset || string(m.Key) != w.key || string(m.Value) != w.value {
					t.Fatalf("sarama p%d #%d: got offset %d key %q value %d bytes; want %d %q %d bytes", p, j, m.Offset, m.Key, len(m.Value), w.offset, w.key, len(w.value))
				}
				if len(m.Headers) != 1 || string(m.Headers[0].Key) != "i" || w.key != "sk-"+string(m.Headers[0].Value) {
					t.Fatalf("sarama p%d #%d: headers %v", p, j, m.Headers)
				}
			case err := <-pc.Errors():
				t.Fatalf("sarama p%d: consume error: %v", p, err)
			case <-timeout.C:
				t.Fatalf("sarama p%d: timed out after %d of %d records", p, j, len(want[p]))
			}
		}
		timeout.Stop()
		if hwm := pc.HighWaterMarkOffset(); hwm != int64(len(want[p])) {
			t.Errorf("sarama p%d: high watermark %d, want %d", p, hwm, len(want[p]))
		}
		pc.Close()
	}
}

func TestClientKafkaGo(t *testing.T) {
	b := clientStartBroker(t)
	const topic, n = "kafkago", 500
	clientCreateTopic(t, clientKgo(t, b.Addr), topic, 2, nil)
	ctx := clientCtx(t, 40*time.Second)

	w := &kafka.Writer{
		Addr:         kafka.TCP(b.Addr),
		Topic:        topic,
		Balancer:     kafka.BalancerFunc(func(kafka.Message, ...int) int { return 1 }),
		RequiredAcks: kafka.RequireAll,
		BatchSize:    50,
		BatchTimeout: 5 * time.Millisecond,
		Compression:  kafka.Lz4,
		WriteTimeout: 10 * time.Second,
		ReadTimeout:  10 * time.Second,
	}
	defer w.Close()
	msgs := make([]kafka.Message, n)
	for i := range msgs {
		msgs[i] = kafka.Message{
			Key:     []byte(fmt.Sprintf("kg-%d", i)),
			Value:   []byte(fmt.Sprintf("value-%d-%s", i, strings.Repeat("z", i%300))),
			Headers: []kafka.Header{{Key: "n", Value: []byte(fmt.Sprint(i))}},
		}
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("kafka-go WriteMessages: %v", err)
	}

	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:   []string{b.Addr},
		Topic:     topic,
		Partition: 1,
		MinBytes:  1,
		MaxBytes:  1 << 20,
		MaxWait:   200 * time.Millisecond,
	})
	defer r.Close()
	if err := r.SetOffset(kafka.FirstOffset); err != nil {
		t.Fatalf("kafka-go SetOffset: %v", err)
	}
	for i := 0; i < n; i++ {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("kafka-go ReadMessage: timed out after %d of %d", i, n)
			}
			t.Fatalf("kafka-go ReadMessage %d: %v", i, err)
		}
		if m.Partition != 1 || m.Offset != int64(i) || string(m.Key) != string(msgs[i].Key) || string(m.Value) != string(msgs[i].Value) {
			t.Fatalf("kafka-go #%d: got p%d@%d key %q value %q; want p1@%d key %q", i, m.Partition, m.Offset, m.Key, m.Value, i, msgs[i].Key)
		}
		if len(m.Headers) != 1 || m.Headers[0].Key != "n" || string(m.Headers[0].Value) != fmt.Sprint(i) {
			t.Fatalf("kafka-go #%d: headers %v", i, m.Headers)
		}
	}
	if ends := clientEndOffsets(t, clientKgo(t, b.Addr), topic); ends[0] != 0 || ends[1] != n {
		t.Errorf("end offsets %v, want map[0:0 1:%d]", ends, n)
	}
}
