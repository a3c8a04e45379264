package test

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

// TestDependencyRules enforces DESIGN.md's import directions with
// `go list -deps`: kafkaproto, remote and coordinator import nothing else of
// this project (internal/ aside); tiering never imports broker; nothing
// below cmd imports cmd.
func TestDependencyRules(t *testing.T) {
	const mod = "github.com/stratabroker/strata/"
	out, err := exec.Command("go", "list", "-deps", "-json=ImportPath,Deps", mod+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	type pkg struct {
		ImportPath string
		Deps       []string
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	pkgs := map[string][]string{}
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(p.ImportPath, mod) {
			pkgs[strings.TrimPrefix(p.ImportPath, mod)] = p.Deps
		}
	}
	if len(pkgs) < 4 {
		t.Fatalf("go list found only %d project packages", len(pkgs))
	}
	ours := func(deps []string) []string {
		var o []string
		for _, d := range deps {
			if strings.HasPrefix(d, mod) {
				o = append(o, strings.TrimPrefix(d, mod))
			}
		}
		return o
	}
	isolated := []string{"kafkaproto", "remote", "coordinator"}
	for name, deps := range pkgs {
		for _, d := range ours(deps) {
			for _, iso := range isolated {
				if (name == iso || strings.HasPrefix(name, iso+"/")) && !strings.HasPrefix(d, "internal/") && !strings.HasPrefix(d, iso) {
					t.Errorf("%s imports %s: %s may import only internal/", name, d, iso)
				}
			}
			if strings.HasPrefix(name, "tiering") && strings.HasPrefix(d, "broker") {
				t.Errorf("%s imports %s: tiering must not import broker", name, d)
			}
			if strings.HasPrefix(d, "cmd/") {
				t.Errorf("%s imports %s", name, d)
			}
			if !strings.HasPrefix(name, "internal/") && !strings.HasPrefix(name, "cmd/") && !strings.HasPrefix(name, "test") &&
				(d == "internal/harness" || d == "internal/bench") {
				t.Errorf("%s imports test tooling %s", name, d)
			}
		}
	}
}
