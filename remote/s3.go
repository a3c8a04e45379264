package remote

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithymw "github.com/aws/smithy-go/middleware"
)

// Defaults for both object-store backends.
const (
	DefaultMultipartThreshold = 64 << 20 // objects this large or larger go up in parts
	DefaultPartSize           = 16 << 20
	DefaultMaxAttempts        = 4 // tries per request, the first included
	minPartSize               = 5 << 20
	uploadConcurrency         = 4 // parts in flight per multipart upload
)

// S3Config configures the S3 backend.
type S3Config struct {
	Bucket string
	Prefix string // keys are stored under Prefix + "/" (none when empty)
	// Region defaults to the AWS chain's (AWS_REGION, shared config), then
	// us-east-1.
	Region string
	// Endpoint is a custom endpoint URL (MinIO, another S3-compatible
	// store), e.g. http://127.0.0.1:9000. Empty: AWS.
	Endpoint  string
	PathStyle bool // bucket in the path instead of the host name (MinIO needs it)
	// AccessKey and SecretKey, both or neither; neither uses the standard AWS
	// credential chain (env, shared config, web identity, EC2 instance role).
	AccessKey, SecretKey string
	// CreateBucket creates a missing bucket instead of failing.
	CreateBucket bool
	// MaxAttempts bounds the tries of one request (DefaultMaxAttempts if 0).
	MaxAttempts int
	// MultipartThreshold and PartSize (DefaultMultipartThreshold and
	// DefaultPartSize if 0; PartSize at least 5 MiB).
	MultipartThreshold, PartSize int64
}

// S3 stores objects in an S3 bucket with aws-sdk-go-v2. Objects of at least
// MultipartThreshold bytes are uploaded in parts of PartSize (the SDK's
// transfer manager; a failed multipart upload is aborted), which holds up
// to MultipartThreshold + (uploadConcurrency+1) × PartSize bytes in memory.
// Smaller ones go up in one PUT, read straight from r when r is an
// io.ReaderAt and io.Seeker (a segment file), else buffered in memory.
type S3 struct {
	client    *s3.Client
	tm        *transfermanager.Client
	bucket    string
	prefix    string // "" or "a/b/"
	desc      string
	threshold int64
	closed    atomic.Bool
}

var (
	_ Storage      = (*S3)(nil)
	_ CRC32CPutter = (*S3)(nil)
)

// NewS3 connects to the bucket in cfg and checks that it exists (creating it
// when cfg.CreateBucket).
func NewS3(ctx context.Context, cfg S3Config) (*S3, error) {
	if cfg.Bucket == "" {
		return nil, fmt.Errorf("remote: s3: no bucket given")
	}
	prefix, err := normPrefix(cfg.Prefix)
	if err != nil {
		return nil, fmt.Errorf("remote: s3 bucket %s: %w", cfg.Bucket, err)
	}
	if (cfg.AccessKey == "") != (cfg.SecretKey == "") {
		return nil, fmt.Errorf("remote: s3: access key and secret key go together")
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
		return nil, fmt.Errorf("remote: s3: part size %d below S3's minimum of 5 MiB", cfg.PartSize)
	}
	if cfg.MultipartThreshold < cfg.PartSize {
		cfg.MultipartThreshold = cfg.PartSize
	}

	httpClient := awshttp.NewBuildableClient().
		WithDialerOptions(func(d *net.Dialer) { d.Timeout = 10 * time.Second }).
		WithTransportOptions(func(t *http.Transport) {
			t.ResponseHeaderTimeout = 60 * time.Second
			t.MaxIdleConnsPerHost = 32
			sendBodiesInLargeWrites(t)
		})
	opts := []func(*config.LoadOptions) error{
		config.WithHTTPClient(httpClient),
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = cfg.MaxAttempts
				o.MaxBackoff = 5 * time.Second
				o.RateLimiter = ratelimit.None // bounded by MaxAttempts, not a shared quota
			})
		}),
	}
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
	}
	if cfg.AccessKey != "" {
		opts = append(opts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(cfg.AccessKey, cfg.SecretKey, "")))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("remote: s3 bucket %s: load AWS config: %w", cfg.Bucket, err)
	}
	if awsCfg.Region == "" {
		awsCfg.Region = "us-east-1"
	}
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.UsePathStyle = cfg.PathStyle
		o.DisableLogOutputChecksumValidationSkipped = true
		if strings.HasPrefix(strings.ToLower(cfg.Endpoint), "http://") {
			o.APIOptions = append(o.APIOptions, unsignedPayload)
		}
	})
	tm := transfermanager.New(client, func(o *transfermanager.Options) {
		o.PartSizeBytes = cfg.PartSize
		o.MultipartUploadThreshold = cfg.MultipartThreshold
		o.Concurrency = uploadConcurrency
		o.FailTimeout = 30 * time.Second // abort a failed multipart upload even if ctx was cancelled
	})

	desc := "s3://" + cfg.Bucket + "/" + prefix
	if cfg.Endpoint != "" {
		desc += " (endpoint " + cfg.Endpoint + ")"
	}
	s := &S3{client: client, tm: tm, bucket: cfg.Bucket, prefix: prefix, desc: desc, threshold: cfg.MultipartThreshold}
	if err := s.checkBucket(ctx, cfg); err != nil {
		return nil, err
	}
	return s, nil
}

