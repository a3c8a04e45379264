package test

// Tiered storage end to end (issue 4): real broker processes uploading to a
// real MinIO server; franz-go, kcat and sarama reading across the local /
// remote boundary; MinIO stopped during uploads and cold reads; corrupted
// and missing objects; a broker killed mid-upload; remote retention.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/stratabroker/strata/coordinator"
	"github.com/stratabroker/strata/internal/etcdtest"
	"github.com/stratabroker/strata/internal/harness"
	"github.com/stratabroker/strata/internal/miniotest"
	"github.com/stratabroker/strata/remote"
	"github.com/stratabroker/strata/tiering"
)

const tierBucket = "strata-tier"

// tierEnv is one MinIO, one external etcd and one broker using both.
type tierEnv struct {
	minio   *miniotest.Server
	etcd    []string
	broker  *harness.Broker
	store   remote.Storage // the broker's bucket/prefix, for inspection
	meta    *coordinator.Store
	dataDir string
}

// tierArgs are the flags of a broker that tiers quickly: small segments,
// little local retention, fast task and retention rounds.
func tierArgs(url string, extra ...string) []string {
	a := []string{
		"--remote", url,
		"--remote.log.manager.task.interval.ms=200",
		"--log.retention.check.interval.ms=200",
		"--remote.log.chunk.size.bytes=262144",
		"--auto.create.topics.enable=false",
	}
	return append(a, extra...)
}

func startTierEnv(t *testing.T, extra ...string) *tierEnv {
	t.Helper()
	m := miniotest.Start(t, tierBucket)
	prefix := "cluster-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	url := m.URL("s3", tierBucket, prefix)
	eps := etcdtest.Start(t)
	dir := filepath.Join(t.TempDir(), "b1")
	b := harness.StartT(t, harness.BrokerConfig{DataDir: dir, BrokerID: 1, EtcdEndpoints: eps, Args: tierArgs(url, extra...)})
	ctx := clientCtx(t, 30*time.Second)
	st, err := remote.Open(ctx, m.URL("minio", tierBucket, prefix))
	if err != nil {
		t.Fatalf("open the broker's bucket: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	meta, err := coordinator.Open(ctx, coordinator.Config{Endpoints: eps})
	if err != nil {
		t.Fatalf("open etcd: %v", err)
	}
	t.Cleanup(func() { meta.Close() })
	return &tierEnv{minio: m, etcd: eps, broker: b, store: st, meta: meta, dataDir: dir}
}

// tierValue is the deterministic value of record i of partition p.
func tierValue(p int32, i int) []byte {
	v := fmt.Appendf(nil, "p%d-r%07d-", p, i)
	for len(v) < 100 {
		v = append(v, byte('a'+(i+len(v))%26))
	}
	return v
}

// tierTimeBase is the timestamp of record 0; record i has tierTime(i).
var tierTimeBase = time.Now().Add(-time.Hour).Truncate(time.Second)

func tierTime(i int) time.Time { return tierTimeBase.Add(time.Duration(i) * time.Millisecond) }

// tierProduce writes n records to each of parts partitions (record i of
// partition p at offset i), in batches, and checks the acknowledged offsets.
func tierProduce(t *testing.T, addr, topic string, parts int32, n int) {
	t.Helper()
	cl := clientKgo(t, addr, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(5*time.Millisecond), kgo.ProducerBatchCompression(kgo.NoCompression()))
	defer cl.Close()
	ctx := clientCtx(t, 3*time.Minute)
	const chunk = 2000
	for start := 0; start < n; start += chunk {
		var rs []*kgo.Record
		for p := int32(0); p < parts; p++ {
			for i := start; i < min(start+chunk, n); i++ {
				rs = append(rs, &kgo.Record{Partition: p, Value: tierValue(p, i), Timestamp: tierTime(i)})
			}
		}
		res := cl.ProduceSync(ctx, rs...)
		if err := res.FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
}

// tierListOffset answers ListOffsets (v9) for one partition and timestamp
// (-2 earliest, -4 earliest local, -5 latest tiered, -1 latest).
func tierListOffset(t *testing.T, addr, topic string, p int32, ts int64) (int64, int16) {
	t.Helper()
	req := kmsg.NewPtrListOffsetsRequest()
	req.Version = 9
	req.ReplicaID = -1
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewListOffsetsRequestTopicPartition()
	rp.Partition, rp.Timestamp, rp.CurrentLeaderEpoch = p, ts, -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp := rawReq[*kmsg.ListOffsetsResponse](t, addr, req)
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		t.Fatalf("list offsets: malformed response %+v", resp)
	}
	op := resp.Topics[0].Partitions[0]
	return op.Offset, op.ErrorCode
}

// tierLocalLogFiles counts the .log files of a partition's local directory.
func tierLocalLogFiles(t *testing.T, dataDir, topic string, p int32) int {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dataDir, "logs", fmt.Sprintf("%s-%d", topic, p)))
	if err != nil {
		t.Fatalf("read partition dir: %v", err)
	}
	n := 0
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".log") {
			n++
		}
	}
	return n
}

