package remote_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/stratabroker/strata/internal/miniotest"
	"github.com/stratabroker/strata/remote"
	"github.com/stratabroker/strata/remote/remotetest"
)

const testBucket = "strata-remote-test"

// hermeticAWS keeps the AWS SDK from reading the developer's config or
// asking an EC2 metadata endpoint for credentials.
func hermeticAWS(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
}

var prefixSeq atomic.Int64

// freshPrefix is a prefix no other subtest uses, so each store starts empty.
func freshPrefix(name string) string {
	return fmt.Sprintf("t%d-%s", prefixSeq.Add(1), strings.NewReplacer("/", "-", " ", "-").Replace(name))
}

func openURL(t *testing.T, raw string) remote.Storage {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := remote.Open(ctx, raw)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestObjectStores runs every object-store backend against one real MinIO.
func TestObjectStores(t *testing.T) {
	hermeticAWS(t)
	srv := miniotest.Start(t, testBucket)

	for _, scheme := range []string{"s3", "minio"} {
		t.Run(scheme, func(t *testing.T) {
			newStore := func(t *testing.T) remote.Storage {
				return openURL(t, srv.URL(scheme, testBucket, freshPrefix(t.Name())))
			}
			t.Run("Acceptance", func(t *testing.T) { remotetest.RunAcceptance(t, newStore) })
			t.Run("FaultyAcceptance", func(t *testing.T) {
				remotetest.RunAcceptance(t, func(t *testing.T) remote.Storage { return remotetest.NewFaulty(newStore(t)) })
			})
			t.Run("PutFromFile", func(t *testing.T) { testPutFromFile(t, newStore(t)) })
			t.Run("NoPrefix", func(t *testing.T) { testNoPrefix(t, srv, scheme) })
			t.Run("Multipart", func(t *testing.T) { testMultipart(t, srv, scheme) })
			t.Run("Bucket", func(t *testing.T) { testBucketCheck(t, srv, scheme) })
			t.Run("CorruptInTransit", func(t *testing.T) { testCorruptInTransit(t, srv, scheme) })
			t.Run("String", func(t *testing.T) {
				s := newStore(t)
				if strings.Contains(s.String(), srv.SecretKey) || !strings.Contains(s.String(), testBucket) {
					t.Fatalf("String() = %q: want the bucket and no secret", s.String())
				}
			})
		})
	}
	t.Run("SameObjectsBothClients", func(t *testing.T) { testSameObjects(t, srv) })
	t.Run("Measure", func(t *testing.T) {
		s := openURL(t, srv.URL("minio", testBucket, freshPrefix("measure")))
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		putMBps, getMBps, putP99, getP99, err := remote.MeasurePutGet(ctx, s, 1<<20, 8, 4)
		if err != nil {
			t.Fatalf("MeasurePutGet: %v", err)
		}
		t.Logf("MinIO S_put %.1f MB/s (p99 %v), S_get %.1f MB/s (p99 %v)", putMBps, putP99, getMBps, getP99)
		if putMBps <= 0 || getMBps <= 0 || putP99 <= 0 || getP99 <= 0 {
			t.Fatalf("MeasurePutGet figures not all positive")
		}
		if l, err := s.List(ctx, ""); err != nil || len(l) != 0 {
			t.Fatalf("MeasurePutGet left %d objects (%v)", len(l), err)
		}
	})
	// Last: it stops and restarts the server.
	t.Run("Outage", func(t *testing.T) { testOutage(t, srv) })
}

// testPutFromFile: Put reads exactly size bytes from a file's current
// offset (the S3 backend reads such a file in place instead of buffering it).
func testPutFromFile(t *testing.T, s remote.Storage) {
	data := make([]byte, 1000)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "seg")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Seek(10, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Put(ctx, "file/part", f, 100); err != nil {
		t.Fatalf("Put from a file: %v", err)
	}
	rc, err := s.Get(ctx, "file/part")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, data[10:110]) {
		t.Fatalf("object put from offset 10 of a file = %d bytes, %v; want bytes 10..110", len(got), err)
	}
	if _, err := f.Seek(900, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "file/short", f, 200); !errors.Is(err, remote.ErrSizeMismatch) {
		t.Fatalf("Put of 200 bytes from a file with 100 left: %v, want ErrSizeMismatch", err)
	}
	if _, err := s.Stat(ctx, "file/short"); !errors.Is(err, remote.ErrNotFound) {
		t.Fatalf("failed Put left an object: %v", err)
	}
}

