package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// MinIOConfig configures the MinIO backend.
type MinIOConfig struct {
	Endpoint string // host:port
	Secure   bool   // https
	Bucket   string
	Prefix   string // keys are stored under Prefix + "/" (none when empty)
	Region   string // optional

	AccessKey, SecretKey string
	// CreateBucket creates a missing bucket instead of failing.
	CreateBucket bool
	// MaxAttempts bounds the tries of one request (DefaultMaxAttempts if 0).
	MaxAttempts int
	// MultipartThreshold and PartSize (DefaultMultipartThreshold and
	// DefaultPartSize if 0; PartSize at least 5 MiB).
	MultipartThreshold, PartSize int64
}

// MinIO stores objects in a MinIO (or S3-compatible) bucket with
// minio-go/v7. Objects below MultipartThreshold go up in one streamed PUT,
// larger ones in parts of PartSize (a failed multipart upload is aborted).
type MinIO struct {
	client    *minio.Client
	core      minio.Core
	transport *http.Transport
	bucket    string
	prefix    string
	desc      string
	threshold int64
	partSize  int64
	closed    atomic.Bool
}

var _ Storage = (*MinIO)(nil)

// NewMinIO connects to the bucket in cfg and checks that it exists (creating
// it when cfg.CreateBucket).
func NewMinIO(ctx context.Context, cfg MinIOConfig) (*MinIO, error) {
	if cfg.Endpoint == "" || cfg.Bucket == "" {
		return nil, fmt.Errorf("remote: minio: endpoint and bucket are required")
	}
	if strings.Contains(cfg.Endpoint, "/") {
		return nil, fmt.Errorf("remote: minio: endpoint %q: want host:port, no scheme or path", cfg.Endpoint)
	}
	prefix, err := normPrefix(cfg.Prefix)
	if err != nil {
		return nil, fmt.Errorf("remote: minio bucket %s: %w", cfg.Bucket, err)
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.MultipartThreshold <= 0 {
		cfg.MultipartThreshold = DefaultMultipartThreshold
	}
	if cfg.PartSize <= 0 {
		cfg.PartSize = DefaultPartSize
	}
	if cfg.PartSize < minPartSize {
		return nil, fmt.Errorf("remote: minio: part size %d below S3's minimum of 5 MiB", cfg.PartSize)
	}
	if cfg.MultipartThreshold < cfg.PartSize {
		cfg.MultipartThreshold = cfg.PartSize
	}
	tr, err := minio.DefaultTransport(cfg.Secure)
	if err != nil {
		return nil, fmt.Errorf("remote: minio %s: %w", cfg.Endpoint, err)
	}
	tr.ResponseHeaderTimeout = 60 * time.Second
	sendBodiesInLargeWrites(tr)
	client, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:      credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure:     cfg.Secure,
		Region:     cfg.Region,
		Transport:  tr,
		MaxRetries: cfg.MaxAttempts,
		// Checksums go in a trailer (CRC32C, verified by the server), so
		// the body need not be hashed with SHA-256 to sign it (see Put).
		TrailingHeaders: true,
	})
	if err != nil {
		return nil, fmt.Errorf("remote: minio %s: %w", cfg.Endpoint, err)
	}
	scheme := "http"
	if cfg.Secure {
		scheme = "https"
	}
	m := &MinIO{
		client:    client,
		core:      minio.Core{Client: client},
		transport: tr,
		bucket:    cfg.Bucket,
		prefix:    prefix,
		desc:      fmt.Sprintf("minio://%s/%s/%s (%s)", cfg.Endpoint, cfg.Bucket, prefix, scheme),
		threshold: cfg.MultipartThreshold,
		partSize:  cfg.PartSize,
	}
	ok, err := client.BucketExists(ctx, cfg.Bucket)
	if err != nil {
		tr.CloseIdleConnections()
		return nil, fmt.Errorf("remote: %s: check bucket %s: %w", m.desc, cfg.Bucket, err)
	}
	if !ok {
		if !cfg.CreateBucket {
			tr.CloseIdleConnections()
			return nil, fmt.Errorf("remote: %s: bucket %q does not exist (create it, or add ?create_bucket=true): %w", m.desc, cfg.Bucket, ErrBucketNotFound)
		}
		err := client.MakeBucket(ctx, cfg.Bucket, minio.MakeBucketOptions{Region: cfg.Region})
		if err != nil && minio.ToErrorResponse(err).Code != "BucketAlreadyOwnedByYou" {
			tr.CloseIdleConnections()
			return nil, fmt.Errorf("remote: %s: create bucket %s: %w", m.desc, cfg.Bucket, err)
		}
	}
	return m, nil
}

func (m *MinIO) String() string { return m.desc }

// Close marks the store closed and drops idle connections.
func (m *MinIO) Close() error {
	if !m.closed.Swap(true) {
		m.transport.CloseIdleConnections()
	}
	return nil
}

func (m *MinIO) check(ctx context.Context, op, key string) error {
	if m.closed.Load() {
		return fmt.Errorf("%s %s: %w", op, key, ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s %s: %w", op, key, err)
	}
	return nil
}

// Put implements Storage.
func (m *MinIO) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := m.check(ctx, "put", key); err != nil {
		return err
	}
	if err := ValidateKey(key); err != nil {
		return fmt.Errorf("put: %w", err)
	}
	if size < 0 {
		return fmt.Errorf("put %s: size %d: %w", key, size, ErrSizeMismatch)
	}
	opts := minio.PutObjectOptions{
		ContentType: "application/octet-stream",
		PartSize:    uint64(m.partSize),
		NumThreads:  uploadConcurrency,
		// Over plain HTTP minio-go would sign every chunk of the body with
		// SHA-256 (and the server check each); the CRC32C trailer it sends
		// instead is what the server verifies before storing anything. Over
		// HTTPS it sends unsigned payloads already.
		DisableContentSha256: true,
		Checksum:             minio.ChecksumCRC32C,
	}
	if size < m.threshold {
		opts.DisableMultipart = true
	}
	info, err := m.client.PutObject(ctx, m.bucket, m.prefix+key, newSizedReader(ctx, key, r, size), size, opts)
	if err != nil {
		if errors.Is(err, ErrSizeMismatch) {
			return fmt.Errorf("put %s: %w", key, err)
		}
		return fmt.Errorf("put %s: %w", key, sizeErr(key, size, err))
	}
	if info.Size != size {
		return fmt.Errorf("put %s: server stored %d of %d bytes: %w", key, info.Size, size, ErrSizeMismatch)
	}
	return nil
}