// tierWaitTiered waits until every partition has uploaded all its sealed
// segments (ListOffsets -5 reaches the active segment), trimmed its local
// log to at most maxLocal segments, and kept its log start at 0.
func tierWaitTiered(t *testing.T, addr, dataDir, topic string, parts int32, maxLocal int, d time.Duration) {
	t.Helper()
	clientEventually(t, d, topic+" tiered and trimmed locally", func() (bool, string) {
		for p := int32(0); p < parts; p++ {
			local, c1 := tierListOffset(t, addr, topic, p, -4)
			up, c2 := tierListOffset(t, addr, topic, p, -5)
			start, c3 := tierListOffset(t, addr, topic, p, -2)
			if c1 != 0 || c2 != 0 || c3 != 0 {
				return false, fmt.Sprintf("partition %d: errors %d %d %d", p, c1, c2, c3)
			}
			active := tierActiveBase(t, dataDir, topic, p)
			files := tierLocalLogFiles(t, dataDir, topic, p)
			if start != 0 || local <= 0 || up < active-1 || files > maxLocal {
				return false, fmt.Sprintf("partition %d: log start %d, local start %d, uploaded to %d, active segment %d, %d local segments",
					p, start, local, up, active, files)
			}
		}
		return true, ""
	})
}

// tierActiveBase is the base offset of a partition's newest local segment.
func tierActiveBase(t *testing.T, dataDir, topic string, p int32) int64 {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dataDir, "logs", fmt.Sprintf("%s-%d", topic, p)))
	if err != nil {
		t.Fatalf("read partition dir: %v", err)
	}
	best := int64(-1)
	for _, e := range ents {
		if n, ok := strings.CutSuffix(e.Name(), ".log"); ok {
			if b, err := strconv.ParseInt(n, 10, 64); err == nil && b > best {
				best = b
			}
		}
	}
	return best
}

// tierCheckRecords checks that got holds records 0..n-1 of partition p in
// order with their exact values.
func tierCheckRecords(t *testing.T, who string, p int32, offsets []int64, values [][]byte, n int) {
	t.Helper()
	if len(offsets) != n {
		t.Fatalf("%s partition %d: %d records, want %d", who, p, len(offsets), n)
	}
	for i := range offsets {
		if offsets[i] != int64(i) {
			t.Fatalf("%s partition %d: record %d has offset %d", who, p, i, offsets[i])
		}
		if want := tierValue(p, i); !bytes.Equal(values[i], want) {
			t.Fatalf("%s partition %d offset %d: value %q, want %q", who, p, i, values[i], want)
		}
	}
}

