package remote

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
)

func TestS3ConfigFromURL(t *testing.T) {
	cases := []struct {
		raw     string
		want    S3Config
		wantErr string
	}{
		{raw: "s3://bkt", want: S3Config{Bucket: "bkt"}},
		{raw: "s3://bkt/a/b/?region=eu-west-1", want: S3Config{Bucket: "bkt", Prefix: "a/b", Region: "eu-west-1"}},
		{
			raw: "s3://bkt/p?region=us-east-1&endpoint=http://127.0.0.1:9000&path_style=true&access_key=AK&secret_key=SK&create_bucket=true&max_attempts=2&multipart_threshold=32MiB&part_size=8MiB",
			want: S3Config{Bucket: "bkt", Prefix: "p", Region: "us-east-1", Endpoint: "http://127.0.0.1:9000", PathStyle: true,
				AccessKey: "AK", SecretKey: "SK", CreateBucket: true, MaxAttempts: 2, MultipartThreshold: 32 << 20, PartSize: 8 << 20},
		},
		{raw: "s3:///prefix", wantErr: "no bucket"},
		{raw: "s3://bkt?regoin=x", wantErr: "unknown parameter(s) regoin"},
		{raw: "s3://bkt?access_key=AK", wantErr: "go together"},
		{raw: "s3://bkt?path_style=maybe", wantErr: "path_style"},
		{raw: "s3://bkt?max_attempts=0", wantErr: "max_attempts"},
		{raw: "s3://bkt?part_size=-5", wantErr: "part_size"},
		{raw: "s3://bkt?region=a&region=b", wantErr: "given 2 times"},
		{raw: "s3://AK:SK@bkt/p", wantErr: "userinfo"},
	}
	for _, c := range cases {
		u, err := url.Parse(c.raw)
		if err != nil {
			t.Fatalf("parse %q: %v", c.raw, err)
		}
		got, err := s3ConfigFromURL(u, u.Query())
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%s: err = %v, want one containing %q", c.raw, err, c.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "SK") {
				t.Errorf("%s: error leaks the secret: %v", c.raw, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.raw, err)
			continue
		}
		if got != c.want {
			t.Errorf("%s:\n got %+v\nwant %+v", c.raw, got, c.want)
		}
	}
}

func TestMinIOConfigFromURL(t *testing.T) {
	t.Setenv("MINIO_ROOT_USER", "")
	t.Setenv("MINIO_ROOT_PASSWORD", "")
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	parse := func(raw string) (MinIOConfig, error) {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatalf("parse %q: %v", raw, err)
		}
		return minioConfigFromURL(u, u.Query())
	}
	got, err := parse("minio://KEY:SECRET@127.0.0.1:9000/bkt/a/b?secure=false&create_bucket=true&part_size=5MiB")
	if err != nil {
		t.Fatal(err)
	}
	want := MinIOConfig{Endpoint: "127.0.0.1:9000", Bucket: "bkt", Prefix: "a/b", AccessKey: "KEY", SecretKey: "SECRET",
		CreateBucket: true, PartSize: 5 << 20}
	if got != want {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	if got, _ := parse("minio://K:S@h:1/b"); !got.Secure {
		t.Error("secure should default to true")
	}

	// No credentials anywhere: a clear error that does not echo secrets.
	if _, err := parse("minio://h:1/b"); err == nil || !strings.Contains(err.Error(), "no credentials") {
		t.Errorf("no credentials: %v", err)
	}
	t.Setenv("AWS_ACCESS_KEY_ID", "awsak")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "awssk")
	if got, err := parse("minio://h:1/b"); err != nil || got.AccessKey != "awsak" || got.SecretKey != "awssk" {
		t.Errorf("AWS env credentials: %+v, %v", got, err)
	}
	t.Setenv("MINIO_ROOT_USER", "mu")
	t.Setenv("MINIO_ROOT_PASSWORD", "mpassword")
	if got, err := parse("minio://h:1/b"); err != nil || got.AccessKey != "mu" || got.SecretKey != "mpassword" {
		t.Errorf("MinIO env credentials win over AWS env: %+v, %v", got, err)
	}

	for raw, wantErr := range map[string]string{
		"minio://K:S@h:1":             "no bucket",
		"minio://K:S@h:1/":            "no bucket",
		"minio:///b":                  "no host",
		"minio://K:S@h:1/b?secure=no": "secure",
		"minio://K:S@h:1/b?endpoint=": "unknown parameter",
	} {
		_, err := parse(raw)
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%s: err = %v, want one containing %q", raw, err, wantErr)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	for raw, wantErr := range map[string]string{
		"":                           "empty URL",
		"ftp://host/x":               "unknown scheme",
		"file://otherhost/x":         "not supported",
		"file:///x?create=true":      "unknown parameter",
		"minio://K:SECRET@h:1/b?x=1": "unknown parameter",
	} {
		s, err := Open(ctx, raw)
		if err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded", raw)
			continue
		}
		if !strings.Contains(err.Error(), wantErr) {
			t.Errorf("Open(%q) = %v, want one containing %q", raw, err, wantErr)
		}
		if strings.Contains(err.Error(), "SECRET") {
			t.Errorf("Open(%q) error leaks the secret: %v", raw, err)
		}
	}
	missing := filepath.Join(t.TempDir(), "missing")
	if _, err := Open(ctx, "file://"+missing); !errors.Is(err, ErrBucketNotFound) {
		t.Errorf("Open(missing dir) = %v, want ErrBucketNotFound", err)
	}
	// A bare path works like file://.
	s, err := Open(ctx, missing+"-bare")
	if err == nil {
		s.Close()
		t.Error("Open(bare missing path) succeeded")
	}
	s, err = Open(ctx, "file://"+missing+"?create_bucket=true")
	if err != nil {
		t.Fatalf("Open(create_bucket=true): %v", err)
	}
	s.Close()
	s, err = Open(ctx, missing) // now it exists
	if err != nil {
		t.Fatalf("Open(bare path): %v", err)
	}
	if got := s.String(); got != "file://"+missing {
		t.Errorf("String() = %q", got)
	}
	s.Close()
}

