package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"
)

// Errors a Storage returns, matched with errors.Is. Backends wrap them with
// the operation and key.
var (
	// ErrNotFound: Get, GetRange or Stat of a key that does not exist.
	ErrNotFound = errors.New("remote: object not found")
	// ErrInvalidKey: a key or list prefix that breaks the rules in the
	// package doc (empty, leading "/", ".." segment, ...).
	ErrInvalidKey = errors.New("remote: invalid key")
	// ErrInvalidRange: GetRange with a negative offset or a range that does
	// not lie inside the object.
	ErrInvalidRange = errors.New("remote: invalid range")
	// ErrSizeMismatch: Put's reader ended before the announced size, or a
	// negative size.
	ErrSizeMismatch = errors.New("remote: size mismatch")
	// ErrBucketNotFound: Open or New* found no bucket (or directory) at the
	// configured location and was not asked to create it.
	ErrBucketNotFound = errors.New("remote: bucket not found")
	// ErrClosed: a call after Close.
	ErrClosed = errors.New("remote: storage closed")
)

// ObjectInfo describes one stored object. Key is relative to the backend's
// prefix.
type ObjectInfo struct {
	Key          string
	Size         int64
	LastModified time.Time
}

// Storage is the object store as Strata needs it. Implementations are safe
// for concurrent use. Every method honours ctx: a cancelled context makes the
// call return an error promptly (readers already returned may keep working
// until closed, or fail on their next Read).
type Storage interface {
	// Put stores exactly size bytes read from r under key (atomically: a
	// reader sees the whole object or none). If r ends before size bytes the
	// object is not stored and the error wraps ErrSizeMismatch; bytes of r
	// past size are not read. Put of an existing key replaces it atomically.
	// On error nothing is stored (a backend may leave an invisible partial
	// upload behind, e.g. an S3 multipart upload whose abort failed).
	Put(ctx context.Context, key string, r io.Reader, size int64) error
	// Get opens the whole object. A missing key wraps ErrNotFound. The caller
	// closes the reader; a reader that ends early returns an error (never a
	// silent short object).
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	// GetRange reads length bytes from offset (length < 0: to the end). A
	// range past the end is an error wrapping ErrInvalidRange: it must hold
	// 0 <= offset and offset+length <= size (length >= 0), or offset <= size
	// (length < 0). An empty range inside the object yields an empty reader.
	GetRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error)
	// Stat returns the object's size and modification time. A missing key
	// wraps ErrNotFound.
	Stat(ctx context.Context, key string) (ObjectInfo, error)
	// List returns every object whose key starts with prefix (recursive),
	// sorted by key. "" lists everything under the configured prefix. The
	// listing is not a snapshot: objects put or deleted meanwhile may or may
	// not appear.
	List(ctx context.Context, prefix string) ([]ObjectInfo, error)
	// Delete removes key; a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// Close releases the backend's resources. It is idempotent; later calls
	// fail with ErrClosed.
	Close() error
	// String describes the backend for logs: kind and bucket/prefix or
	// directory, never credentials.
	String() string
}

// CRC32CPutter is a Storage that can store an object with a CRC32C of its
// bytes given by the caller (who read them anyway): the store checks the
// bytes it receives against it before storing anything, and the backend
// computes no checksum of its own (one pass over the body fewer). A
// mismatch fails like a body damaged in transit: an error, and no object.
// Backends may check it only for some objects (the S3 backend: objects
// below its multipart threshold; larger ones go up as Put sends them).
type CRC32CPutter interface {
	PutCRC32C(ctx context.Context, key string, r io.Reader, size int64, crc uint32) error
}

// tmpPrefix starts the names of the FS backend's in-flight files. Keys may
// not contain a segment starting with it, on any backend.
const tmpPrefix = ".strata-tmp-"

// maxKeyLen is S3's limit on a key's length in bytes.
const maxKeyLen = 1024

// ValidateKey reports whether key follows the rules in the package doc. The
// error wraps ErrInvalidKey.
func ValidateKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty key", ErrInvalidKey)
	}
	if len(key) > maxKeyLen {
		return fmt.Errorf("%w: key of %d bytes (max %d)", ErrInvalidKey, len(key), maxKeyLen)
	}
	if strings.HasSuffix(key, "/") {
		return fmt.Errorf("%w: %q ends with /", ErrInvalidKey, key)
	}
	return validatePath(key, false)
}

// validatePrefix checks a List prefix: "" is fine, and the last segment may
// be partial (anything but a NUL byte).
func validatePrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if len(prefix) > maxKeyLen {
		return fmt.Errorf("%w: prefix of %d bytes (max %d)", ErrInvalidKey, len(prefix), maxKeyLen)
	}
	return validatePath(prefix, true)
}

func validatePath(p string, partialLast bool) error {
	if !utf8.ValidString(p) {
		return fmt.Errorf("%w: %q is not valid UTF-8", ErrInvalidKey, p)
	}
	if strings.IndexByte(p, 0) >= 0 {
		return fmt.Errorf("%w: %q contains a NUL byte", ErrInvalidKey, p)
	}
	if strings.HasPrefix(p, "/") {
		return fmt.Errorf("%w: %q starts with /", ErrInvalidKey, p)
	}
	segs := strings.Split(p, "/")
	for i, s := range segs {
		last := i == len(segs)-1
		if last && partialLast {
			// A partial segment may be "" (prefix "a/") or "." ("a/.b" to
			// come); but a whole ".." or one naming tmp files is refused.
			if s == ".." || strings.HasPrefix(s, tmpPrefix) {
				return fmt.Errorf("%w: prefix %q", ErrInvalidKey, p)
			}
			continue
		}
		switch {
		case s == "":
			return fmt.Errorf("%w: %q has an empty segment", ErrInvalidKey, p)
		case s == "." || s == "..":
			return fmt.Errorf("%w: %q has a %q segment", ErrInvalidKey, p, s)
		case strings.HasPrefix(s, tmpPrefix):
			return fmt.Errorf("%w: %q has a segment starting with %q (reserved)", ErrInvalidKey, p, tmpPrefix)
		}
	}
	return nil
}