// unsignedPayload signs requests with an UNSIGNED-PAYLOAD body hash.
// Over plain HTTP the SDK would otherwise hash every body with SHA-256 to
// sign it (and the server hash it again to check), which measured 40 % of
// the broker's CPU while uploading. Integrity in transit does not rest on
// it: every PUT and UploadPart still carries a checksum header that the
// server verifies before it stores anything — the SDK's default CRC32, or
// the caller's CRC32C (PutCRC32C) — and cold reads check each batch's
// CRC32C. Over HTTPS the SDK already sends unsigned payloads with a
// checksum trailer.
func unsignedPayload(stack *smithymw.Stack) error {
	return stack.Finalize.Add(smithymw.FinalizeMiddlewareFunc("strata:UnsignedPayload",
		func(ctx context.Context, in smithymw.FinalizeInput, next smithymw.FinalizeHandler) (smithymw.FinalizeOutput, smithymw.Metadata, error) {
			if v4.GetPayloadHash(ctx) == "" {
				ctx = v4.SetPayloadHash(ctx, "UNSIGNED-PAYLOAD")
			}
			return next.HandleFinalize(ctx, in)
		}), smithymw.Before)
}

func (s *S3) checkBucket(ctx context.Context, cfg S3Config) error {
	_, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(s.bucket)})
	if err == nil {
		return nil
	}
	if httpStatus(err) != http.StatusNotFound && !isCode(err, "NoSuchBucket", "NotFound") {
		return fmt.Errorf("remote: %s: check bucket %s: %w", s.desc, s.bucket, err)
	}
	if !cfg.CreateBucket {
		return fmt.Errorf("remote: %s: bucket %q does not exist (create it, or add ?create_bucket=true): %w", s.desc, s.bucket, ErrBucketNotFound)
	}
	in := &s3.CreateBucketInput{Bucket: aws.String(s.bucket)}
	if r := s.client.Options().Region; r != "" && r != "us-east-1" {
		in.CreateBucketConfiguration = &types.CreateBucketConfiguration{LocationConstraint: types.BucketLocationConstraint(r)}
	}
	if _, err := s.client.CreateBucket(ctx, in); err != nil && !isCode(err, "BucketAlreadyOwnedByYou") {
		return fmt.Errorf("remote: %s: create bucket %s: %w", s.desc, s.bucket, err)
	}
	return nil
}

func (s *S3) String() string { return s.desc }

// Close marks the store closed.
func (s *S3) Close() error {
	s.closed.Store(true)
	return nil
}

func (s *S3) check(ctx context.Context, op, key string) error {
	if s.closed.Load() {
		return fmt.Errorf("%s %s: %w", op, key, ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s %s: %w", op, key, err)
	}
	return nil
}

// Put implements Storage.
func (s *S3) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	return s.put(ctx, key, r, size, nil)
}

// PutCRC32C implements CRC32CPutter: below the multipart threshold the PUT
// carries crc as its x-amz-checksum-crc32c, which the server checks, and
// the SDK reads the body once, to send it (without it, it reads the body a
// first time to compute a CRC32 of its own). Larger objects go up as Put
// sends them.
func (s *S3) PutCRC32C(ctx context.Context, key string, r io.Reader, size int64, crc uint32) error {
	return s.put(ctx, key, r, size, &crc)
}

