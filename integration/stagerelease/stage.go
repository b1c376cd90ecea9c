package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/dirhash"
	modzip "golang.org/x/mod/zip"
)

// releasedModule is a module the release tags: its directory in the
// repository and its path.
type releasedModule struct{ dir, path string }

// released holds the modules a release tags, in the order it tags them
// (RELEASING.md): each may require only the modules before it.
var released = []releasedModule{
	{".", "github.com/keepalive-go/keepalive"},
	{"ops", "github.com/keepalive-go/keepalive/ops"},
	{"cmd/keepalive", "github.com/keepalive-go/keepalive/cmd/keepalive"},
}

// stage is a release enacted on a copy of the repository.
type stage struct {
	// version is the version the release tags every module with: the one
	// the modules require of each other.
	version string

	// tree is the copy of the repository as the last tag has it: each
	// module's go.sum holds the lines its release step added.
	tree string

	// proxy is a file module proxy (GOPROXY=file://...) serving each
	// module at version, zipped as the module proxy zips a tag.
	proxy string

	// modCache is the module cache the go command must use with proxy:
	// a version, once in a module cache, is never fetched again, so the
	// staged versions must not reach the shared cache.
	modCache string

	// sums holds, by module path, the two go.sum lines of the module at
	// version: the zip's hash and the go.mod file's.
	sums map[string][2]string

	// added holds, by module directory, the go.sum lines the module's
	// release step added for the modules tagged before it.
	added map[string][]string

	// env is the go command's environment for the staged modules, one
	// KEY=value each; see [stage.environ].
	env []string
}

// makeStage enacts the release of the repository at repo in dir, which
// must be empty: it copies the repository to dir/tree, then for each
// released module in turn adds to its go.sum the lines for the modules
// tagged before it (as `go mod tidy` does once their tags are public),
// zips it as the module proxy zips a tag and serves it from dir/proxy.
//
// It refuses, naming the file at fault: a go.mod that go install would
// refuse (replace or exclude directives); a requirement of a sibling at a
// pseudo-version, at anything but the one release version, or of a module
// tagged later; a go.work that does not replace the required versions with
// their folders; a go.sum line for the release's version of a sibling that
// is not this tree's.
func makeStage(repo, dir string) (*stage, error) {
	s := &stage{
		tree:     filepath.Join(dir, "tree"),
		proxy:    filepath.Join(dir, "proxy"),
		modCache: filepath.Join(dir, "modcache"),
		sums:     map[string][2]string{},
		added:    map[string][]string{},
	}
	mods := make([]*modfile.File, len(released))
	for i, m := range released {
		f, err := readGoMod(repo, m)
		if err != nil {
			return nil, err
		}
		mods[i] = f
	}
	v, err := releaseVersion(mods)
	if err != nil {
		return nil, err
	}
	s.version = v
	if err := checkWork(repo, v); err != nil {
		return nil, err
	}
	if err := copyTree(repo, s.tree); err != nil {
		return nil, err
	}
	for i, m := range released {
		mdir := filepath.Join(s.tree, m.dir)
		if i > 0 {
			if err := addLicense(s.tree, mdir); err != nil {
				return nil, err
			}
			var lines []string
			for _, sib := range released[:i] {
				if requires(mods[i], sib.path) {
					sums := s.sums[sib.path]
					lines = append(lines, sums[:]...)
				}
			}
			if err := addSums(filepath.Join(mdir, "go.sum"), path.Join(m.dir, "go.sum"), lines); err != nil {
				return nil, err
			}
			s.added[m.dir] = lines
		}
		sums, err := s.serve(m.path, mdir)
		if err != nil {
			return nil, err
		}
		s.sums[m.path] = sums
	}
	if err := s.environ(); err != nil {
		return nil, err
	}
	return s, nil
}

