package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
)

// FSConfig configures the filesystem backend.
type FSConfig struct {
	// Dir is the root directory; keys are paths below it.
	Dir string
	// CreateBucket creates Dir (and its parents) if it does not exist.
	// Without it a missing Dir is ErrBucketNotFound.
	CreateBucket bool
}

// FS stores each object as a file under a root directory.
//
// Put writes a temporary file (".strata-tmp-*") in the key's directory,
// fsyncs it, renames it over the key and fsyncs the directory, so a reader
// sees the whole object or none, and a crash leaves at most a temporary file
// (which List never shows). Delete removes the file and then the parent
// directories it left empty, up to the root (best effort).
//
// A key cannot name both an object and a "directory" of other objects: with
// "a/b" stored, Put of "a/b/c" fails (S3 allows it; Strata's layout never
// needs it).
type FS struct {
	root   string
	closed atomic.Bool
}

var _ Storage = (*FS)(nil)

// NewFS opens the directory in cfg.Dir as a Storage.
func NewFS(cfg FSConfig) (*FS, error) {
	if cfg.Dir == "" {
		return nil, fmt.Errorf("remote: fs: no directory given")
	}
	root, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("remote: fs %s: %w", cfg.Dir, err)
	}
	fi, err := os.Stat(root)
	switch {
	case errors.Is(err, fs.ErrNotExist) && cfg.CreateBucket:
		if err := os.MkdirAll(root, 0o755); err != nil {
			return nil, fmt.Errorf("remote: fs: create %s: %w", root, err)
		}
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("remote: fs: directory %s does not exist (create it, or add ?create_bucket=true): %w", root, ErrBucketNotFound)
	case err != nil:
		return nil, fmt.Errorf("remote: fs %s: %w", root, err)
	case !fi.IsDir():
		return nil, fmt.Errorf("remote: fs: %s is not a directory", root)
	}
	return &FS{root: root}, nil
}

// Dir returns the root directory.
func (f *FS) Dir() string { return f.root }

func (f *FS) String() string { return "file://" + f.root }

// Close marks the store closed. It holds no other resources.
func (f *FS) Close() error {
	f.closed.Store(true)
	return nil
}

func (f *FS) check(ctx context.Context, op, key string) error {
	if f.closed.Load() {
		return fmt.Errorf("%s %s: %w", op, key, ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s %s: %w", op, key, err)
	}
	return nil
}

func (f *FS) path(key string) string {
	return filepath.Join(f.root, filepath.FromSlash(key))
}

// Put implements Storage.
func (f *FS) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := f.check(ctx, "put", key); err != nil {
		return err
	}
	if err := ValidateKey(key); err != nil {
		return fmt.Errorf("put: %w", err)
	}
	if size < 0 {
		return fmt.Errorf("put %s: size %d: %w", key, size, ErrSizeMismatch)
	}
	full := f.path(key)
	dir := filepath.Dir(full)

	// A concurrent Delete may prune the directory between creating it and
	// creating the temporary file in it: try again a bounded number of times.
	var tmp *os.File
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if err = f.mkdirAll(dir); err != nil {
			return fmt.Errorf("put %s: %w", key, err)
		}
		tmp, err = os.CreateTemp(dir, tmpPrefix+"*")
		if err == nil || !errors.Is(err, fs.ErrNotExist) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	tmpName := tmp.Name()
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmpName)
		}
	}()

	buf := make([]byte, 256<<10)
	n, err := io.CopyBuffer(tmp, newSizedReader(ctx, key, r, size), buf)
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	if n != size {
		return fmt.Errorf("put %s: wrote %d of %d bytes: %w", key, n, size, ErrSizeMismatch)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("put %s: fsync: %w", key, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("put %s: close: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	if err := os.Rename(tmpName, full); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	done = true
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("put %s: fsync directory: %w", key, err)
	}
	return nil
}

// mkdirAll creates dir and its missing parents below the root, fsyncing each
// parent whose entries changed so the new path survives a crash.
func (f *FS) mkdirAll(dir string) error {
	rel, err := filepath.Rel(f.root, dir)
	if err != nil || rel == "." {
		return err
	}
	cur := f.root
	for _, seg := range strings.Split(rel, string(filepath.Separator)) {
		parent := cur
		cur = filepath.Join(cur, seg)
		err := os.Mkdir(cur, 0o755)
		switch {
		case err == nil:
			if err := syncDir(parent); err != nil {
				return err
			}
		case errors.Is(err, fs.ErrExist):
			fi, serr := os.Stat(cur)
			if serr != nil {
				return serr
			}
			if !fi.IsDir() {
				return fmt.Errorf("%s is an object, cannot hold other objects", cur)
			}
		default:
			return err
		}
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// open opens key's file for reading, mapping a missing file (or a
// directory) to ErrNotFound.
func (f *FS) open(op, key string) (*os.File, os.FileInfo, error) {
	if err := ValidateKey(key); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", op, err)
	}
	file, err := os.Open(f.path(key))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, notDirErr) {
			return nil, nil, fmt.Errorf("%s %s: %w", op, key, ErrNotFound)
		}
		return nil, nil, fmt.Errorf("%s %s: %w", op, key, err)
	}
	fi, err := file.Stat()
	if err != nil {
		file.Close()
		return nil, nil, fmt.Errorf("%s %s: %w", op, key, err)
	}
	if !fi.Mode().IsRegular() {
		file.Close()
		return nil, nil, fmt.Errorf("%s %s: %w", op, key, ErrNotFound)
	}
	return file, fi, nil
}

