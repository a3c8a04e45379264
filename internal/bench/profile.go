package bench

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// profileEnv names a directory: when set, a repetition of P1, C2, U1 or M1 saves a
// CPU profile of its broker (/debug/pprof/profile on the metrics listener)
// there, for looking at where the time of a figure goes. Off by default:
// profiling costs a few per cent.
const profileEnv = "STRATA_BENCH_PROFILE"

// startProfile begins a CPU profile of the broker whose metrics listener is
// metricsAddr, and returns the function that ends it (once; later calls do nothing). A no-op unless
// STRATA_BENCH_PROFILE is set. Failures are logged, never fatal: a profile
// is a diagnostic.
//
// net/http/pprof writes nothing for a cancelled request, so the profile is
// taken in 2 s slices, <dir>/<name>-<i>.pprof (go tool pprof merges them),
// until stop, which waits for the slice under way.
func (e *Env) startProfile(metricsAddr, name string) (stop func()) {
	dir := os.Getenv(profileEnv)
	if dir == "" {
		return func() {}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		e.logf("profile %s: %v", name, err)
		return func() {}
	}
	stopping := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stopping:
				return
			default:
			}
			resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=2", metricsAddr))
			if err != nil {
				e.logf("profile %s: %v", name, err)
				return
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK {
				e.logf("profile %s: status %d, %v", name, resp.StatusCode, err)
				return
			}
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s-%03d.pprof", name, i)), b, 0o644); err != nil {
				e.logf("profile %s: %v", name, err)
				return
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(stopping)
			select {
			case <-done:
			case <-time.After(5 * time.Second):
			}
		})
	}
}