func tierConsumeKgo(t *testing.T, addr, topic string, parts int32, n int) {
	t.Helper()
	ends := map[int32]int64{}
	for p := int32(0); p < parts; p++ {
		ends[p] = int64(n)
	}
	got := clientConsumeAll(t, addr, topic, ends, 3*time.Minute)
	for p := int32(0); p < parts; p++ {
		var offs []int64
		var vals [][]byte
		for _, r := range got[p] {
			offs = append(offs, r.Offset)
			vals = append(vals, r.Value)
		}
		tierCheckRecords(t, "franz-go", p, offs, vals, n)
	}
}

func tierConsumeKcat(t *testing.T, addr, topic string, p int32, n int) {
	t.Helper()
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Fatalf("kcat not on PATH (make test installs it): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, kcat, "-C", "-b", addr, "-t", topic, "-p", strconv.Itoa(int(p)), "-o", "beginning", "-e", "-q", "-f", "%o %s\n")
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("kcat -C: %v\n%s", err, errb.String())
	}
	var offs []int64
	var vals [][]byte
	for _, line := range bytes.Split(bytes.TrimSuffix(out.Bytes(), []byte("\n")), []byte("\n")) {
		o, v, ok := bytes.Cut(line, []byte(" "))
		if !ok {
			t.Fatalf("kcat line %q", line)
		}
		off, err := strconv.ParseInt(string(o), 10, 64)
		if err != nil {
			t.Fatalf("kcat offset %q", o)
		}
		offs = append(offs, off)
		vals = append(vals, v)
	}
	tierCheckRecords(t, "kcat", p, offs, vals, n)
}

func tierConsumeSarama(t *testing.T, addr, topic string, p int32, n int) {
	t.Helper()
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V2_8_0_0
	cfg.Consumer.Return.Errors = true
	cfg.Consumer.Fetch.Default = 1 << 20
	c, err := sarama.NewConsumer([]string{addr}, cfg)
	if err != nil {
		t.Fatalf("sarama consumer: %v", err)
	}
	defer c.Close()
	pc, err := c.ConsumePartition(topic, p, sarama.OffsetOldest)
	if err != nil {
		t.Fatalf("sarama consume partition: %v", err)
	}
	defer pc.Close()
	var offs []int64
	var vals [][]byte
	timeout := time.After(3 * time.Minute)
	for len(offs) < n {
		select {
		case m := <-pc.Messages():
			offs = append(offs, m.Offset)
			vals = append(vals, m.Value)
		case err := <-pc.Errors():
			t.Logf("sarama (retried): %v", err)
		case <-timeout:
			t.Fatalf("sarama: %d of %d records in 3 minutes", len(offs), n)
		}
	}
	tierCheckRecords(t, "sarama", p, offs, vals, n)
}

// TestTieringEndToEnd: 100,000 records over two partitions, most of them
// only in MinIO; three clients read everything from earliest, before and
// after a restart (empty chunk cache).
func TestTieringEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: MinIO and a broker")
	}
	env := startTierEnv(t)
	const topic, parts, n = "tiered", 2, 50_000 // 100,000 records
	cl := clientKgo(t, env.broker.Addr)
	clientCreateTopic(t, cl, topic, parts, map[string]*string{
		"segment.bytes":         kstr("262144"),
		"local.retention.bytes": kstr("524288"),
	})
	tierProduce(t, env.broker.Addr, topic, parts, n)
	tierWaitTiered(t, env.broker.Addr, env.dataDir, topic, parts, 4, 2*time.Minute)
	objs, err := env.store.List(clientCtx(t, 30*time.Second), "")
	if err != nil || len(objs) < 3*20 {
		t.Fatalf("bucket holds %d objects (err %v); want every uploaded segment's three", len(objs), err)
	}
	// Timestamp lookups reach into the remote tier: record i carries
	// tierTime(i), and most records are only in MinIO now.
	local, _ := tierListOffset(t, env.broker.Addr, topic, 0, -4)
	for _, i := range []int{0, 1, 1234, int(local) - 1, int(local), n - 1} {
		off, code := tierListOffset(t, env.broker.Addr, topic, 0, tierTime(i).UnixMilli())
		if code != 0 || off != int64(i) {
			t.Errorf("ListOffsets at the timestamp of record %d (local log start %d): offset %d, code %d", i, local, off, code)
		}
	}
	tierConsumeKgo(t, env.broker.Addr, topic, parts, n)
	tierConsumeKcat(t, env.broker.Addr, topic, 0, n)
	tierConsumeSarama(t, env.broker.Addr, topic, 1, n)

	if err := env.broker.Restart(clientCtx(t, time.Minute)); err != nil {
		t.Fatalf("restart: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(env.dataDir, "remote-cache")); len(ents) > 0 {
		t.Errorf("chunk cache not empty after restart: %d entries", len(ents))
	}
	tierConsumeKgo(t, env.broker.Addr, topic, parts, n)
}

