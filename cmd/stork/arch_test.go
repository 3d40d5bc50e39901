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

// maxFuncLines is how long a production function (or function literal)
// of node, share, metadata and cmd/stork may be: a longer one wants to be
// named steps.
const maxFuncLines = 100

// TestFunctionLength keeps every production function in node, share,
// metadata and cmd/stork (sub-packages included) at most maxFuncLines
// lines long, from its func keyword to its closing brace.
func TestFunctionLength(t *testing.T) {
	for _, root := range []string{"../../node", "../../share", "../../metadata", "."} {
		err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
			if err != nil || e.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
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
				start, end := fset.Position(n.Pos()), fset.Position(body.End())
				if lines := end.Line - start.Line + 1; lines > maxFuncLines {
					t.Errorf("%s:%d: %s is %d lines long, want at most %d: split it into named steps", p, start.Line, name, lines, maxFuncLines)
				}
				return true
			})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}
