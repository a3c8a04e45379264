package coordinator

import (
	"bytes"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"

	"go.uber.org/zap"
)

func TestEtcdLoggerForwardsErrorsUntilClosing(t *testing.T) {
	var buf bytes.Buffer
	var closing atomic.Bool
	lg := etcdLogger(slog.New(slog.NewTextHandler(&buf, nil)), &closing).With(zap.String("member", "strata"))

	lg.Info("chatty startup line")
	lg.Warn("a warning")
	lg.Error("disk full", zap.Int("free", 0))
	out := buf.String()
	if strings.Count(out, "\n") != 1 || !strings.Contains(out, `msg="embedded etcd: disk full"`) ||
		!strings.Contains(out, "free=0") || !strings.Contains(out, "member=strata") || !strings.Contains(out, "level=ERROR") {
		t.Fatalf("forwarded log = %q, want exactly the error line with its fields", out)
	}
	closing.Store(true)
	lg.Error("mux: server closed")
	if buf.String() != out {
		t.Fatalf("logged while closing: %q", strings.TrimPrefix(buf.String(), out))
	}
}
