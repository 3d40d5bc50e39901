package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportDirections keeps the import rules of DESIGN.md true: imports
// point down the table, transfer and share never import each other, and
// nothing imports cmd.
func TestImportDirections(t *testing.T) {
	const mod = "github.com/storkpm/stork/"
	allowed := map[string][]string{
		"metadata":    {},
		"share":       {"metadata"},
		"transfer":    {"metadata"},
		"node":        {"metadata", "share", "transfer"},
		"simulations": {"metadata", "transfer"},
		"cmd":         {"metadata", "share", "transfer", "node", "simulations"},
	}
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", "../../...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	top := func(p string) string {
		p = strings.TrimPrefix(p, mod)
		top, _, _ := strings.Cut(p, "/")
		return top
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg := fields[0]
		from := top(pkg)
		ok, known := allowed[from]
		if !known {
			t.Errorf("package %s is outside the folders of DESIGN.md", pkg)
			continue
		}
		for _, imp := range fields[1:] {
			if !strings.HasPrefix(imp, mod) {
				continue
			}
			to := top(imp)
			if to == from {
				continue
			}
			permitted := false
			for _, a := range ok {
				permitted = permitted || a == to
			}
			if !permitted {
				t.Errorf("%s imports %s: %s may import only %v", pkg, imp, from, ok)
			}
		}
	}
}