// testNoPrefix: with no prefix configured, keys are the bucket's object names.
func testNoPrefix(t *testing.T, srv *miniotest.Server, scheme string) {
	bucket := "noprefix-" + scheme
	if err := srv.MakeBucket(bucket); err != nil {
		t.Fatal(err)
	}
	s := openURL(t, srv.URL(scheme, bucket, ""))
	ctx := context.Background()
	if err := s.Put(ctx, "x/y", bytes.NewReader([]byte("xy")), 2); err != nil {
		t.Fatal(err)
	}
	c, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.StatObject(ctx, bucket, "x/y", minio.StatObjectOptions{})
	if err != nil || info.Size != 2 {
		t.Fatalf("object x/y in the bucket: %+v, %v", info, err)
	}
	l, err := s.List(ctx, "")
	if err != nil || len(l) != 1 || l[0].Key != "x/y" {
		t.Fatalf("List = %+v, %v", l, err)
	}
}

// testMultipart uploads objects above a lowered threshold, so they go up in
// several parts, and reads ranges across part boundaries.
func testMultipart(t *testing.T, srv *miniotest.Server, scheme string) {
	raw := srv.URL(scheme, testBucket, freshPrefix("mp-"+scheme))
	u, _ := url.Parse(raw)
	q := u.Query()
	q.Set("multipart_threshold", "5MiB")
	q.Set("part_size", "5MiB")
	u.RawQuery = q.Encode()
	s := openURL(t, u.String())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	const size = 12<<20 + 12345 // three parts, the last one short
	data := make([]byte, size)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "big/obj", bytes.NewReader(data), size); err != nil {
		t.Fatalf("multipart Put: %v", err)
	}
	requireObject(ctx, t, s, "big/obj", data, "a multipart Put")
	// It really went up in parts: a multipart object's ETag ends in -<parts>.
	c, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	key := strings.TrimPrefix(u.Path, "/")
	if scheme == "minio" {
		_, key, _ = strings.Cut(key, "/") // minio://host/bucket/prefix
	}
	info, err := c.StatObject(ctx, testBucket, strings.TrimSuffix(key, "/")+"/big/obj", minio.StatObjectOptions{})
	if err != nil {
		t.Fatalf("stat the multipart object directly: %v", err)
	}
	if !strings.HasSuffix(info.ETag, "-3") {
		t.Fatalf("ETag %q: want a 3-part multipart upload", info.ETag)
	}
	for _, r := range [][2]int64{{5<<20 - 100, 200}, {10<<20 - 1, 2}, {size - 7, -1}} {
		rc, err := s.GetRange(ctx, "big/obj", r[0], r[1])
		if err != nil {
			t.Fatalf("GetRange(%d, %d): %v", r[0], r[1], err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		end := size
		if r[1] >= 0 {
			end = int(r[0] + r[1])
		}
		if err != nil || !bytes.Equal(got, data[r[0]:end]) {
			t.Fatalf("GetRange(%d, %d) = %d bytes, %v", r[0], r[1], len(got), err)
		}
	}
	// A multipart Put whose reader runs short fails and stores nothing.
	err = s.Put(ctx, "big/short", io.LimitReader(bytes.NewReader(data), 11<<20), size)
	if !errors.Is(err, remote.ErrSizeMismatch) {
		t.Fatalf("short multipart Put: %v, want ErrSizeMismatch", err)
	}
	if _, err := s.Stat(ctx, "big/short"); !errors.Is(err, remote.ErrNotFound) {
		t.Fatalf("after a failed multipart Put, Stat = %v, want ErrNotFound", err)
	}
	// The failed upload was aborted: no incomplete upload left behind.
	for up := range c.ListIncompleteUploads(ctx, testBucket, "", true) {
		if up.Err != nil {
			t.Fatalf("list incomplete uploads: %v", up.Err)
		}
		if strings.HasSuffix(up.Key, "big/short") {
			t.Fatalf("incomplete multipart upload of %s left behind", up.Key)
		}
	}
}

// testBucketCheck: a missing bucket is a clear error unless create_bucket=true.
func testBucketCheck(t *testing.T, srv *miniotest.Server, scheme string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bucket := "absent-" + scheme
	_, err := remote.Open(ctx, srv.URL(scheme, bucket, "p"))
	if !errors.Is(err, remote.ErrBucketNotFound) || !strings.Contains(err.Error(), bucket) {
		t.Fatalf("Open of a missing bucket = %v, want ErrBucketNotFound naming %q", err, bucket)
	}
	if strings.Contains(err.Error(), srv.SecretKey) {
		t.Fatalf("error leaks the secret key: %v", err)
	}
	c, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := c.BucketExists(ctx, bucket); err != nil || ok {
		t.Fatalf("Open without create_bucket created the bucket (exists=%v, %v)", ok, err)
	}
	s := openURL(t, srv.URL(scheme, bucket, "p")+"&create_bucket=true")
	if ok, err := c.BucketExists(ctx, bucket); err != nil || !ok {
		t.Fatalf("create_bucket=true did not create the bucket (exists=%v, %v)", ok, err)
	}
	if err := s.Put(ctx, "k", bytes.NewReader([]byte("v")), 1); err != nil {
		t.Fatal(err)
	}
	// Opening again with create_bucket=true on an existing bucket is fine.
	openURL(t, srv.URL(scheme, bucket, "p")+"&create_bucket=true")

	// Wrong credentials fail at Open, without echoing them.
	u, _ := url.Parse(srv.URL(scheme, testBucket, "p"))
	if scheme == "s3" {
		q := u.Query()
		q.Set("secret_key", "wrong-secret-123")
		u.RawQuery = q.Encode()
	} else {
		u.User = url.UserPassword(srv.AccessKey, "wrong-secret-123")
	}
	_, err = remote.Open(ctx, u.String())
	if err == nil {
		t.Fatal("Open with a wrong secret key succeeded")
	}
	if strings.Contains(err.Error(), "wrong-secret-123") {
		t.Fatalf("error leaks the secret: %v", err)
	}
}

// testSameObjects: the two clients agree on what is stored under a prefix.
func testSameObjects(t *testing.T, srv *miniotest.Server) {
	p := freshPrefix("same")
	a := openURL(t, srv.URL("s3", testBucket, p))
	b := openURL(t, srv.URL("minio", testBucket, p))
	ctx := context.Background()
	if err := a.Put(ctx, "seg/1.log", bytes.NewReader([]byte("from-s3")), 7); err != nil {
		t.Fatal(err)
	}
	if err := b.Put(ctx, "seg/2.log", bytes.NewReader([]byte("from-minio")), 10); err != nil {
		t.Fatal(err)
	}
	for _, s := range []remote.Storage{a, b} {
		l, err := s.List(ctx, "seg/")
		if err != nil || len(l) != 2 || l[0].Key != "seg/1.log" || l[1].Key != "seg/2.log" || l[0].Size != 7 || l[1].Size != 10 {
			t.Fatalf("%s: List = %+v, %v", s, l, err)
		}
	}
	rc, err := b.GetRange(ctx, "seg/1.log", 5, 2)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if string(got) != "s3" {
		t.Fatalf("GetRange via minio of an object put via s3 = %q", got)
	}
}

// testOutage: with MinIO down every call fails promptly (bounded retries),
// never with wrong data; when it is back the same store works again.
func testOutage(t *testing.T, srv *miniotest.Server) {
	stores := map[string]remote.Storage{}
	for _, scheme := range []string{"s3", "minio"} {
		u, _ := url.Parse(srv.URL(scheme, testBucket, freshPrefix("outage-"+scheme)))
		q := u.Query()
		q.Set("max_attempts", "2")
		u.RawQuery = q.Encode()
		s := openURL(t, u.String())
		if err := s.Put(context.Background(), "k", bytes.NewReader([]byte("before")), 6); err != nil {
			t.Fatal(err)
		}
		stores[scheme] = s
	}
	stopStart := time.Now()
	srv.Stop()
	t.Logf("MinIO stopped in %v", time.Since(stopStart).Round(time.Millisecond))
	for scheme, s := range stores {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		start := time.Now()
		if err := s.Put(ctx, "k2", bytes.NewReader([]byte("during")), 6); err == nil {
			t.Errorf("%s: Put with MinIO down succeeded", scheme)
		}
		if rc, err := s.Get(ctx, "k"); err == nil {
			rc.Close()
			t.Errorf("%s: Get with MinIO down succeeded", scheme)
		} else if errors.Is(err, remote.ErrNotFound) {
			t.Errorf("%s: Get with MinIO down = %v: an outage is not a missing object", scheme, err)
		}
		if _, err := s.Stat(ctx, "k"); err == nil || errors.Is(err, remote.ErrNotFound) {
			t.Errorf("%s: Stat with MinIO down = %v, want a non-NotFound error", scheme, err)
		}
		if _, err := s.List(ctx, ""); err == nil {
			t.Errorf("%s: List with MinIO down succeeded", scheme)
		}
		cancel()
		t.Logf("%s: four calls with MinIO down failed in %v", scheme, time.Since(start).Round(time.Millisecond))
		if d := time.Since(start); d > 20*time.Second {
			t.Errorf("%s: calls with MinIO down took %v; retries should be bounded", scheme, d)
		}
	}
	restartStart := time.Now()
	srv.Restart(t)
	t.Logf("MinIO restarted in %v", time.Since(restartStart).Round(time.Millisecond))
	for scheme, s := range stores {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		rc, err := s.Get(ctx, "k")
		if err != nil {
			cancel()
			t.Fatalf("%s: Get after restart: %v", scheme, err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		cancel()
		if err != nil || string(got) != "before" {
			t.Fatalf("%s: Get after restart = %q, %v", scheme, got, err)
		}
		if _, err := s.Stat(context.Background(), "k2"); !errors.Is(err, remote.ErrNotFound) {
			t.Fatalf("%s: the Put that failed during the outage left an object: %v", scheme, err)
		}
	}
}

func TestMain(m *testing.M) {
	// The AWS SDK must never try the EC2 metadata endpoint from a test.
	os.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	os.Exit(m.Run())
}
