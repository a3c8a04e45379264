package remote

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Open chooses a backend by URL and checks that its bucket (or directory)
// exists:
//
//	file:///abs/dir[?create_bucket=true]            (also a bare path)  -> NewFS
//	s3://bucket/prefix?region=us-east-1&endpoint=http://127.0.0.1:9000&path_style=true  -> NewS3
//	minio://[KEY:SECRET@]host:port/bucket/prefix?secure=false                          -> NewMinIO
//
// Query parameters, all optional:
//
//	every scheme: create_bucket=true   create the bucket/directory if missing
//	s3:    region, endpoint, path_style, access_key, secret_key (tests; prefer
//	       the AWS credential chain), max_attempts, multipart_threshold, part_size
//	minio: secure (default true), region, max_attempts, multipart_threshold, part_size
//
// An unknown parameter is an error, so a typo does not silently fall back to
// a default. Sizes are bytes, with an optional KiB/MiB/GiB suffix.
func Open(ctx context.Context, rawURL string) (Storage, error) {
	if strings.TrimSpace(rawURL) == "" {
		return nil, fmt.Errorf("remote: open: empty URL")
	}
	if !strings.Contains(rawURL, "://") {
		return openFS(rawURL, url.Values{})
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("remote: open: %w", redactErr(err, rawURL))
	}
	q := u.Query()
	switch u.Scheme {
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return nil, fmt.Errorf("remote: open file URL: host %q not supported (use file:///abs/dir)", u.Host)
		}
		if u.Path == "" {
			return nil, fmt.Errorf("remote: open file URL: no directory (use file:///abs/dir)")
		}
		return openFS(u.Path, q)
	case "s3":
		cfg, err := s3ConfigFromURL(u, q)
		if err != nil {
			return nil, err
		}
		return NewS3(ctx, cfg)
	case "minio":
		cfg, err := minioConfigFromURL(u, q)
		if err != nil {
			return nil, err
		}
		return NewMinIO(ctx, cfg)
	default:
		return nil, fmt.Errorf("remote: open: unknown scheme %q (want file, s3 or minio)", u.Scheme)
	}
}

// redactErr keeps a URL parse error from echoing credentials.
func redactErr(err error, raw string) error {
	if u, perr := url.Parse(raw); perr == nil && u.User != nil {
		return fmt.Errorf("malformed URL %s", u.Redacted())
	}
	if strings.Contains(raw, "@") {
		return fmt.Errorf("malformed URL (not shown: it may hold credentials)")
	}
	return err
}

