// Package remote is Strata's object-store boundary: one small Storage
// interface and its backends.
//
//   - FS: a directory on a local or shared file system (the default of
//     `strata serve`, and the backend unit tests use);
//   - S3: Amazon S3 or anything speaking its API, through aws-sdk-go-v2;
//   - MinIO: a MinIO server through minio-go/v7.
//
// Open picks one from a URL (file://, s3://, minio://); cmd/strata is the only
// caller that should. Every backend passes the one acceptance suite in
// remote/remotetest, which also holds a fault-injecting wrapper for tests.
//
// What this package owns: moving whole objects and byte ranges of objects
// between the broker and the store, classifying a missing object as
// ErrNotFound, and refusing keys that could escape the configured prefix
// (ErrInvalidKey). What it must never do: know about segments, offsets,
// topics or etcd (the tiering package does), create a bucket nobody asked
// for, or log a secret.
//
// # Keys
//
// A key is relative to the backend's configured prefix: "/"-separated, valid
// UTF-8, at most 1024 bytes, with no leading or trailing "/", no empty, "." or
// ".." segment, no NUL byte, and no segment starting with ".strata-tmp-" (the
// FS backend's in-flight uploads). The same rules apply to every backend so a
// key that works on one works on all. Objects are meant to be written once
// (see DESIGN.md's invariant 4); a Put of an existing key replaces it
// atomically all the same.
//
// # Concurrency
//
// Every backend is safe for concurrent use. Close is idempotent; calls after
// Close fail with ErrClosed.
package remote
