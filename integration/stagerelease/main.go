// Command stagerelease enacts the release that RELEASING.md describes on a
// copy of this repository, tagging and publishing nothing, so that the go
// command can be tried on the modules as a module proxy will serve them
// once they are tagged:
//
//	stagerelease DIR
//
// It copies the repository (the folder holding go.work, above the working
// directory) to DIR/tree; zips the library, ops and the command in the
// order the release tags them, at the version they require of each other,
// each after adding to its go.sum the lines for the modules tagged before
// it; serves the zips from a file module proxy in DIR/proxy; and prints the
// go command's environment for them as shell export statements: no
// workspace, that proxy first, a module cache of their own in DIR/modcache.
// DIR must be empty or absent; remove it when done.
//
// .ci/run checks in that environment that each module's go.mod and go.sum
// are tidy as their tags will have them (go mod tidy -diff in DIR/tree);
// the package's test installs the command and builds a program importing
// ops/audit in it, from an empty module.
//
// The exit status is 1 when the release cannot be enacted (the error says
// which go.mod or go.sum is at fault), 2 for a bad command line.
package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

func main() {
	if len(os.Args) != 2 || strings.HasPrefix(os.Args[1], "-") {
		fmt.Fprintln(os.Stderr, "usage: stagerelease DIR")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "stagerelease:", err)
		os.Exit(1)
	}
}

func run(dir string) error {
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
