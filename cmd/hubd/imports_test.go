package main

import (
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/notifyhub/hub/"

// TestImports keeps the dependency direction of the design:
// transport → cluster/hub → mailbox, with cmd/ the only place that wires
// packages together. Our packages are checked through every path (Deps);
// outside packages only as direct imports (Imports), since badger itself
// pulls in net/http, for one.
func TestImports(t *testing.T) {
	forbidden := map[string][]string{
		"mailbox":   {module + "hub", module + "cluster", module + "transport", module + "loadtest", "github.com/hashicorp/raft", "github.com/coder/websocket", "net/http"},
		"hub":       {module + "cluster", module + "transport", module + "loadtest", "github.com/hashicorp/raft", "github.com/coder/websocket"},
		"cluster":   {module + "hub", module + "transport", module + "loadtest", "github.com/coder/websocket"},
		"transport": {module + "cmd", module + "loadtest", module + "cluster/clustertest"},
		"loadtest":  {module + "hub", module + "cluster", module + "mailbox", module + "transport"},
	}
	for dir, bad := range forbidden {
		if _, err := os.Stat("../../" + dir); err != nil {
			continue // not written yet
		}
		for _, p := range listPackages(t, "../../"+dir+"/...") {
			for _, b := range bad {
				for _, dep := range depsToCheck(p, b) {
					if dep == b || strings.HasPrefix(dep, b+"/") {
						t.Errorf("%s depends on %s, which the design forbids", p.ImportPath, dep)
					}
				}
			}
		}
	}
}

// TestNoTestingInHubd: no package of ours that hubd links imports "testing".
// (hashicorp/raft's own testing.go does; that is not ours to change.)
func TestNoTestingInHubd(t *testing.T) {
	for _, p := range listPackages(t, "-deps", ".") {
		if strings.HasPrefix(p.ImportPath, module) {
			for _, imp := range p.Imports {
				if imp == "testing" {
					t.Errorf("%s, linked into hubd, imports testing", p.ImportPath)
				}
			}
		}
	}
}

type goPackage struct {
	ImportPath string
	Imports    []string
	Deps       []string
	Error      *struct{ Err string }
}

func depsToCheck(p goPackage, forbidden string) []string {
	if strings.HasPrefix(forbidden, module) {
		return p.Deps
	}
	return p.Imports
}

// listPackages runs go list -json with args; a pattern that matches nothing
// (a package not written yet) gives none.
func listPackages(t *testing.T, args ...string) []goPackage {
	t.Helper()
	out, err := exec.Command("go", append([]string{"list", "-e", "-json"}, args...)...).Output()
	if err != nil {
		t.Fatalf("go list %v: %v", args, err)
	}
	var pkgs []goPackage
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p goPackage
		if err := dec.Decode(&p); err == io.EOF {
			return pkgs
		} else if err != nil {
			t.Fatal(err)
		}
		if p.Error != nil {
			if strings.Contains(p.Error.Err, "matched no packages") || strings.Contains(p.Error.Err, "no Go files") {
				continue
			}
			t.Fatalf("go list %s: %s", p.ImportPath, p.Error.Err)
		}
		pkgs = append(pkgs, p)
	}
}
