package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/stratabroker/strata/remote"
)

// MinIOVersion is the MinIO server the benchmarks (and tests) run, built
// from the Go module proxy by scripts/install-tools.sh.
const MinIOVersion = "v0.0.0-20260212201848-7aac2a2c5b7c"

// Limit names of the object store (BENCHMARKS.md).
const (
	LimitSPut = "S_put"
	LimitSGet = "S_get"
)

const (
	minioUser   = "strata-bench"
	minioSecret = "strata-bench-secret"
	minioBucket = "strata-bench"
)

// minioBinary finds the MinIO server: $STRATA_MINIO_BIN, else the cached
// build under ~/.cache/strata/bin.
func minioBinary() (string, error) {
	if p := os.Getenv("STRATA_MINIO_BIN"); p != "" {
		return p, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	p := filepath.Join(home, ".cache", "strata", "bin", "minio-"+MinIOVersion)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("no MinIO server at %s (make tools builds it): %w", p, err)
	}
	return p, nil
}

// minioProc is a MinIO server the bench started, with its bucket.
type minioProc struct {
	cmd      *exec.Cmd
	done     chan struct{}
	endpoint string // http://127.0.0.1:port
	dir      string
	store    remote.Storage // the bucket, prefix "limits"
}

// startMinIO starts MinIO on a free 127.0.0.1 port with its data under
// env.DataDir and creates the bench bucket.
func (e *Env) startMinIO(ctx context.Context) (*minioProc, error) {
	bin, err := minioBinary()
	if err != nil {
		return nil, err
	}
	port, cport, err := twoFreePorts()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(e.DataDir, "minio")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(e.DataDir, "minio.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, "server", "--quiet", "--address", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		"--console-address", net.JoinHostPort("127.0.0.1", strconv.Itoa(cport)), dir)
	cmd.Env = append(os.Environ(), "MINIO_ROOT_USER="+minioUser, "MINIO_ROOT_PASSWORD="+minioSecret, "MINIO_BROWSER=off")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start MinIO: %w", err)
	}
	m := &minioProc{cmd: cmd, done: make(chan struct{}), endpoint: "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: dir}
	go func() { cmd.Wait(); close(m.done) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(m.endpoint + "/minio/health/live")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-m.done:
			return nil, errors.New("bench: MinIO exited at start; see minio.log")
		default:
		}
		if time.Now().After(deadline) {
			m.stop()
			return nil, errors.New("bench: MinIO not ready in 60 s")
		}
		time.Sleep(200 * time.Millisecond)
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if m.store, err = remote.Open(sctx, m.url("limits")+"&create_bucket=true"); err != nil {
		m.stop()
		return nil, fmt.Errorf("bench: MinIO bucket: %w", err)
	}
	e.logf("MinIO on %s", m.endpoint)
	return m, nil
}

// url is the broker's --remote for prefix.
func (m *minioProc) url(prefix string) string {
	return fmt.Sprintf("s3://%s/%s?endpoint=%s&path_style=true&region=us-east-1&access_key=%s&secret_key=%s",
		minioBucket, prefix, m.endpoint, minioUser, minioSecret)
}

func (m *minioProc) stop() {
	if m == nil || m.cmd.Process == nil {
		return
	}
	if m.store != nil {
		m.store.Close()
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(10 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.done
	}
	os.RemoveAll(m.dir)
}

// needsMinIO reports whether a selected benchmark reads or writes MinIO.
func needsMinIO(sel []Benchmark) bool {
	for _, b := range sel {
		if b.Limit == LimitSPut || b.Limit == LimitSGet {
			return true
		}
	}
	return false
}

// measureObjectLimits adds S_put and S_get (8 MiB objects, concurrency 4)
// to l, or says why they could not be measured.
func (e *Env) measureObjectLimits(ctx context.Context, l Limits, p LimitParams) {
	if e.minio == nil {
		l[LimitSPut] = Unmeasured("MB/s", "no MinIO: "+e.minioErr)
		l[LimitSGet] = Unmeasured("MB/s", "no MinIO: "+e.minioErr)
		return
	}
	objects := 32
	if p.DFsyncBytes < 64<<20 { // quick runs
		objects = 8
	}
	mctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	put, get, _, _, err := remote.MeasurePutGet(mctx, e.minio.store, 8<<20, objects, 4)
	if err != nil {
		l[LimitSPut] = Unmeasured("MB/s", err.Error())
		l[LimitSGet] = Unmeasured("MB/s", err.Error())
		return
	}
	l[LimitSPut], l[LimitSGet] = Measured(put, "MB/s"), Measured(get, "MB/s")
	e.logf("S_put %.0f MB/s, S_get %.0f MB/s", put, get)
}