// readGoMod reads the go.mod file of m in the repository at repo, and
// refuses what would make go install refuse the released module. Errors
// name the file relative to repo.
func readGoMod(repo string, m releasedModule) (*modfile.File, error) {
	name := path.Join(m.dir, "go.mod")
	data, err := os.ReadFile(filepath.Join(repo, name))
	if err != nil {
		return nil, err
	}
	f, err := modfile.Parse(name, data, nil)
	if err != nil {
		return nil, err
	}
	if f.Module == nil || f.Module.Mod.Path != m.path {
		return nil, fmt.Errorf("%s: want module %s", name, m.path)
	}
	// go install refuses a module whose go.mod has either; and an importer
	// ignores them, so the released module would be built from something
	// its own tests never saw. go.work joins the modules in a clone.
	if len(f.Replace) > 0 {
		r := f.Replace[0]
		return nil, fmt.Errorf("%s:%d: replace %s => %s: a released go.mod carries no replace directives (go install refuses the module); go.work joins the modules in a clone",
			name, r.Syntax.Start.Line, r.Old.Path, r.New.Path)
	}
	if len(f.Exclude) > 0 {
		x := f.Exclude[0]
		return nil, fmt.Errorf("%s:%d: exclude %s %s: a released go.mod carries no exclude directives (go install refuses the module)",
			name, x.Syntax.Start.Line, x.Mod.Path, x.Mod.Version)
	}
	return f, nil
}

// releaseVersion returns the version the release tags: the one that the
// second module requires of the first, which every requirement of one
// released module by another must name, since the three are tagged
// together.
func releaseVersion(mods []*modfile.File) (string, error) {
	var v string
	for i, f := range mods {
		for _, r := range f.Require {
			j := slices.IndexFunc(released, func(m releasedModule) bool { return m.path == r.Mod.Path })
			if j < 0 {
				continue
			}
			where := fmt.Sprintf("%s:%d: require %s %s", path.Join(released[i].dir, "go.mod"), r.Syntax.Start.Line, r.Mod.Path, r.Mod.Version)
			if j >= i {
				return "", fmt.Errorf("%s: a module requires only the modules tagged before it (%s, then %s, then %s)",
					where, released[0].path, released[1].path, released[2].path)
			}
			if v == "" {
				if err := checkVersion(r.Mod); err != nil {
					return "", fmt.Errorf("%s: %v", where, err)
				}
				v = r.Mod.Version
			} else if r.Mod.Version != v {
				return "", fmt.Errorf("%s: the release tags every module %s (%s requires %s %s); require that version",
					where, v, released[1].path, released[0].path, v)
			}
		}
	}
	if v == "" || !requires(mods[1], released[0].path) {
		return "", fmt.Errorf("%s: does not require %s at the version the release tags", path.Join(released[1].dir, "go.mod"), released[0].path)
	}
	return v, nil
}

// checkWork checks that the go.work file of the repository at repo
// replaces version v of each module that another requires (all but the
// last) with the module's directory, and no other version of them. A
// module in the workspace stands in only for itself, not for a version of
// it that another requires: without the replacement the go command would
// fetch that version's go.mod from the proxy, which has none before the
// tag.
func checkWork(repo, v string) error {
	const name = "go.work"
	data, err := os.ReadFile(filepath.Join(repo, name))
	if err != nil {
		return err
	}
	w, err := modfile.ParseWork(name, data, nil)
	if err != nil {
		return err
	}
	for _, m := range released[:len(released)-1] {
		want := "./" + m.dir
		if m.dir == "." {
			want = "./"
		}
		if !slices.ContainsFunc(w.Replace, func(r *modfile.Replace) bool {
			return r.Old == module.Version{Path: m.path, Version: v} && r.New.Version == "" && path.Clean(r.New.Path) == path.Clean(want)
		}) {
			return fmt.Errorf("%s: want replace %s %s => %s, so that the workspace builds the directory where a module requires that version", name, m.path, v, want)
		}
	}
	for _, r := range w.Replace {
		switch {
		case !slices.ContainsFunc(released, func(m releasedModule) bool { return m.path == r.Old.Path }):
		case r.Old.Version == "":
			return fmt.Errorf("%s:%d: replace %s: name the version (%s): the go command refuses to replace every version of a workspace module", name, r.Syntax.Start.Line, r.Old.Path, v)
		case r.Old.Version != v:
			return fmt.Errorf("%s:%d: replace %s %s: no module requires that version; the release tags %s", name, r.Syntax.Start.Line, r.Old.Path, r.Old.Version, v)
		}
	}
	return nil
}