func (s *S3) put(ctx context.Context, key string, r io.Reader, size int64, crc *uint32) error {
	if err := s.check(ctx, "put", key); err != nil {
		return err
	}
	if err := ValidateKey(key); err != nil {
		return fmt.Errorf("put: %w", err)
	}
	if size < 0 {
		return fmt.Errorf("put %s: size %d: %w", key, size, ErrSizeMismatch)
	}
	body := newSizedReader(ctx, key, r, size)
	if size < s.threshold {
		// One PUT of a seekable body, which the SDK can sign and retry:
		// read straight from r if it allows random access, else from memory.
		seekable, err := sectionOf(key, r, size)
		if err != nil {
			return err
		}
		if seekable == nil {
			buf := make([]byte, size)
			if _, err := io.ReadFull(body, buf); err != nil {
				return fmt.Errorf("put %s: read: %w", key, sizeErr(key, size, err))
			}
			seekable = bytes.NewReader(buf)
		}
		in := &s3.PutObjectInput{
			Bucket:        aws.String(s.bucket),
			Key:           aws.String(s.prefix + key),
			Body:          seekable,
			ContentLength: aws.Int64(size),
		}
		if crc != nil {
			var b [4]byte
			binary.BigEndian.PutUint32(b[:], *crc)
			in.ChecksumAlgorithm = types.ChecksumAlgorithmCrc32c
			in.ChecksumCRC32C = aws.String(base64.StdEncoding.EncodeToString(b[:]))
		}
		_, err = s.client.PutObject(ctx, in)
		if err != nil {
			return fmt.Errorf("put %s: %w", key, err)
		}
		return nil
	}
	_, err := s.tm.UploadObject(ctx, &transfermanager.UploadObjectInput{
		Bucket:        aws.String(s.bucket),
		Key:           aws.String(s.prefix + key),
		Body:          body,
		ContentLength: aws.Int64(size),
	})
	if err != nil {
		return fmt.Errorf("put %s (multipart): %w", key, err)
	}
	return nil
}

// sectionOf returns the next size bytes of r as a seekable reader when r is
// an io.ReaderAt and io.Seeker (an *os.File, *bytes.Reader,
// *io.SectionReader), so a single PUT need not copy them into memory; r's
// offset is left where it was. It returns nil, nil for other readers.
func sectionOf(key string, r io.Reader, size int64) (io.ReadSeeker, error) {
	ra, ok := r.(interface {
		io.ReaderAt
		io.Seeker
	})
	if !ok {
		return nil, nil
	}
	pos, err := ra.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil, nil // not really seekable (a pipe as *os.File): read it
	}
	end, err := ra.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, fmt.Errorf("put %s: seek: %w", key, err)
	}
	if _, err := ra.Seek(pos, io.SeekStart); err != nil {
		return nil, fmt.Errorf("put %s: seek: %w", key, err)
	}
	if end-pos < size {
		return nil, fmt.Errorf("put %s: reader holds %d bytes, not %d: %w", key, end-pos, size, ErrSizeMismatch)
	}
	return io.NewSectionReader(ra, pos, size), nil
}

// sizeErr names a short reader as ErrSizeMismatch.
func sizeErr(key string, size int64, err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return fmt.Errorf("reader ended before %d bytes: %w", size, ErrSizeMismatch)
	}
	return err
}

// Get implements Storage.
func (s *S3) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := s.check(ctx, "get", key); err != nil {
		return nil, err
	}
	if err := ValidateKey(key); err != nil {
		return nil, fmt.Errorf("get: %w", err)
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(s.bucket),
		Key:    aws.String(s.prefix + key),
	})
	if err != nil {
		return nil, s.objErr("get", key, err)
	}
	return &lengthCheckReader{rc: out.Body, key: key, want: aws.ToInt64(out.ContentLength)}, nil
}