// TestTieringMinIODownDuringUploads: with the bucket unreachable nothing is
// deleted locally; when it returns uploads resume and nothing is lost.
func TestTieringMinIODownDuringUploads(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: MinIO and a broker")
	}
	env := startTierEnv(t)
	const topic, n = "tier-outage", 20_000
	cl := clientKgo(t, env.broker.Addr)
	clientCreateTopic(t, cl, topic, 1, map[string]*string{
		"segment.bytes":         kstr("131072"),
		"local.retention.bytes": kstr("131072"),
	})
	env.minio.Stop()
	tierProduce(t, env.broker.Addr, topic, 1, n)
	segs := tierLocalLogFiles(t, env.dataDir, topic, 0)
	time.Sleep(3 * time.Second) // many task and retention rounds
	if local, _ := tierListOffset(t, env.broker.Addr, topic, 0, -4); local != 0 {
		t.Fatalf("local log start moved to %d while the bucket was down", local)
	}
	if got := tierLocalLogFiles(t, env.dataDir, topic, 0); got != segs {
		t.Fatalf("local segments %d -> %d while the bucket was down", segs, got)
	}
	env.minio.Restart(t)
	tierWaitTiered(t, env.broker.Addr, env.dataDir, topic, 1, 3, 2*time.Minute)
	tierConsumeKgo(t, env.broker.Addr, topic, 1, n)
}

// tierRawFetch fetches one partition at offset and returns the error code
// and the number of record bytes.
func tierRawFetch(t *testing.T, addr, topic string, p int32, offset int64) (int16, int) {
	t.Helper()
	req := kmsg.NewPtrFetchRequest()
	req.Version = 11
	req.ReplicaID = -1
	req.MaxWaitMillis = 100
	req.MaxBytes = 1 << 20
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes, rp.CurrentLeaderEpoch = p, offset, 1<<20, -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp := rawReq[*kmsg.FetchResponse](t, addr, req)
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		t.Fatalf("fetch: malformed response")
	}
	op := resp.Topics[0].Partitions[0]
	return op.ErrorCode, len(op.RecordBatches)
}