// Get implements Storage.
func (f *FS) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := f.check(ctx, "get", key); err != nil {
		return nil, err
	}
	file, _, err := f.open("get", key)
	if err != nil {
		return nil, err
	}
	return &ctxReadCloser{ctx: ctx, rc: file}, nil
}

// GetRange implements Storage.
func (f *FS) GetRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if err := f.check(ctx, "get range", key); err != nil {
		return nil, err
	}
	if err := checkRangeArgs(key, offset); err != nil {
		return nil, err
	}
	file, fi, err := f.open("get range", key)
	if err != nil {
		return nil, err
	}
	n, err := rangeWithin(key, offset, length, fi.Size())
	if err != nil {
		file.Close()
		return nil, err
	}
	sec := io.NewSectionReader(file, offset, n)
	return &ctxReadCloser{ctx: ctx, rc: readCloser{Reader: sec, Closer: file}}, nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

// Stat implements Storage.
func (f *FS) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	if err := f.check(ctx, "stat", key); err != nil {
		return ObjectInfo{}, err
	}
	if err := ValidateKey(key); err != nil {
		return ObjectInfo{}, fmt.Errorf("stat: %w", err)
	}
	fi, err := os.Stat(f.path(key))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, notDirErr) {
			return ObjectInfo{}, fmt.Errorf("stat %s: %w", key, ErrNotFound)
		}
		return ObjectInfo{}, fmt.Errorf("stat %s: %w", key, err)
	}
	if !fi.Mode().IsRegular() {
		return ObjectInfo{}, fmt.Errorf("stat %s: %w", key, ErrNotFound)
	}
	return ObjectInfo{Key: key, Size: fi.Size(), LastModified: fi.ModTime()}, nil
}

// List implements Storage.
func (f *FS) List(ctx context.Context, prefix string) ([]ObjectInfo, error) {
	if err := f.check(ctx, "list", prefix); err != nil {
		return nil, err
	}
	if err := validatePrefix(prefix); err != nil {
		return nil, fmt.Errorf("list: %w", err)
	}
	// Walk the deepest directory the prefix names in full, then filter.
	base := f.root
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		base = f.path(prefix[:i])
	}
	var out []ObjectInfo
	visited := 0
	err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, notDirErr) {
				return nil // vanished meanwhile, or the base is an object
			}
			return err
		}
		visited++
		if visited%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if strings.HasPrefix(d.Name(), tmpPrefix) {
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(f.root, p)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if !strings.HasPrefix(key, prefix) {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		out = append(out, ObjectInfo{Key: key, Size: fi.Size(), LastModified: fi.ModTime()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %q: %w", prefix, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// Delete implements Storage.
func (f *FS) Delete(ctx context.Context, key string) error {
	if err := f.check(ctx, "delete", key); err != nil {
		return err
	}
	if err := ValidateKey(key); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	full := f.path(key)
	fi, err := os.Lstat(full)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, notDirErr) {
			return nil
		}
		return fmt.Errorf("delete %s: %w", key, err)
	}
	if fi.IsDir() {
		return nil // a "directory" of other objects, not an object
	}
	if err := os.Remove(full); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	dir := filepath.Dir(full)
	_ = syncDir(dir) // best effort: a resurrected deleted object is harmless
	// Prune the directories this left empty; os.Remove refuses non-empty ones.
	for d := dir; d != f.root && strings.HasPrefix(d, f.root+string(filepath.Separator)); d = filepath.Dir(d) {
		if os.Remove(d) != nil {
			break
		}
	}
	return nil
}

// notDirErr: a path component is a file, so the key cannot exist.
var notDirErr error = syscall.ENOTDIR
