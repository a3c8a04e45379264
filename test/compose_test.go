package test

// docker compose: the images are built here from static binaries (no
// registry), then MinIO + etcd + three brokers come up on free loopback
// ports; a client produces to partitions spread over all three brokers,
// waits for segments to reach the bucket, and reads everything back.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/stratabroker/strata/internal/harness"
	"github.com/stratabroker/strata/remote"
)

func composeRoot(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

func TestDockerCompose(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: builds images and runs docker compose")
	}
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("docker not installed")
	}
	if err := exec.Command("docker", "info").Run(); err != nil {
		t.Skip("docker engine not reachable")
	}
	root := composeRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "bash", filepath.Join(root, "scripts", "build-images.sh"))
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build images: %v\n%s", err, out)
	}
	env := os.Environ()
	var ports []int
	for _, name := range []string{"STRATA_PORT_1", "STRATA_PORT_2", "STRATA_PORT_3", "STRATA_MINIO_PORT"} {
		p, err := harness.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, p)
		env = append(env, name+"="+strconv.Itoa(p))
	}
	project := fmt.Sprintf("strata-test-%d", time.Now().UnixNano()%1_000_000)
	tool := composeTool(t)
	compose := func(args ...string) *exec.Cmd {
		c := exec.CommandContext(ctx, tool[0], append(append(tool[1:], "-p", project, "-f", filepath.Join(root, "docker-compose.yml")), args...)...)
		c.Env = env
		c.Dir = root
		return c
	}
	if out, err := compose("up", "-d").CombinedOutput(); err != nil {
		t.Fatalf("docker compose up: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := compose("logs", "--tail", "40").CombinedOutput()
			t.Logf("compose logs:\n%s", out)
		}
		dctx, dcancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer dcancel()
		c := exec.CommandContext(dctx, tool[0], append(tool[1:], "-p", project, "-f", filepath.Join(root, "docker-compose.yml"), "down", "-v", "--timeout", "10")...)
		c.Env = env
		if out, err := c.CombinedOutput(); err != nil {
			t.Logf("docker compose down: %v\n%s", err, out)
		}
	})
	addr := "127.0.0.1:" + strconv.Itoa(ports[0])
	cl := clientKgo(t, addr)
	adm := kadm.NewClient(cl)
	clientEventually(t, 2*time.Minute, "three brokers in Metadata", func() (bool, string) {
		mctx, c := context.WithTimeout(ctx, 5*time.Second)
		defer c()
		bs, err := adm.ListBrokers(mctx)
		if err != nil {
			return false, err.Error()
		}
		if len(bs) != 3 {
			return false, fmt.Sprintf("%d brokers", len(bs))
		}
		return true, ""
	})
	const topic, parts, n = "compose", 6, 5000
	// RF=3: the brokers replicate to each other over the compose network
	// (--advertise-replicas), while clients use the host's ports.
	resp, err := adm.CreateTopic(ctx, parts, 3, map[string]*string{
		"segment.bytes": kstr("65536"), "local.retention.bytes": kstr("65536"),
	}, topic)
	if err != nil || resp.Err != nil {
		t.Fatalf("create topic: %v %v", err, resp.Err)
	}
	// CreateTopics answers once the topic is in etcd; each broker's
	// metadata follows its watch a moment later.
	clientEventually(t, 30*time.Second, "partitions led by all 3 brokers", func() (bool, string) {
		mctx, c := context.WithTimeout(ctx, 5*time.Second)
		defer c()
		md, err := adm.Metadata(mctx, topic)
		if err != nil {
			return false, err.Error()
		}
		leaders := map[int32]bool{}
		for _, p := range md.Topics[topic].Partitions {
			if p.Err == nil && p.Leader >= 0 {
				leaders[p.Leader] = true
			}
		}
		if n := len(md.Topics[topic].Partitions); n != parts || len(leaders) != 3 {
			return false, fmt.Sprintf("%d partitions led by %d brokers", n, len(leaders))
		}
		return true, ""
	})
	tierProduce(t, addr, topic, parts, n)
	clientEventually(t, time.Minute, "every partition's ISR holds all 3 replicas", func() (bool, string) {
		mctx, c := context.WithTimeout(ctx, 5*time.Second)
		defer c()
		md, err := adm.Metadata(mctx, topic)
		if err != nil {
			return false, err.Error()
		}
		for _, p := range md.Topics[topic].Partitions {
			if len(p.ISR) != 3 {
				return false, fmt.Sprintf("partition %d ISR %v", p.Partition, p.ISR)
			}
		}
		return true, ""
	})
	clientEventually(t, 2*time.Minute, "segments uploaded to MinIO", func() (bool, string) {
		return composeUploaded(t, adm, ctx, topic)
	})
	st, err := remote.Open(ctx, fmt.Sprintf("minio://minioadmin:minioadmin@127.0.0.1:%d/strata/cluster?secure=false", ports[3]))
	if err != nil {
		t.Fatalf("open the compose bucket: %v", err)
	}
	defer st.Close()
	objs, err := st.List(ctx, topic+"-")
	if err != nil || len(objs) < 3*parts {
		t.Fatalf("bucket holds %d objects of %s (err %v), want at least three per partition", len(objs), topic, err)
	}
	tierConsumeKgo(t, addr, topic, parts, n)
}

// composeTool is the Compose command: the docker plugin when installed,
// else the standalone docker-compose (Debian's 1.29).
func composeTool(t *testing.T) []string {
	t.Helper()
	if exec.Command("docker", "compose", "version").Run() == nil {
		return []string{"docker", "compose"}
	}
	if p, err := exec.LookPath("docker-compose"); err == nil {
		return []string{p}
	}
	t.Skip("neither docker compose nor docker-compose installed")
	return nil
}

// composeUploaded checks that every partition has segments in MinIO
// (ListOffsets -5, asked of its leader, is past 0).
func composeUploaded(t *testing.T, adm *kadm.Client, ctx context.Context, topic string) (bool, string) {
	t.Helper()
	md, err := adm.Metadata(ctx, topic)
	if err != nil {
		return false, err.Error()
	}
	for _, p := range md.Topics[topic].Partitions {
		var b kadm.BrokerDetail
		ok := false
		for _, x := range md.Brokers {
			if x.NodeID == p.Leader {
				b, ok = x, true
			}
		}
		if !ok {
			return false, "leader not in metadata"
		}
		off, code := tierListOffset(t, fmt.Sprintf("%s:%d", b.Host, b.Port), topic, p.Partition, -5)
		if code != 0 || off <= 0 {
			return false, fmt.Sprintf("partition %d uploaded up to %d (code %d)", p.Partition, off, code)
		}
	}
	return true, ""
}
