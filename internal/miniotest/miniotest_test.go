package miniotest

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
)

func TestStartStopRestart(t *testing.T) {
	dir := t.TempDir()
	s := StartDir(t, dir, "one", "two")
	if !strings.HasPrefix(s.Endpoint, "http://127.0.0.1:") || s.Host != strings.TrimPrefix(s.Endpoint, "http://") {
		t.Fatalf("Endpoint %q, Host %q", s.Endpoint, s.Host)
	}
	if len(s.SecretKey) < 8 || len(s.AccessKey) < 3 {
		t.Fatalf("credentials too short for MinIO: %q / %d chars", s.AccessKey, len(s.SecretKey))
	}
	if !s.Running() {
		t.Fatal("not running after Start")
	}
	resp, err := http.Get(s.Endpoint + "/minio/health/live")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("health: %s", resp.Status)
	}

	c, err := s.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, b := range []string{"one", "two"} {
		if ok, err := c.BucketExists(ctx, b); err != nil || !ok {
			t.Fatalf("bucket %s: exists=%v, %v", b, ok, err)
		}
	}
	if ok, err := c.BucketExists(ctx, "three"); err != nil || ok {
		t.Fatalf("bucket three (never made): exists=%v, %v", ok, err)
	}
	if err := s.MakeBucket("one"); err != nil {
		t.Fatalf("MakeBucket of an existing bucket: %v", err)
	}
	if _, err := c.PutObject(ctx, "one", "a/b", bytes.NewReader([]byte("kept")), 4, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	// The data lives in the directory given.
	if fi, err := os.Stat(filepath.Join(dir, "one")); err != nil || !fi.IsDir() {
		t.Fatalf("bucket directory in %s: %v", dir, err)
	}

	host := s.Host
	s.Stop()
	s.Stop() // idempotent
	if s.Running() {
		t.Fatal("running after Stop")
	}
	client := &http.Client{Timeout: 2 * time.Second}
	if resp, err := client.Get(s.Endpoint + "/minio/health/live"); err == nil {
		resp.Body.Close()
		t.Fatal("MinIO still answers after Stop")
	}

	s.Restart(t)
	if s.Host != host {
		t.Fatalf("Restart moved the server from %s to %s", host, s.Host)
	}
	obj, err := c.GetObject(ctx, "one", "a/b", minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(obj)
	obj.Close()
	if err != nil || string(got) != "kept" {
		t.Fatalf("object after Restart = %q, %v", got, err)
	}
	// Restart of a running server restarts it.
	s.Restart(t)
	if !s.Running() {
		t.Fatal("not running after a second Restart")
	}
	if s.Logs() == "" {
		t.Error("no MinIO output captured")
	}
}

func TestURL(t *testing.T) {
	s := &Server{Endpoint: "http://127.0.0.1:9999", Host: "127.0.0.1:9999", AccessKey: "ak", SecretKey: "s/k+ey"}
	u, err := url.Parse(s.URL("s3", "bkt", "/pre/fix/"))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if u.Scheme != "s3" || u.Host != "bkt" || u.Path != "/pre/fix" || q.Get("endpoint") != s.Endpoint ||
		q.Get("path_style") != "true" || q.Get("access_key") != "ak" || q.Get("secret_key") != "s/k+ey" || q.Get("region") != "us-east-1" {
		t.Fatalf("s3 URL %s", u)
	}
	u, err = url.Parse(s.URL("minio", "bkt", "p"))
	if err != nil {
		t.Fatal(err)
	}
	pw, _ := u.User.Password()
	if u.Scheme != "minio" || u.Host != s.Host || u.Path != "/bkt/p" || u.User.Username() != "ak" || pw != "s/k+ey" || u.Query().Get("secure") != "false" {
		t.Fatalf("minio URL %s", u)
	}
	if got := s.URL("gcs", "b", "p"); got != "" {
		t.Fatalf("URL(unknown scheme) = %q, want empty", got)
	}
}

// The install script and Binary must build and look for the same MinIO.
func TestInstallScriptVersion(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "scripts", "install-tools.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "MINIO_VERSION="+Version+"\n") {
		t.Fatalf("scripts/install-tools.sh does not set MINIO_VERSION=%s", Version)
	}
	if !strings.Contains(string(b), `$HOME/.cache/strata/bin/minio-$MINIO_VERSION`) {
		t.Fatal("scripts/install-tools.sh does not install to $HOME/.cache/strata/bin/minio-$MINIO_VERSION")
	}
	p, err := CachedBinaryPath()
	if err != nil {
		t.Fatal(err)
	}
	home, _ := os.UserHomeDir()
	if p != filepath.Join(home, ".cache", "strata", "bin", "minio-"+Version) {
		t.Fatalf("CachedBinaryPath = %s", p)
	}
}

func TestBinaryFromEnv(t *testing.T) {
	real := Binary(t)
	t.Setenv("STRATA_MINIO_BIN", real)
	if got := Binary(t); got != real {
		t.Fatalf("Binary with STRATA_MINIO_BIN=%s = %s", real, got)
	}
	notExec := filepath.Join(t.TempDir(), "minio")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := executable(notExec); err == nil {
		t.Fatal("a non-executable file passed the executable check")
	}
	if err := executable(filepath.Dir(notExec)); err == nil {
		t.Fatal("a directory passed the executable check")
	}
}

func TestTailBuffer(t *testing.T) {
	b := &tailBuffer{max: 10}
	b.Write([]byte("0123456789"))
	b.Write([]byte("abc"))
	if got := b.String(); got != "3456789abc" {
		t.Fatalf("tail = %q", got)
	}
}