// TestTieringColdReadFaults: MinIO down during a cold read answers a
// retriable error while hot partitions keep flowing; corrupted and missing
// objects give an error, never wrong records.
func TestTieringColdReadFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: MinIO and a broker")
	}
	env := startTierEnv(t, "--remote.fetch.max.wait.ms=2000")
	const cold, hot, n = "tier-cold", "tier-hot", 20_000
	cl := clientKgo(t, env.broker.Addr)
	clientCreateTopic(t, cl, cold, 1, map[string]*string{
		"segment.bytes":         kstr("131072"),
		"local.retention.bytes": kstr("131072"),
	})
	clientCreateTopic(t, cl, hot, 1, map[string]*string{"remote.storage.enable": kstr("false")})
	tierProduce(t, env.broker.Addr, cold, 1, n)
	tierWaitTiered(t, env.broker.Addr, env.dataDir, cold, 1, 3, 2*time.Minute)

	env.minio.Stop()
	code, size := tierRawFetch(t, env.broker.Addr, cold, 0, 0)
	if size != 0 || (code != kerr.KafkaStorageError.Code && code != 0) {
		t.Fatalf("cold fetch with the bucket down: code %d, %d bytes; want a retriable error and no records", code, size)
	}
	if code != 0 && !kerr.ErrorForCode(code).(*kerr.Error).Retriable {
		t.Fatalf("cold fetch error %d is not retriable", code)
	}
	// Hot partitions keep flowing meanwhile, through a concurrent client.
	start := time.Now()
	tierProduce(t, env.broker.Addr, hot, 1, 2000)
	tierConsumeKgo(t, env.broker.Addr, hot, 1, 2000)
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("hot topic took %v with the bucket down", d)
	}
	env.minio.Restart(t)
	tierConsumeKgo(t, env.broker.Addr, cold, 1, n)

	// Corrupt one uploaded .log object and delete another; restart the
	// broker so that nothing is served from the chunk cache.
	ctx := clientCtx(t, time.Minute)
	objs, err := env.store.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	var logs []remote.ObjectInfo
	for _, o := range objs {
		if strings.HasSuffix(o.Key, tiering.ExtLog) {
			logs = append(logs, o)
		}
	}
	if len(logs) < 4 {
		t.Fatalf("%d remote segments", len(logs))
	}
	corrupt, missing := logs[1], logs[2]
	rc, err := env.store.Get(ctx, corrupt.Key)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	buf.ReadFrom(rc)
	rc.Close()
	b := buf.Bytes()
	b[len(b)/2] ^= 0xff
	if err := env.store.Put(ctx, corrupt.Key, bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatal(err)
	}
	if err := env.store.Delete(ctx, missing.Key); err != nil {
		t.Fatal(err)
	}
	if err := env.broker.Restart(clientCtx(t, time.Minute)); err != nil {
		t.Fatal(err)
	}
	for _, o := range []remote.ObjectInfo{corrupt, missing} {
		base, _, _, ok := tiering.ParseSegmentKey(o.Key)
		if !ok {
			t.Fatalf("unparsable key %s", o.Key)
		}
		// Read the whole segment batch by batch: every answer is an error or
		// correct records — the damaged part must be an error.
		sawErr := false
		for off := base; off < base+200; {
			code, recs := tierRawFetchRecords(t, env.broker.Addr, cold, 0, off)
			if code != 0 {
				if code != kerr.KafkaStorageError.Code {
					t.Fatalf("segment %s offset %d: error %d, want KAFKA_STORAGE_ERROR", o.Key, off, code)
				}
				sawErr = true
				break
			}
			if len(recs) == 0 {
				t.Fatalf("segment %s offset %d: no records and no error", o.Key, off)
			}
			for _, r := range recs {
				if want := tierValue(0, int(r.Offset)); !bytes.Equal(r.Value, want) {
					t.Fatalf("wrong record served from a damaged object: offset %d value %q", r.Offset, r.Value)
				}
			}
			off = recs[len(recs)-1].Offset + 1
		}
		if !sawErr {
			t.Errorf("damaged object %s served without an error", o.Key)
		}
	}
}

