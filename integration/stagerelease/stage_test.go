package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/mod/modfile"
)

// TestStageRefuses changes the go.mod, go.sum and go.work files of this
// tree as a careless edit would, in a copy that holds only them, and
// checks that makeStage refuses each change and names the file at fault.
func TestStageRefuses(t *testing.T) {
	repo := filepath.Join("..", "..")
	root, ops, cmd := released[0], released[1], released[2]
	// The version this tree's release tags, for the edits to move away
	// from.
	f, err := readGoMod(repo, ops)
	require.NoError(t, err)
	var v string
	for _, r := range f.Require {
		if r.Mod.Path == root.path {
			v = r.Mod.Version
		}
	}
	require.NotEmpty(t, v, "ops/go.mod requires no version of %s", root.path)

	tests := []struct {
		name string
		file string // the file edited, relative to the repository, which the error names
		edit func(t *testing.T, data []byte) []byte
		want string
	}{
		{"replace in the command", "cmd/keepalive/go.mod", editMod(func(f *modfile.File) error {
			return f.AddReplace(root.path, "", "../..", "")
		}), "replace github.com/keepalive-go/keepalive => ../..: a released go.mod carries no replace directives"},
		{"replace in ops", "ops/go.mod", editMod(func(f *modfile.File) error {
			return f.AddReplace(root.path, "", "../", "")
		}), "replace github.com/keepalive-go/keepalive => ../: a released go.mod carries no replace directives"},
		{"exclude in ops", "ops/go.mod", editMod(func(f *modfile.File) error {
			return f.AddExclude("golang.org/x/sys", "v0.1.0")
		}), "exclude golang.org/x/sys v0.1.0: a released go.mod carries no exclude directives"},
		{"the placeholder of a replaced module", "ops/go.mod", editMod(func(f *modfile.File) error {
			return f.AddRequire(root.path, "v0.0.0-00010101000000-000000000000")
		}), "require github.com/keepalive-go/keepalive v0.0.0-00010101000000-000000000000: v0.0.0-00010101000000-000000000000 is a pseudo-version"},
		{"a version the release does not tag", "cmd/keepalive/go.mod", editMod(func(f *modfile.File) error {
			return f.AddRequire(ops.path, "v0.99.0")
		}), "require github.com/keepalive-go/keepalive/ops v0.99.0: the release tags every module " + v},
		{"a major version the path does not carry", "ops/go.mod", editMod(func(f *modfile.File) error {
			return f.AddRequire(root.path, "v2.0.0")
		}), `require github.com/keepalive-go/keepalive: version "v2.0.0" invalid: should be v0 or v1, not v2`},
		{"ops requiring the command", "ops/go.mod", editMod(func(f *modfile.File) error {
			return f.AddRequire(cmd.path, v)
		}), "require github.com/keepalive-go/keepalive/cmd/keepalive " + v + ": a module requires only the modules tagged before it"},
		{"go.work without the replacement", "go.work", func(t *testing.T, data []byte) []byte {
			w, err := modfile.ParseWork("go.work", data, nil)
			require.NoError(t, err)
			require.NoError(t, w.DropReplace(ops.path, v))
			return modfile.Format(w.Syntax)
		}, "want replace github.com/keepalive-go/keepalive/ops " + v + " => ./ops"},
		{"go.sum of ops from other content", "ops/go.sum", func(t *testing.T, data []byte) []byte {
			return append(data, root.path+" "+v+" h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"...)
		}, "github.com/keepalive-go/keepalive " + v + " h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=, but this tree's is h1:"},
		{"unchanged", "", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := t.TempDir()
			for _, name := range []string{"go.work", "go.mod", "go.sum", "ops/go.mod", "ops/go.sum", "cmd/keepalive/go.mod", "cmd/keepalive/go.sum"} {
				data, err := os.ReadFile(filepath.Join(repo, name))
				require.NoError(t, err)
				if name == tt.file {
					data = tt.edit(t, data)
				}
				require.NoError(t, os.MkdirAll(filepath.Join(fake, filepath.Dir(name)), 0o755))
				require.NoError(t, os.WriteFile(filepath.Join(fake, name), data, 0o644))
			}
			s, err := makeStage(fake, t.TempDir())
			if tt.edit == nil {
				require.NoError(t, err)
				assert.Equal(t, v, s.version)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.file+":")
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

// editMod returns an edit of a go.mod file through modfile.
func editMod(edit func(*modfile.File) error) func(*testing.T, []byte) []byte {
	return func(t *testing.T, data []byte) []byte {
		f, err := modfile.Parse("go.mod", data, nil)
		require.NoError(t, err)
		require.NoError(t, edit(f))
		out, err := f.Format()
		require.NoError(t, err)
		return out
	}
}

// TestRunIn runs go mod tidy in ops through stagerelease -in, in a copy of
// this tree: the go command adds the lines of the staged library to
// ops/go.sum, and runIn takes them out again, so that a tidy module comes
// out unchanged.
func TestRunIn(t *testing.T) {
	repo := t.TempDir()
	require.NoError(t, os.Remove(repo))
	require.NoError(t, copyTree(filepath.Join("..", ".."), repo))
	read := func(name string) string {
		data, err := os.ReadFile(filepath.Join(repo, name))
		require.NoError(t, err)
		return string(data)
	}
	mod, sum := read("ops/go.mod"), read("ops/go.sum")
	t.Chdir(filepath.Join(repo, "integration"))

	require.NoError(t, runIn("ops", []string{"go", "mod", "tidy"}))
	assert.Equal(t, mod, read("ops/go.mod"))
	assert.Equal(t, sum, read("ops/go.sum"))

	err := runIn("integration", []string{"go", "mod", "tidy"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "-in integration: want ops or cmd/keepalive")
}
