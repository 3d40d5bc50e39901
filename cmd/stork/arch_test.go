package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const modPath = "github.com/storkpm/stork/"

// importRules are the import rules of DESIGN.md: which parts of the tree a
// package may import. A package belongs to the longest key that is a
// prefix of its path; a rule that names a folder allows every package
// below it.
var importRules = map[string][]string{
	"metadata":              {},
	"share":                 {"metadata"},
	"transfer/policy":       {},
	"transfer/swarm":        {"metadata", "transfer/policy"},
	"transfer/origin":       {"metadata"},
	"transfer":              {},
	"transfer/transfertest": {"metadata", "transfer"},
	"node":                  {"metadata", "share", "transfer"},
	"simulations":           {"metadata", "transfer/policy"},
	"cmd":                   {"metadata", "share", "transfer", "node", "simulations"},
}

// ruleOf returns the key of importRules that p (relative to the module)
// belongs to, "" if none.
func ruleOf(p string) string {
	best := ""
	for k := range importRules {
		if (p == k || strings.HasPrefix(p, k+"/")) && len(k) > len(best) {
			best = k
		}
	}
	return best
}

// TestImportDirections keeps the import rules of DESIGN.md true: imports
// point down the table, transfer and share never import each other, the
// swarm imports the policy and the origin neither (node joins them), the
// policy imports nothing of the project, the simulator only the policy
// and metadata,
// and nothing imports cmd.
func TestImportDirections(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", "../../...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg := strings.TrimPrefix(fields[0], modPath)
		from := ruleOf(pkg)
		if from == "" {
			t.Errorf("package %s is outside the folders of DESIGN.md", fields[0])
			continue
		}
		for _, imp := range fields[1:] {
			if !strings.HasPrefix(imp, modPath) {
				continue
			}
			to := strings.TrimPrefix(imp, modPath)
			if ruleOf(to) == from {
				continue
			}
			permitted := false
			for _, a := range importRules[from] {
				permitted = permitted || to == a || strings.HasPrefix(to, a+"/")
			}
			if !permitted {
				t.Errorf("%s imports %s: %s may import only %v", fields[0], imp, from, importRules[from])
			}
		}
	}
}

// TestPolicyDependencies keeps the policy and the simulator light: what
// they compile (go list -deps) holds none of the daemon's heavy
// dependencies, so that the simulator builds without them.
func TestPolicyDependencies(t *testing.T) {
	forbidden := []string{
		"github.com/theupdateframework/", "github.com/sigstore/", "github.com/secure-systems-lab/",
		"github.com/prometheus/", "github.com/libp2p/", "github.com/klauspost/",
		"github.com/dgraph-io/", modPath + "share", modPath + "node",
	}
	for _, pkg := range []string{"../../transfer/policy", "../../simulations"} {
		out, err := exec.Command("go", "list", "-deps", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, f := range forbidden {
				if strings.HasPrefix(dep, f) {
					t.Errorf("%s depends on %s", pkg, dep)
				}
			}
		}
	}
}

// maxFuncLines is the longest a production function, or function
// literal, may be (STYLE.md 16: a longer one wants to be named steps).
const maxFuncLines = 100

// funcLengthRoots are the folders (sub-packages included) whose
// production functions TestFunctionLength measures.
var funcLengthRoots = []string{"../../transfer", "../../simulations", "../../node", "../../share", "../../metadata", "."}

// TestFunctionLength fails for a production function or function literal
// (not in a _test.go file) longer than maxFuncLines lines, from func to
// closing brace.
func TestFunctionLength(t *testing.T) {
	for _, root := range funcLengthRoots {
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
				return err
			}
			fset := token.NewFileSet()
			f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
			if err != nil {
				return err
			}
			ast.Inspect(f, func(n ast.Node) bool {
				var body *ast.BlockStmt
				name := "func literal"
				switch x := n.(type) {
				case *ast.FuncDecl:
					body, name = x.Body, x.Name.Name
				case *ast.FuncLit:
					body = x.Body
				}
				if body == nil {
					return true
				}
				from, to := fset.Position(n.Pos()), fset.Position(body.Rbrace)
				if lines := to.Line - from.Line + 1; lines > maxFuncLines {
					t.Errorf("%s:%d: %s is %d lines long, want at most %d: split it into named steps", p, from.Line, name, lines, maxFuncLines)
				}
				return true
			})
			return nil
		})
		if err != nil {
			t.Fatalf("walk %s: %v", root, err)
		}
	}
}