// tierRawFetchRecords fetches at offset and decodes the records.
func tierRawFetchRecords(t *testing.T, addr, topic string, p int32, offset int64) (int16, []kgo.Record) {
	t.Helper()
	req := kmsg.NewPtrFetchRequest()
	req.Version = 11
	req.ReplicaID = -1
	req.MaxWaitMillis = 100
	req.MaxBytes = 1 << 20
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes, rp.CurrentLeaderEpoch = p, offset, 64<<10, -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp := rawReq[*kmsg.FetchResponse](t, addr, req)
	op := resp.Topics[0].Partitions[0]
	if op.ErrorCode != 0 {
		return op.ErrorCode, nil
	}
	var out []kgo.Record
	raw := op.RecordBatches
	for len(raw) > 0 {
		var b kmsg.RecordBatch
		if err := b.ReadFrom(raw); err != nil {
			t.Fatalf("decode batch at offset %d: %v", offset, err)
		}
		size := 12 + int(b.Length)
		recs, err := decodeBatchRecords(b)
		if err != nil {
			t.Fatalf("decode records: %v", err)
		}
		for _, r := range recs {
			if r.Offset >= offset {
				out = append(out, r)
			}
		}
		raw = raw[size:]
	}
	return 0, out
}

// decodeBatchRecords decodes an uncompressed batch's records.
func decodeBatchRecords(b kmsg.RecordBatch) ([]kgo.Record, error) {
	if b.Attributes&7 != 0 {
		return nil, errors.New("compressed batch")
	}
	raw := b.Records
	var out []kgo.Record
	for i := int32(0); i < b.NumRecords; i++ {
		var r kmsg.Record
		n, err := readVarintRecord(raw, &r)
		if err != nil {
			return nil, err
		}
		out = append(out, kgo.Record{Offset: b.FirstOffset + int64(r.OffsetDelta), Value: r.Value})
		raw = raw[n:]
	}
	return out, nil
}

// readVarintRecord decodes one length-prefixed record from raw.
func readVarintRecord(raw []byte, r *kmsg.Record) (int, error) {
	l, n := varint(raw)
	if n <= 0 || int(l) > len(raw)-n || l < 0 {
		return 0, errors.New("bad record length")
	}
	if err := r.ReadFrom(raw[:n+int(l)]); err != nil {
		return 0, err
	}
	return n + int(l), nil
}

func varint(b []byte) (int64, int) {
	var x uint64
	var s uint
	for i, c := range b {
		if i == 10 {
			return 0, -1
		}
		if c < 0x80 {
			x |= uint64(c) << s
			return int64(x>>1) ^ -int64(x&1), i + 1
		}
		x |= uint64(c&0x7f) << s
		s += 7
	}
	return 0, 0
}