// GetRange implements Storage.
func (s *S3) GetRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if err := s.check(ctx, "get range", key); err != nil {
		return nil, err
	}
	if err := ValidateKey(key); err != nil {
		return nil, fmt.Errorf("get range: %w", err)
	}
	if err := checkRangeArgs(key, offset); err != nil {
		return nil, err
	}
	if offset == 0 && length < 0 {
		return s.Get(ctx, key)
	}
	if length == 0 { // HTTP cannot ask for zero bytes
		return s.emptyRange(ctx, key, offset, length)
	}
	rng := fmt.Sprintf("bytes=%d-", offset)
	if length > 0 {
		rng = fmt.Sprintf("bytes=%d-%d", offset, offset+length-1)
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(s.bucket),
		Key:    aws.String(s.prefix + key),
		Range:  aws.String(rng),
	})
	if err != nil {
		if httpStatus(err) == http.StatusRequestedRangeNotSatisfiable || isCode(err, "InvalidRange") {
			return s.emptyRange(ctx, key, offset, length)
		}
		return nil, s.objErr("get range", key, err)
	}
	n, err := checkRangeReply(key, offset, length, aws.ToString(out.ContentRange), aws.ToInt64(out.ContentLength))
	if err != nil {
		out.Body.Close()
		return nil, err
	}
	return &lengthCheckReader{rc: out.Body, key: key, want: n}, nil
}

// emptyRange answers a range the server would not: an empty reader if the
// range is empty and inside the object, else ErrInvalidRange or ErrNotFound.
func (s *S3) emptyRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	info, err := s.Stat(ctx, key)
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
func (s *S3) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	if err := s.check(ctx, "stat", key); err != nil {
		return ObjectInfo{}, err
	}
	if err := ValidateKey(key); err != nil {
		return ObjectInfo{}, fmt.Errorf("stat: %w", err)
	}
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{
		Bucket: aws.String(s.bucket),
		Key:    aws.String(s.prefix + key),
	})
	if err != nil {
		return ObjectInfo{}, s.objErr("stat", key, err)
	}
	return ObjectInfo{Key: key, Size: aws.ToInt64(out.ContentLength), LastModified: aws.ToTime(out.LastModified)}, nil
}

// maxListPages bounds one List (1000 keys a page: a billion keys).
const maxListPages = 1_000_000

// List implements Storage.
func (s *S3) List(ctx context.Context, prefix string) ([]ObjectInfo, error) {
	if err := s.check(ctx, "list", prefix); err != nil {
		return nil, err
	}
	if err := validatePrefix(prefix); err != nil {
		return nil, fmt.Errorf("list: %w", err)
	}
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{
		Bucket: aws.String(s.bucket),
		Prefix: aws.String(s.prefix + prefix),
	})
	var out []ObjectInfo
	for pages := 0; p.HasMorePages(); pages++ {
		if pages >= maxListPages {
			return nil, fmt.Errorf("list %q: more than %d pages", prefix, maxListPages)
		}
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list %q: %w", prefix, err)
		}
		for _, o := range page.Contents {
			k := strings.TrimPrefix(aws.ToString(o.Key), s.prefix)
			if strings.HasSuffix(k, "/") { // "directory marker" made by other tools
				continue
			}
			out = append(out, ObjectInfo{Key: k, Size: aws.ToInt64(o.Size), LastModified: aws.ToTime(o.LastModified)})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// Delete implements Storage.
func (s *S3) Delete(ctx context.Context, key string) error {
	if err := s.check(ctx, "delete", key); err != nil {
		return err
	}
	if err := ValidateKey(key); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	_, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{
		Bucket: aws.String(s.bucket),
		Key:    aws.String(s.prefix + key),
	})
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}

// objErr wraps err with op and key, classifying a missing object.
func (s *S3) objErr(op, key string, err error) error {
	if isNotFound(err) {
		return fmt.Errorf("%s %s: %w (%v)", op, key, ErrNotFound, err)
	}
	return fmt.Errorf("%s %s: %w", op, key, err)
}

func isNotFound(err error) bool {
	var nsk *types.NoSuchKey
	var nf *types.NotFound
	if errors.As(err, &nsk) || errors.As(err, &nf) {
		return true
	}
	if isCode(err, "NoSuchKey", "NotFound") {
		return true
	}
	// HEAD has no body, so a 404 carries no code; a missing bucket is a
	// 404 too, but Open checked the bucket.
	return httpStatus(err) == http.StatusNotFound && !isCode(err, "NoSuchBucket")
}

func isCode(err error, codes ...string) bool {
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return false
	}
	for _, c := range codes {
		if ae.ErrorCode() == c {
			return true
		}
	}
	return false
}

func httpStatus(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}