func openFS(dir string, q url.Values) (Storage, error) {
	if err := onlyParams(q, "create_bucket"); err != nil {
		return nil, fmt.Errorf("remote: open file URL: %w", err)
	}
	create, err := boolParam(q, "create_bucket", false)
	if err != nil {
		return nil, fmt.Errorf("remote: open file URL: %w", err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("remote: open file URL: %w", err)
	}
	return NewFS(FSConfig{Dir: abs, CreateBucket: create})
}

func s3ConfigFromURL(u *url.URL, q url.Values) (S3Config, error) {
	if err := onlyParams(q, "region", "endpoint", "path_style", "access_key", "secret_key",
		"create_bucket", "max_attempts", "multipart_threshold", "part_size"); err != nil {
		return S3Config{}, fmt.Errorf("remote: open s3 URL: %w", err)
	}
	if u.User != nil {
		return S3Config{}, fmt.Errorf("remote: open s3 URL: credentials in the URL's userinfo are not supported (use the AWS credential chain)")
	}
	cfg := S3Config{
		Bucket:    u.Host,
		Prefix:    strings.Trim(u.Path, "/"),
		Region:    q.Get("region"),
		Endpoint:  q.Get("endpoint"),
		AccessKey: q.Get("access_key"),
		SecretKey: q.Get("secret_key"),
	}
	if cfg.Bucket == "" {
		return S3Config{}, fmt.Errorf("remote: open s3 URL: no bucket (want s3://bucket/prefix)")
	}
	if (cfg.AccessKey == "") != (cfg.SecretKey == "") {
		return S3Config{}, fmt.Errorf("remote: open s3 URL: access_key and secret_key go together")
	}
	var err error
	if cfg.PathStyle, err = boolParam(q, "path_style", false); err != nil {
		return S3Config{}, fmt.Errorf("remote: open s3 URL: %w", err)
	}
	if cfg.CreateBucket, err = boolParam(q, "create_bucket", false); err != nil {
		return S3Config{}, fmt.Errorf("remote: open s3 URL: %w", err)
	}
	if cfg.MaxAttempts, err = intParam(q, "max_attempts"); err != nil {
		return S3Config{}, fmt.Errorf("remote: open s3 URL: %w", err)
	}
	if cfg.MultipartThreshold, err = sizeParam(q, "multipart_threshold"); err != nil {
		return S3Config{}, fmt.Errorf("remote: open s3 URL: %w", err)
	}
	if cfg.PartSize, err = sizeParam(q, "part_size"); err != nil {
		return S3Config{}, fmt.Errorf("remote: open s3 URL: %w", err)
	}
	return cfg, nil
}

func minioConfigFromURL(u *url.URL, q url.Values) (MinIOConfig, error) {
	if err := onlyParams(q, "secure", "region", "create_bucket", "max_attempts",
		"multipart_threshold", "part_size"); err != nil {
		return MinIOConfig{}, fmt.Errorf("remote: open minio URL: %w", err)
	}
	if u.Host == "" {
		return MinIOConfig{}, fmt.Errorf("remote: open minio URL: no host (want minio://host:port/bucket/prefix)")
	}
	path := strings.Trim(u.Path, "/")
	bucket, prefix, _ := strings.Cut(path, "/")
	if bucket == "" {
		return MinIOConfig{}, fmt.Errorf("remote: open minio URL: no bucket (want minio://host:port/bucket/prefix)")
	}
	cfg := MinIOConfig{
		Endpoint: u.Host,
		Bucket:   bucket,
		Prefix:   prefix,
		Region:   q.Get("region"),
	}
	if u.User != nil {
		cfg.AccessKey = u.User.Username()
		cfg.SecretKey, _ = u.User.Password()
	}
	if cfg.AccessKey == "" && cfg.SecretKey == "" {
		cfg.AccessKey, cfg.SecretKey = os.Getenv("MINIO_ROOT_USER"), os.Getenv("MINIO_ROOT_PASSWORD")
	}
	if cfg.AccessKey == "" && cfg.SecretKey == "" {
		cfg.AccessKey, cfg.SecretKey = os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY")
	}
	if cfg.AccessKey == "" || cfg.SecretKey == "" {
		return MinIOConfig{}, fmt.Errorf("remote: open minio URL %s: no credentials (give minio://KEY:SECRET@host:port/..., "+
			"or set MINIO_ROOT_USER/MINIO_ROOT_PASSWORD or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)", u.Redacted())
	}
	var err error
	if cfg.Secure, err = boolParam(q, "secure", true); err != nil {
		return MinIOConfig{}, fmt.Errorf("remote: open minio URL: %w", err)
	}
	if cfg.CreateBucket, err = boolParam(q, "create_bucket", false); err != nil {
		return MinIOConfig{}, fmt.Errorf("remote: open minio URL: %w", err)
	}
	if cfg.MaxAttempts, err = intParam(q, "max_attempts"); err != nil {
		return MinIOConfig{}, fmt.Errorf("remote: open minio URL: %w", err)
	}
	if cfg.MultipartThreshold, err = sizeParam(q, "multipart_threshold"); err != nil {
		return MinIOConfig{}, fmt.Errorf("remote: open minio URL: %w", err)
	}
	if cfg.PartSize, err = sizeParam(q, "part_size"); err != nil {
		return MinIOConfig{}, fmt.Errorf("remote: open minio URL: %w", err)
	}
	return cfg, nil
}

func onlyParams(q url.Values, allowed ...string) error {
	var bad []string
	for k := range q {
		ok := false
		for _, a := range allowed {
			if k == a {
				ok = true
				break
			}
		}
		if !ok {
			bad = append(bad, k)
		}
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return fmt.Errorf("unknown parameter(s) %s (known: %s)", strings.Join(bad, ", "), strings.Join(allowed, ", "))
	}
	for k, v := range q {
		if len(v) > 1 {
			return fmt.Errorf("parameter %s given %d times", k, len(v))
		}
	}
	return nil
}

func boolParam(q url.Values, name string, def bool) (bool, error) {
	v := q.Get(name)
	if v == "" {
		return def, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("parameter %s=%q: want true or false", name, v)
	}
	return b, nil
}

func intParam(q url.Values, name string) (int, error) {
	v := q.Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 100 {
		return 0, fmt.Errorf("parameter %s=%q: want an integer from 1 to 100", name, v)
	}
	return n, nil
}

// sizeParam parses "1048576", "16MiB", "64 MiB", "1GiB", "512KiB".
func sizeParam(q url.Values, name string) (int64, error) {
	v := strings.TrimSpace(q.Get(name))
	if v == "" {
		return 0, nil
	}
	n, err := ParseSize(v)
	if err != nil {
		return 0, fmt.Errorf("parameter %s: %w", name, err)
	}
	return n, nil
}

// ParseSize parses a byte count with an optional binary suffix (B, KiB, MiB,
// GiB, case-insensitive). It must be positive and at most 1 TiB.
func ParseSize(v string) (int64, error) {
	s := strings.ToLower(strings.TrimSpace(v))
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"b", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.m
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n > (1<<40)/mult {
		return 0, fmt.Errorf("size %q: want a positive byte count up to 1 TiB, e.g. 16MiB", v)
	}
	return n * mult, nil
}