// Get implements Storage.
func (m *MinIO) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := m.check(ctx, "get", key); err != nil {
		return nil, err
	}
	if err := ValidateKey(key); err != nil {
		return nil, fmt.Errorf("get: %w", err)
	}
	rc, info, _, err := m.core.GetObject(ctx, m.bucket, m.prefix+key, minio.GetObjectOptions{})
	if err != nil {
		return nil, m.objErr("get", key, err)
	}
	return &lengthCheckReader{rc: rc, key: key, want: info.Size}, nil
}

// GetRange implements Storage.
func (m *MinIO) GetRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if err := m.check(ctx, "get range", key); err != nil {
		return nil, err
	}
	if err := ValidateKey(key); err != nil {
		return nil, fmt.Errorf("get range: %w", err)
	}
	if err := checkRangeArgs(key, offset); err != nil {
		return nil, err
	}
	if offset == 0 && length < 0 {
		return m.Get(ctx, key)
	}
	if length == 0 {
		return m.emptyRange(ctx, key, offset, length)
	}
	var opts minio.GetObjectOptions
	if length > 0 {
		opts.Set("Range", fmt.Sprintf("bytes=%d-%d", offset, offset+length-1))
	} else {
		opts.Set("Range", fmt.Sprintf("bytes=%d-", offset))
	}
	rc, info, hdr, err := m.core.GetObject(ctx, m.bucket, m.prefix+key, opts)
	if err != nil {
		er := minio.ToErrorResponse(err)
		if er.StatusCode == http.StatusRequestedRangeNotSatisfiable || er.Code == "InvalidRange" {
			return m.emptyRange(ctx, key, offset, length)
		}
		return nil, m.objErr("get range", key, err)
	}
	n, err := checkRangeReply(key, offset, length, hdr.Get("Content-Range"), info.Size)
	if err != nil {
		rc.Close()
		return nil, err
	}
	return &lengthCheckReader{rc: rc, key: key, want: n}, nil
}

func (m *MinIO) emptyRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	info, err := m.Stat(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("get range: %w", err)
	}
	n, err := rangeWithin(key, offset, length, info.Size)
	if err != nil {
		return nil, err
	}
	if n != 0 {
		return nil, fmt.Errorf("get range %s: server refused %d bytes at %d of a %d-byte object: %w", key, length, offset, info.Size, ErrInvalidRange)
	}
	return io.NopCloser(bytes.NewReader(nil)), nil
}

// Stat implements Storage.
func (m *MinIO) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	if err := m.check(ctx, "stat", key); err != nil {
		return ObjectInfo{}, err
	}
	if err := ValidateKey(key); err != nil {
		return ObjectInfo{}, fmt.Errorf("stat: %w", err)
	}
	info, err := m.client.StatObject(ctx, m.bucket, m.prefix+key, minio.StatObjectOptions{})
	if err != nil {
		return ObjectInfo{}, m.objErr("stat", key, err)
	}
	return ObjectInfo{Key: key, Size: info.Size, LastModified: info.LastModified}, nil
}

// List implements Storage.
func (m *MinIO) List(ctx context.Context, prefix string) ([]ObjectInfo, error) {
	if err := m.check(ctx, "list", prefix); err != nil {
		return nil, err
	}
	if err := validatePrefix(prefix); err != nil {
		return nil, fmt.Errorf("list: %w", err)
	}
	// Cancelling lctx stops minio-go's listing goroutine if we return early.
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var out []ObjectInfo
	for o := range m.client.ListObjects(lctx, m.bucket, minio.ListObjectsOptions{
		Prefix:    m.prefix + prefix,
		Recursive: true,
	}) {
		if o.Err != nil {
			return nil, fmt.Errorf("list %q: %w", prefix, o.Err)
		}
		k := strings.TrimPrefix(o.Key, m.prefix)
		if strings.HasSuffix(k, "/") {
			continue
		}
		out = append(out, ObjectInfo{Key: k, Size: o.Size, LastModified: o.LastModified})
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list %q: %w", prefix, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// Delete implements Storage.
func (m *MinIO) Delete(ctx context.Context, key string) error {
	if err := m.check(ctx, "delete", key); err != nil {
		return err
	}
	if err := ValidateKey(key); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	err := m.client.RemoveObject(ctx, m.bucket, m.prefix+key, minio.RemoveObjectOptions{})
	if err != nil && !minioNotFound(err) {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}

func (m *MinIO) objErr(op, key string, err error) error {
	if minioNotFound(err) {
		return fmt.Errorf("%s %s: %w (%v)", op, key, ErrNotFound, err)
	}
	return fmt.Errorf("%s %s: %w", op, key, err)
}

func minioNotFound(err error) bool {
	er := minio.ToErrorResponse(err)
	switch er.Code {
	case "NoSuchKey", "NotFound":
		return true
	case "NoSuchBucket":
		return false
	}
	return er.StatusCode == http.StatusNotFound
}