// checkRangeArgs rejects what no object can satisfy.
func checkRangeArgs(key string, offset int64) error {
	if offset < 0 {
		return fmt.Errorf("get range %s: offset %d: %w", key, offset, ErrInvalidRange)
	}
	return nil
}

// rangeWithin checks [offset, offset+length) against an object of size
// bytes and returns the number of bytes the range holds.
func rangeWithin(key string, offset, length, size int64) (int64, error) {
	if offset < 0 || offset > size {
		return 0, fmt.Errorf("get range %s: offset %d of a %d-byte object: %w", key, offset, size, ErrInvalidRange)
	}
	if length < 0 {
		return size - offset, nil
	}
	if length > size-offset {
		return 0, fmt.Errorf("get range %s: %d bytes at %d of a %d-byte object: %w", key, length, offset, size, ErrInvalidRange)
	}
	return length, nil
}

// sizedReader yields exactly n bytes of r, failing with ErrSizeMismatch if r
// ends first, and checks ctx on every Read.
type sizedReader struct {
	ctx       context.Context
	r         io.Reader
	key       string
	size      int64
	remaining int64
}

func newSizedReader(ctx context.Context, key string, r io.Reader, size int64) *sizedReader {
	return &sizedReader{ctx: ctx, r: r, key: key, size: size, remaining: size}
}

func (s *sizedReader) Read(p []byte) (int, error) {
	if err := s.ctx.Err(); err != nil {
		return 0, err
	}
	if s.remaining <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > s.remaining {
		p = p[:s.remaining]
	}
	n, err := s.r.Read(p)
	s.remaining -= int64(n)
	if err == io.EOF {
		if s.remaining > 0 {
			return n, fmt.Errorf("put %s: reader ended after %d of %d bytes: %w", s.key, s.size-s.remaining, s.size, ErrSizeMismatch)
		}
		return n, io.EOF
	}
	return n, err
}

// ctxReadCloser fails Reads once ctx is done.
type ctxReadCloser struct {
	ctx context.Context
	rc  io.ReadCloser
}

func (c *ctxReadCloser) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.rc.Read(p)
}

func (c *ctxReadCloser) Close() error { return c.rc.Close() }

// lengthCheckReader turns a body that ends before want bytes into
// io.ErrUnexpectedEOF, so a truncated response is never a short object.
type lengthCheckReader struct {
	rc   io.ReadCloser
	key  string
	want int64
	got  int64
}

func (l *lengthCheckReader) Read(p []byte) (int, error) {
	n, err := l.rc.Read(p)
	l.got += int64(n)
	if err == io.EOF && l.got < l.want {
		return n, fmt.Errorf("read %s: body ended after %d of %d bytes: %w", l.key, l.got, l.want, io.ErrUnexpectedEOF)
	}
	return n, err
}

func (l *lengthCheckReader) Close() error { return l.rc.Close() }

// normPrefix turns a configured prefix into "" or "a/b/".
func normPrefix(p string) (string, error) {
	p = strings.Trim(p, "/")
	if p == "" {
		return "", nil
	}
	if err := validatePath(p, false); err != nil {
		return "", fmt.Errorf("configured prefix: %w", err)
	}
	return p + "/", nil
}

// checkRangeReply verifies that a ranged GET's reply (its Content-Range
// header and body length) is the range asked for, so a server that ignores
// or trims a range never yields wrong bytes. It returns the body length.
func checkRangeReply(key string, offset, length int64, contentRange string, contentLength int64) (int64, error) {
	if contentRange == "" {
		// The whole object came back: only right if that is what was asked.
		if offset == 0 && length >= 0 && contentLength == length {
			return contentLength, nil
		}
		return 0, fmt.Errorf("get range %s: server ignored the range (%d bytes at %d) and sent %d bytes", key, length, offset, contentLength)
	}
	var start, end int64
	var total string
	if _, err := fmt.Sscanf(contentRange, "bytes %d-%d/%s", &start, &end, &total); err != nil || end < start {
		return 0, fmt.Errorf("get range %s: malformed Content-Range %q", key, contentRange)
	}
	n := end - start + 1
	switch {
	case start != offset:
		return 0, fmt.Errorf("get range %s: asked for offset %d, server sent %q", key, offset, contentRange)
	case length >= 0 && n != length:
		return 0, fmt.Errorf("get range %s: %d bytes at %d, object holds only %d of them (%s): %w", key, length, offset, n, contentRange, ErrInvalidRange)
	case length < 0 && total != "*" && total != fmt.Sprint(end+1):
		return 0, fmt.Errorf("get range %s: asked for %d to the end, server sent %q", key, offset, contentRange)
	case contentLength >= 0 && contentLength != n:
		return 0, fmt.Errorf("get range %s: Content-Range %q but %d bytes of body", key, contentRange, contentLength)
	}
	return n, nil
}
