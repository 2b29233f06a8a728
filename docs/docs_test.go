// Package docs holds catherd's documents beyond the README; its test keeps
// the repository's documents and comments from pointing at files that are
// not in it.
package docs

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// citation matches what reads as a reference to a document of the
// repository: a file name in capitals (README.md, BENCHMARKS.md) or a path
// under docs/.
var citation = regexp.MustCompile(`\b(?:docs/[A-Za-z0-9_./-]+[A-Za-z0-9]|[A-Z][A-Z0-9_-]*\.md)\b`)

// Every document cited in a Markdown file or a Go source exists in the
// repository, so a reader never looks for a file they do not have.
func TestCitedDocumentsExist(t *testing.T) {
	root := repoRoot(t)
	out, err := exec.Command("git", "-C", root, "ls-files").Output()
	if err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	tracked := map[string]bool{}
	for _, f := range strings.Fields(string(out)) {
		tracked[f] = true
		for d := filepath.Dir(f); d != "."; d = filepath.Dir(d) {
			tracked[d] = true
		}
	}
	for f := range tracked {
		if !strings.HasSuffix(f, ".md") && !strings.HasSuffix(f, ".go") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			continue // a directory, or deleted in the work tree
		}
		for _, ref := range citation.FindAllString(string(b), -1) {
			if !tracked[ref] && !tracked[filepath.Join(filepath.Dir(f), ref)] {
				t.Errorf("%s cites %s, which is not in the repository", f, ref)
			}
		}
	}
}

// Outputs of runs are not committed.
func TestNoRunOutputsCommitted(t *testing.T) {
	root := repoRoot(t)
	for _, f := range []string{"out.txt", "soak.txt"} {
		if out, _ := exec.Command("git", "-C", root, "ls-files", "--", f).Output(); len(out) > 0 {
			t.Errorf("%s is committed: it is the output of a run (see .gitignore)", f)
		}
	}
}

// The layers of ARCHITECTURE.md are the packages' imports: every product
// package is in one row, and imports catherd packages of lower rows only.
func TestDependenciesPointDown(t *testing.T) {
	root := repoRoot(t)
	doc, err := os.ReadFile(filepath.Join(root, "docs/ARCHITECTURE.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, diagram, ok := strings.Cut(string(doc), "Dependencies point down")
	if !ok {
		t.Fatal("ARCHITECTURE.md has no dependency diagram")
	}
	_, diagram, _ = strings.Cut(diagram, "```\n")
	diagram, _, _ = strings.Cut(diagram, "```")
	const module = "github.com/catherd/catherd/"
	row := map[string]int{} // package path -> its row, top first
	for i, line := range strings.Split(strings.TrimSpace(diagram), "\n") {
		for _, name := range regexp.MustCompile(`\s{2,}`).Split(line, -1) {
			for _, dir := range []string{name, "userspace/" + name} {
				if st, err := os.Stat(filepath.Join(root, dir)); err == nil && st.IsDir() {
					row[module+dir] = i
				}
			}
		}
	}
	list := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "./...")
	list.Dir = root
	out, err := list.Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	checked := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		pkg := f[0]
		if !strings.HasPrefix(pkg, module) || regexp.MustCompile(`/(scripts|docs)(/|$)|test$`).MatchString(pkg) {
			continue // tools, documents and test helpers
		}
		r, ok := row[pkg]
		if !ok {
			t.Errorf("%s is in no row of the diagram", pkg)
			continue
		}
		checked++
		for _, imp := range f[1:] {
			if ir, mine := row[imp]; strings.HasPrefix(imp, module) && (!mine || ir <= r) {
				t.Errorf("%s (row %d) imports %s, which is not in a row below it", pkg, r+1, imp)
			}
		}
	}
	if checked < 20 {
		t.Errorf("%d packages checked; the diagram or go list is not what this test reads", checked)
	}
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}