func TestValidateKey(t *testing.T) {
	good := []string{"a", "a/b", "topic-abc/0/00000000000000000000-id.log", "a/.b", "a/..b", "x y", "ünï/cödé"}
	for _, k := range good {
		if err := ValidateKey(k); err != nil {
			t.Errorf("ValidateKey(%q) = %v, want nil", k, err)
		}
	}
	bad := []string{"", "/a", "a/", "a//b", ".", "..", "a/./b", "a/../b", "a/..", "a\x00b", "\xff",
		".strata-tmp-1", "a/.strata-tmp-x/b", strings.Repeat("a", 1025)}
	for _, k := range bad {
		if err := ValidateKey(k); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("ValidateKey(%q) = %v, want ErrInvalidKey", k, err)
		}
	}
	for _, p := range []string{"", "a", "a/", "a/b", "a/.", "a/b."} {
		if err := validatePrefix(p); err != nil {
			t.Errorf("validatePrefix(%q) = %v, want nil", p, err)
		}
	}
	for _, p := range []string{"/", "/a", "a//", "../", "a/..", "a/../b", ".strata-tmp-"} {
		if err := validatePrefix(p); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("validatePrefix(%q) = %v, want ErrInvalidKey", p, err)
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"1": 1, "512KiB": 512 << 10, "16MiB": 16 << 20, "16 mib": 16 << 20, "1GiB": 1 << 30, "100b": 100} {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-1", "1.5MiB", "MiB", "2048GiB", "99999999999999999999"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) accepted", in)
		}
	}
}

func TestRangeWithin(t *testing.T) {
	cases := []struct {
		off, n, size, want int64
		ok                 bool
	}{
		{0, -1, 10, 10, true}, {10, -1, 10, 0, true}, {11, -1, 10, 0, false},
		{0, 10, 10, 10, true}, {1, 10, 10, 0, false}, {5, 0, 10, 0, true}, {-1, 1, 10, 0, false},
		{9, 1<<62 + 1<<61, 10, 0, false}, // no overflow
	}
	for _, c := range cases {
		got, err := rangeWithin("k", c.off, c.n, c.size)
		if (err == nil) != c.ok || (c.ok && got != c.want) {
			t.Errorf("rangeWithin(%d, %d, %d) = %d, %v", c.off, c.n, c.size, got, err)
		}
	}
}

func TestCheckRangeReply(t *testing.T) {
	cases := []struct {
		off, n  int64
		cr      string
		clen    int64
		want    int64
		wantErr string
	}{
		{10, 5, "bytes 10-14/100", 5, 5, ""},
		{10, -1, "bytes 10-99/100", 90, 90, ""},
		{10, -1, "bytes 10-99/*", 90, 90, ""},
		{0, 100, "", 100, 100, ""},                  // whole object for a whole-object range
		{10, -1, "", 100, 0, "ignored the range"},   // whole object for a partial range
		{10, 5, "", 5, 0, "ignored the range"},      // no header, right length: still not trusted
		{10, 5, "bytes 0-4/100", 5, 0, "offset 10"}, // wrong start
		{95, 10, "bytes 95-99/100", 5, 0, "only 5"}, // trimmed at the end
		{10, -1, "bytes 10-49/100", 40, 0, "to the end"},
		{10, 5, "bytes 10-14/100", 4, 0, "body"},
		{10, 5, "bytes x-y/100", 5, 0, "malformed"},
	}
	for _, c := range cases {
		got, err := checkRangeReply("k", c.off, c.n, c.cr, c.clen)
		if c.wantErr == "" {
			if err != nil || got != c.want {
				t.Errorf("checkRangeReply(%d, %d, %q, %d) = %d, %v; want %d", c.off, c.n, c.cr, c.clen, got, err, c.want)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.wantErr) {
			t.Errorf("checkRangeReply(%d, %d, %q, %d) = %v, want an error containing %q", c.off, c.n, c.cr, c.clen, err, c.wantErr)
		}
	}
	if _, err := checkRangeReply("k", 95, 10, "bytes 95-99/100", 5); !errors.Is(err, ErrInvalidRange) {
		t.Errorf("trimmed range: %v, want ErrInvalidRange", err)
	}
}

func TestSectionOf(t *testing.T) {
	data := []byte("0123456789")
	r := bytes.NewReader(data)
	if _, err := r.Seek(3, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	sec, err := sectionOf("k", r, 4)
	if err != nil || sec == nil {
		t.Fatalf("sectionOf = %v, %v", sec, err)
	}
	got, _ := io.ReadAll(sec)
	if string(got) != "3456" {
		t.Fatalf("section = %q, want 3456", got)
	}
	if pos, _ := r.Seek(0, io.SeekCurrent); pos != 3 {
		t.Fatalf("reader offset moved to %d", pos)
	}
	if _, err := sectionOf("k", r, 8); !errors.Is(err, ErrSizeMismatch) {
		t.Fatalf("sectionOf past the end: %v, want ErrSizeMismatch", err)
	}
	if sec, err := sectionOf("k", strings.NewReader("abc"), 2); err != nil || sec == nil {
		t.Fatalf("strings.Reader: %v, %v", sec, err)
	}
	if sec, err := sectionOf("k", io.LimitReader(r, 2), 2); err != nil || sec != nil {
		t.Fatalf("plain reader: %v, %v; want nil, nil", sec, err)
	}
}