// TestTieringKilledMidUpload: a broker killed while a slow upload is in
// flight leaves a copy-started record; after restart the segment is
// uploaded once under a new id and the orphan's objects and record are gone.
func TestTieringKilledMidUpload(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: MinIO and a broker")
	}
	// 64 KiB/s: a 1 MiB segment takes ~16 s to upload.
	env := startTierEnv(t, "--remote.log.manager.copy.max.bytes.per.second=65536")
	const topic, n = "tier-kill", 12_000 // ~1.4 MB: one sealed 1 MiB segment
	cl := clientKgo(t, env.broker.Addr)
	resp := clientCreateTopic(t, cl, topic, 1, map[string]*string{"segment.bytes": kstr("1048576")})
	tierProduce(t, env.broker.Addr, topic, 1, n)
	ctx := clientCtx(t, 3*time.Minute)
	var orphan coordinator.RemoteSegment
	clientEventually(t, time.Minute, "an upload in flight", func() (bool, string) {
		segs, err := env.meta.RemoteSegments(ctx, resp.ID, 0)
		if err != nil {
			return false, err.Error()
		}
		for _, s := range segs {
			if s.State == coordinator.CopyStarted {
				orphan = s
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d records, none copy-started", len(segs))
	})
	if err := env.broker.Kill(); err != nil {
		t.Fatal(err)
	}
	env.broker.Config.Args = tierArgs(env.minio.URL("s3", tierBucket, env.storePrefix(t)))
	if err := env.broker.Restart(ctx); err != nil {
		t.Fatalf("restart: %v", err)
	}
	var final []coordinator.RemoteSegment
	clientEventually(t, time.Minute, "the segment uploaded again and the orphan removed", func() (bool, string) {
		segs, err := env.meta.RemoteSegments(ctx, resp.ID, 0)
		if err != nil {
			return false, err.Error()
		}
		for _, s := range segs {
			if s.ID == orphan.ID || s.State != coordinator.CopyFinished {
				return false, fmt.Sprintf("record %x in state %v", s.ID, s.State)
			}
		}
		if len(segs) == 0 {
			return false, "no records"
		}
		final = segs
		return true, ""
	})
	bases := map[int64]int{}
	for _, s := range final {
		bases[s.StartOffset]++
		if bases[s.StartOffset] > 1 {
			t.Errorf("segment %d uploaded twice", s.StartOffset)
		}
	}
	if bases[orphan.StartOffset] != 1 {
		t.Errorf("segment %d (the interrupted one) uploaded %d times", orphan.StartOffset, bases[orphan.StartOffset])
	}
	objs, err := env.store.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	orphanHex := fmt.Sprintf("%x", orphan.ID[:])
	for _, o := range objs {
		if strings.Contains(o.Key, orphanHex) {
			t.Errorf("object %s of the interrupted upload still in the bucket", o.Key)
		}
	}
	if len(objs) != 3*len(final) {
		t.Errorf("%d objects for %d segments; want exactly three each", len(objs), len(final))
	}
	tierConsumeKgo(t, env.broker.Addr, topic, 1, n)
}

// storePrefix recovers the prefix the env's broker was started with.
func (e *tierEnv) storePrefix(t *testing.T) string {
	t.Helper()
	for i, a := range e.broker.Config.Args {
		if a == "--remote" && i+1 < len(e.broker.Config.Args) {
			u := e.broker.Config.Args[i+1]
			rest := strings.TrimPrefix(u, "s3://"+tierBucket+"/")
			prefix, _, _ := strings.Cut(rest, "?")
			return prefix
		}
	}
	t.Fatal("no --remote in the broker's args")
	return ""
}

// TestTieringRetention: remote retention deletes objects and records and
// moves the log start; DeleteRecords works across both tiers.
func TestTieringRetention(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: MinIO and a broker")
	}
	env := startTierEnv(t)
	const topic, n = "tier-retention", 20_000
	cl := clientKgo(t, env.broker.Addr)
	resp := clientCreateTopic(t, cl, topic, 1, map[string]*string{
		"segment.bytes":         kstr("131072"),
		"local.retention.bytes": kstr("131072"),
	})
	tierProduce(t, env.broker.Addr, topic, 1, n)
	tierWaitTiered(t, env.broker.Addr, env.dataDir, topic, 1, 3, 2*time.Minute)
	ctx := clientCtx(t, 2*time.Minute)
	before, err := env.meta.RemoteSegments(ctx, resp.ID, 0)
	if err != nil || len(before) < 8 {
		t.Fatalf("%d remote segments (err %v)", len(before), err)
	}

	// DeleteRecords into the remote tier: the log start moves and the
	// remote segments wholly below it go.
	cut := before[3].StartOffset + 5
	dr := kmsg.NewPtrDeleteRecordsRequest()
	dr.Version = 2
	dr.TimeoutMillis = 10_000
	drt := kmsg.NewDeleteRecordsRequestTopic()
	drt.Topic = topic
	drp := kmsg.NewDeleteRecordsRequestTopicPartition()
	drp.Partition, drp.Offset = 0, cut
	drt.Partitions = append(drt.Partitions, drp)
	dr.Topics = append(dr.Topics, drt)
	drResp := rawReq[*kmsg.DeleteRecordsResponse](t, env.broker.Addr, dr)
	if c := drResp.Topics[0].Partitions[0].ErrorCode; c != 0 || drResp.Topics[0].Partitions[0].LowWatermark != cut {
		t.Fatalf("delete records to %d: code %d, low watermark %d", cut, c, drResp.Topics[0].Partitions[0].LowWatermark)
	}
	if start, _ := tierListOffset(t, env.broker.Addr, topic, 0, -2); start != cut {
		t.Fatalf("ListOffsets -2 = %d after DeleteRecords to %d", start, cut)
	}
	clientEventually(t, time.Minute, "remote segments below the log start deleted", func() (bool, string) {
		segs, err := env.meta.RemoteSegments(ctx, resp.ID, 0)
		if err != nil {
			return false, err.Error()
		}
		if segs[0].StartOffset != before[3].StartOffset {
			return false, fmt.Sprintf("first remote segment starts at %d", segs[0].StartOffset)
		}
		return true, ""
	})
	if code, recs := tierRawFetchRecords(t, env.broker.Addr, topic, 0, cut); code != 0 || len(recs) == 0 || recs[0].Offset != cut {
		t.Fatalf("fetch at the new log start %d: code %d, %d records", cut, code, len(recs))
	}
	if code, _ := tierRawFetch(t, env.broker.Addr, topic, 0, cut-1); code != kerr.OffsetOutOfRange.Code {
		t.Fatalf("fetch below the log start: code %d, want OFFSET_OUT_OF_RANGE", code)
	}

	// retention.bytes over both tiers: ~1 MiB total keeps a handful of
	// segments; the rest of the remote tier goes, objects and records.
	ac := kmsg.NewPtrIncrementalAlterConfigsRequest()
	res := kmsg.NewIncrementalAlterConfigsRequestResource()
	res.ResourceType, res.ResourceName = kmsg.ConfigResourceTypeTopic, topic
	c := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
	c.Name, c.Value = "retention.bytes", kstr("1048576")
	res.Configs = append(res.Configs, c)
	ac.Resources = append(ac.Resources, res)
	acResp := rawReq[*kmsg.IncrementalAlterConfigsResponse](t, env.broker.Addr, ac)
	if code := acResp.Resources[0].ErrorCode; code != 0 {
		t.Fatalf("alter retention.bytes: %d %v", code, acResp.Resources[0].ErrorMessage)
	}
	var after []coordinator.RemoteSegment
	clientEventually(t, time.Minute, "remote retention.bytes applied", func() (bool, string) {
		segs, err := env.meta.RemoteSegments(ctx, resp.ID, 0)
		if err != nil {
			return false, err.Error()
		}
		var size int64
		for _, s := range segs {
			size += s.SizeBytes
		}
		// Kafka's rule: a segment goes while the total without it still
		// reaches retention.bytes, so at most one segment's worth over.
		if len(segs) == 0 || size-segs[0].SizeBytes >= 1048576 {
			return false, fmt.Sprintf("%d remote bytes in %d segments", size, len(segs))
		}
		after = segs
		return true, ""
	})
	start, _ := tierListOffset(t, env.broker.Addr, topic, 0, -2)
	if len(after) > 0 && start != after[0].StartOffset {
		t.Errorf("log start %d, first remote segment %d", start, after[0].StartOffset)
	}
	if start <= cut {
		t.Errorf("log start %d did not move with retention", start)
	}
	objs, err := env.store.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 3*len(after) {
		t.Errorf("%d objects for %d remaining segments", len(objs), len(after))
	}
	// Everything from the new log start is still readable and correct.
	hw, _ := tierListOffset(t, env.broker.Addr, topic, 0, -1)
	for off := start; off < hw; {
		code, recs := tierRawFetchRecords(t, env.broker.Addr, topic, 0, off)
		if code != 0 || len(recs) == 0 || recs[0].Offset != off {
			t.Fatalf("read at %d: code %d, %d records", off, code, len(recs))
		}
		for _, r := range recs {
			if !bytes.Equal(r.Value, tierValue(0, int(r.Offset))) {
				t.Fatalf("offset %d: wrong value", r.Offset)
			}
		}
		off = recs[len(recs)-1].Offset + 1
	}
}

func kstr(s string) *string { return &s }