// checkVersion says why m.Version cannot be tagged. modfile.Parse has
// already refused a version that is not canonical semver or whose major
// version the module path does not carry.
func checkVersion(m module.Version) error {
	if module.IsPseudoVersion(m.Version) {
		return fmt.Errorf("%s is a pseudo-version, not a version a release can tag", m.Version)
	}
	return nil
}

func requires(f *modfile.File, path string) bool {
	return slices.ContainsFunc(f.Require, func(r *modfile.Require) bool { return r.Mod.Path == path })
}

// copyTree copies the regular files of the repository at repo to dst,
// leaving out version control metadata.
func copyTree(repo, dst string) error {
	return filepath.WalkDir(repo, func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(repo, name)
		if err != nil {
			return err
		}
		switch {
		case d.Name() == ".git":
			// A directory in a clone, a file in a worktree.
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		case d.IsDir():
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		case !d.Type().IsRegular():
			// A module zip holds regular files only.
			return nil
		}
		return copyFile(name, filepath.Join(dst, rel))
	})
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	info, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, info.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// addLicense copies the repository's LICENSE into a module in a
// subdirectory that has none, as the go command does when it zips such a
// module from a tag.
func addLicense(tree, dir string) error {
	src := filepath.Join(tree, "LICENSE")
	if _, err := os.Stat(filepath.Join(dir, "LICENSE")); err == nil {
		return nil
	}
	if _, err := os.Stat(src); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return copyFile(src, filepath.Join(dir, "LICENSE"))
}

// addSums adds lines to the go.sum file at name (shown as rel), in the
// order the go command writes them. A line already there for the same
// module version must be the same line: a different hash means that
// version was tagged from other content, and the requirement must move
// to the next version (RELEASING.md).
func addSums(name, rel string, lines []string) error {
	data, err := os.ReadFile(name)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	// By module version (ending in /go.mod for a go.mod file's hash), the
	// hashes go.sum holds.
	hashes := map[module.Version][]string{}
	add := func(line string, fromRelease bool) error {
		f := strings.Fields(line)
		if len(f) == 0 {
			return nil
		}
		if len(f) != 3 {
			return fmt.Errorf("%s: malformed line %q", rel, line)
		}
		m := module.Version{Path: f[0], Version: f[1]}
		if have := hashes[m]; fromRelease && len(have) > 0 && !slices.Contains(have, f[2]) {
			return fmt.Errorf("%s: %s %s %s, but this tree's is %s: that version was tagged from other content; require the next version (RELEASING.md)",
				rel, m.Path, m.Version, strings.Join(have, " "), f[2])
		}
		if !slices.Contains(hashes[m], f[2]) {
			hashes[m] = append(hashes[m], f[2])
		}
		return nil
	}
	for line := range strings.Lines(string(data)) {
		if err := add(line, false); err != nil {
			return err
		}
	}
	for _, line := range lines {
		if err := add(line, true); err != nil {
			return err
		}
	}
	// As the go command writes go.sum: module.Sort's order, a version's
	// go.mod after its zip.
	mods := slices.Collect(maps.Keys(hashes))
	module.Sort(mods)
	var b bytes.Buffer
	for _, m := range mods {
		for _, h := range slices.Sorted(slices.Values(hashes[m])) {
			fmt.Fprintf(&b, "%s %s %s\n", m.Path, m.Version, h)
		}
	}
	return os.WriteFile(name, b.Bytes(), 0o644)
}

