// Command stagerelease enacts the release that RELEASING.md describes on a
// copy of this repository, tagging and publishing nothing, so that the go
// command can be tried on the modules as a module proxy will serve them
// once they are tagged:
//
//	stagerelease DIR
//	stagerelease -in MODULE COMMAND [ARG...]
//
// With DIR, it copies the repository (the folder holding go.work, above
// the working directory) to DIR/tree; zips the library, ops and the
// command in the order the release tags them, at the version they require
// of each other, each after adding to its go.sum the lines for the modules
// tagged before it; serves the zips from a file module proxy in DIR/proxy;
// and prints the go command's environment for them as shell export
// statements: no workspace, that proxy first, a module cache of their own
// in DIR/modcache. DIR must be empty or absent; remove it when done.
// .ci/run checks in that environment that each module's go.mod and go.sum
// are tidy as their tags will have them (go mod tidy -diff in DIR/tree);
// the package's test installs the command and builds a program importing
// ops/audit in it, from an empty module.
//
// With -in, it stages the release in a temporary folder and runs COMMAND
// in the folder MODULE of the repository (ops or cmd/keepalive) in that
// environment, then takes out of the module's go.sum the lines the command
// added for the staged versions of its siblings, which only the release
// writes; it removes the folder when done. That is how go get and go mod
// tidy work on those modules, whose siblings no proxy serves before the
// tags and which go.work cannot join for go mod tidy:
//
//	stagerelease -in ops go get github.com/cilium/ebpf@v0.22.0
//	stagerelease -in cmd/keepalive go mod tidy
//
// The exit status is 1 when the release cannot be enacted (the error says
// which go.mod, go.sum or go.work is at fault) or COMMAND fails, 2 for a
// bad command line.
package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

const usage = `usage: stagerelease DIR
       stagerelease -in MODULE COMMAND [ARG...]`

func main() {
	var err error
	switch {
	case len(os.Args) == 2 && !strings.HasPrefix(os.Args[1], "-"):
		err = stageIn(os.Args[1])
	case len(os.Args) >= 4 && os.Args[1] == "-in":
		err = runIn(os.Args[2], os.Args[3:])
	default:
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "stagerelease:", err)
		os.Exit(1)
	}
}

// stageIn stages the release in dir and prints the environment.
func stageIn(dir string) error {
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return fmt.Errorf("%s is not empty", dir)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	repo, err := findRepo()
	if err != nil {
		return err
	}
	s, err := makeStage(repo, dir)
	if err != nil {
		return err
	}
	for _, kv := range s.env {
		k, v, _ := strings.Cut(kv, "=")
		fmt.Printf("export %s='%s'\n", k, strings.ReplaceAll(v, "'", `'\''`))
	}
	return nil
}

// runIn runs args in the folder mod of the repository with the release
// staged, and takes the staged siblings' lines it added out of go.sum.
func runIn(mod string, args []string) error {
	mod = filepath.ToSlash(filepath.Clean(mod))
	if !slices.ContainsFunc(released[1:], func(m releasedModule) bool { return m.dir == mod }) {
		return fmt.Errorf("-in %s: want %s or %s, the modules that require a sibling", mod, released[1].dir, released[2].dir)
	}
	repo, err := findRepo()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "stagerelease-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	s, err := makeStage(repo, dir)
	if err != nil {
		return err
	}

	sumFile := filepath.Join(repo, filepath.FromSlash(mod), "go.sum")
	before, err := os.ReadFile(sumFile)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = filepath.Dir(sumFile)
	cmd.Env = append(os.Environ(), s.env...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	runErr := cmd.Run()

	after, err := os.ReadFile(sumFile)
	if errors.Is(err, fs.ErrNotExist) {
		return runErr
	} else if err != nil {
		return err
	}
	var staged []string
	for _, sums := range s.sums {
		staged = append(staged, sums[:]...)
	}
	had := strings.Split(string(before), "\n")
	var kept strings.Builder
	for line := range strings.Lines(string(after)) {
		l := strings.TrimSuffix(line, "\n")
		if slices.Contains(staged, l) && !slices.Contains(had, l) {
			continue
		}
		kept.WriteString(line)
	}
	if err := os.WriteFile(sumFile, []byte(kept.String()), 0o644); err != nil {
		return err
	}
	return runErr
}

// findRepo returns the folder holding go.work, from the working directory
// up.
func findRepo() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.work in the working directory or above: run it in a clone of the repository")
		}
		dir = parent
	}
}