// serve zips the module at dir as version s.version into the proxy and
// returns its two go.sum lines.
func (s *stage) serve(modPath, dir string) ([2]string, error) {
	mv := module.Version{Path: modPath, Version: s.version}
	escPath, err := module.EscapePath(modPath)
	if err != nil {
		return [2]string{}, err
	}
	escVersion, err := module.EscapeVersion(s.version)
	if err != nil {
		return [2]string{}, err
	}
	vdir := filepath.Join(s.proxy, filepath.FromSlash(escPath), "@v")
	if err := os.MkdirAll(vdir, 0o755); err != nil {
		return [2]string{}, err
	}
	base := filepath.Join(vdir, escVersion)

	f, err := os.Create(base + ".zip")
	if err != nil {
		return [2]string{}, err
	}
	if err := modzip.CreateFromDir(f, mv, dir); err != nil {
		f.Close()
		return [2]string{}, err
	}
	if err := f.Close(); err != nil {
		return [2]string{}, err
	}
	gomod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return [2]string{}, err
	}
	info, err := json.Marshal(struct {
		Version string
		Time    time.Time
	}{s.version, time.Now().UTC().Truncate(time.Second)})
	if err != nil {
		return [2]string{}, err
	}
	for name, data := range map[string][]byte{
		base + ".mod":               gomod,
		base + ".info":              info,
		filepath.Join(vdir, "list"): []byte(s.version + "\n"),
	} {
		if err := os.WriteFile(name, data, 0o644); err != nil {
			return [2]string{}, err
		}
	}

	zipSum, err := dirhash.HashZip(base+".zip", dirhash.Hash1)
	if err != nil {
		return [2]string{}, err
	}
	modSum, err := dirhash.Hash1([]string{"go.mod"}, func(string) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(gomod)), nil
	})
	if err != nil {
		return [2]string{}, err
	}
	return [2]string{
		fmt.Sprintf("%s %s %s", modPath, s.version, zipSum),
		fmt.Sprintf("%s %s/go.mod %s", modPath, s.version, modSum),
	}, nil
}

// environ sets s.env: the go command outside any workspace, the staged
// modules from the file proxy and nowhere else, into a module cache of
// their own; every other module from the shared module cache (read as a
// file proxy, as `go help goproxy` allows) or else from the configured
// proxies; the checksum database asked about every module but the staged
// ones, which it cannot know before their tags are public.
func (s *stage) environ() error {
	out, err := exec.Command("go", "env", "-json", "GOMODCACHE", "GOPROXY").Output()
	if err != nil {
		return fmt.Errorf("go env: %v", err)
	}
	var goenv struct{ GOMODCACHE, GOPROXY string }
	if err := json.Unmarshal(out, &goenv); err != nil {
		return fmt.Errorf("go env: %v", err)
	}
	proxies := []string{fileURL(s.proxy)}
	if goenv.GOMODCACHE != "" {
		proxies = append(proxies, fileURL(filepath.Join(goenv.GOMODCACHE, "cache", "download")))
		// The checksum database's tiles already fetched, so that it is
		// asked only what it has not answered before.
		sumdb := filepath.Join(goenv.GOMODCACHE, "cache", "download", "sumdb")
		if _, err := os.Stat(sumdb); err == nil {
			if err := copyTree(sumdb, filepath.Join(s.modCache, "cache", "download", "sumdb")); err != nil {
				return err
			}
		}
	}
	if goenv.GOPROXY != "" {
		proxies = append(proxies, goenv.GOPROXY)
	}
	s.env = []string{
		"GOWORK=off",
		"GOFLAGS=-modcacherw",
		"GOMODCACHE=" + s.modCache,
		"GOPROXY=" + strings.Join(proxies, ","),
		"GOPRIVATE=",
		"GONOPROXY=",
		"GONOSUMDB=" + released[0].path, // and the paths below it
		"GOTOOLCHAIN=local",
	}
	return nil
}

func fileURL(dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		abs = dir
	}
	return "file://" + filepath.ToSlash(abs)
}
