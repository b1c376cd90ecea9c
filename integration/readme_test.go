package integration_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"go/types"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive/internal/testserver"
)

// The Go the README presents to paste: every ```go block, the code in the
// "one line" column of the drop-in table, and inline Go in its prose that
// does something (a call, an assignment, a composite literal).
// TestREADMESnippets turns each into the body of a function, declaring the
// variables it uses with the types the README implies and importing the
// packages it names, and builds them as one package of this module, so
// that a client's API change breaks the build and not a reader. A compile
// error names the README's line (each snippet carries a //line directive).
//
// The README may change at will: whatever Go it holds when the test runs
// is what is built. A snippet the test cannot wrap (not Go statements, an
// expression, or composite-literal fields), or that uses a name the test
// does not know, fails the test with the line, until it is handled here.

// readmePackages maps the package names snippets use to import paths.
var readmePackages = map[string]string{
	"keepalive":   "github.com/keepalive-go/keepalive",
	"http":        "net/http",
	"tls":         "crypto/tls",
	"sql":         "database/sql",
	"net":         "net",
	"time":        "time",
	"fmt":         "fmt",
	"context":     "context",
	"pgx":         "github.com/jackc/pgx/v5",
	"pgxpool":     "github.com/jackc/pgx/v5/pgxpool",
	"pgconn":      "github.com/jackc/pgx/v5/pgconn",
	"pq":          "github.com/lib/pq",
	"mysql":       "github.com/go-sql-driver/mysql",
	"replication": "github.com/go-mysql-org/go-mysql/replication",
	"redis":       "github.com/redis/go-redis/v9",
	"grpc":        "google.golang.org/grpc",
	"nats":        "github.com/nats-io/nats.go",
	"kgo":         "github.com/twmb/franz-go/pkg/kgo",
	"ssh":         "golang.org/x/crypto/ssh",
	"websocket":   "github.com/gorilla/websocket",
	"amqp":        "github.com/rabbitmq/amqp091-go",
	"clientv3":    "go.etcd.io/etcd/client/v3",
	"memcache":    "github.com/bradfitz/gomemcache/memcache",
	"errors":      "errors",
	"syscall":     "syscall",
	"flag":        "flag",
	"idletimeout": "github.com/keepalive-go/keepalive/idletimeout",
}

// readmeVars gives the type of each variable snippets use without
// defining it. Types name the library as kalib, so that a snippet may use
// the name keepalive for another package.
var readmeVars = map[string]string{
	"ctx":          "context.Context",
	"d":            "*kalib.Dialer",
	"cfg":          "kalib.Config",
	"lc":           "*kalib.ListenConfig",
	"existingConn": "net.Conn",
	"addr":         "string",
	"target":       "string",
	"url":          "string",
	"dsn":          "string",
	"s":            "string", // a libpq connection string
	"eps":          "[]string",
	"tlsCfg":       "*tls.Config",
	"t":            "*http.Transport",
	"srv":          "*http.Server",
	"connCfg":      "*pgx.ConnConfig",
	"poolCfg":      "*pgxpool.Config",
	"pgconnCfg":    "*pgconn.Config",
	"mc":           "*memcache.Client",
	"conn":         "net.Conn",
	"err":          "error",
	"sys":          "kalib.Config", // keepalive.SystemDefaults()
	"idleTimeout":  "time.Duration",
	"detect":       "time.Duration",
}

// readmeRows holds what a row of the drop-in table implies beyond the
// tables above, by the row's client.
var readmeRows = map[string]struct {
	packages map[string]string
	vars     map[string]string
}{
	"coder/websocket": {packages: map[string]string{"websocket": "github.com/coder/websocket"}},
	"x/crypto/ssh":    {vars: map[string]string{"cfg": "*ssh.ClientConfig"}},
	"gRPC server":     {packages: map[string]string{"keepalive": "google.golang.org/grpc/keepalive"}},
}

// readmeTypeImports are the packages readmeVars' types name.
var readmeTypeImports = map[string]string{
	"kalib":    "github.com/keepalive-go/keepalive",
	"context":  "context",
	"net":      "net",
	"tls":      "crypto/tls",
	"http":     "net/http",
	"pgx":      "github.com/jackc/pgx/v5",
	"pgxpool":  "github.com/jackc/pgx/v5/pgxpool",
	"pgconn":   "github.com/jackc/pgx/v5/pgconn",
	"memcache": "github.com/bradfitz/gomemcache/memcache",
	"ssh":      "golang.org/x/crypto/ssh",
	"time":     "time",
}

// readmeSnippet is a piece of Go the README presents to paste.
type readmeSnippet struct {
	line int    // the README's line of its first line
	code string // as the README has it
	// row is the drop-in table's client for a span of its "one line"
	// column, and types the composite types its first column names.
	row   string
	types []string
}

func (s readmeSnippet) String() string { return fmt.Sprintf("README.md:%d: `%s`", s.line, s.code) }

var codeSpan = regexp.MustCompile("`([^`]+)`")

// readmeSnippets returns the README's Go snippets, and the lone names in
// the drop-in table's code column (`tcp` in "then `tcp` → `keepalive` in
// the DSN"), which are words of prose rather than code.
func readmeSnippets(readme string) (snippets []readmeSnippet, names []readmeSnippet, err error) {
	lines := strings.Split(readme, "\n")
	for i := 0; i < len(lines); i++ {
		if strings.TrimSpace(lines[i]) != "```go" {
			continue
		}
		start := i + 1
		for i++; i < len(lines) && strings.TrimSpace(lines[i]) != "```"; i++ {
		}
		if i == len(lines) {
			return nil, nil, fmt.Errorf("README.md:%d: a ```go block that does not end", start-1)
		}
		snippets = append(snippets, readmeSnippet{line: start + 1, code: strings.Join(lines[start:i], "\n")})
	}

	heading := slices.Index(lines, "## Drop-in")
	if heading < 0 {
		return nil, nil, fmt.Errorf(`README.md: no "## Drop-in" section, whose table's "one line" column the test compiles`)
	}
	col := -1
	i := heading + 1
	for ; i < len(lines) && !strings.HasPrefix(lines[i], "## "); i++ {
		if strings.HasPrefix(lines[i], "|") {
			col = slices.Index(tableCells(lines[i]), "one line")
			break
		}
	}
	if col < 0 {
		return nil, nil, fmt.Errorf(`README.md:%d: the drop-in table has no "one line" column`, i+1)
	}
	rows := 0
	for i += 2; i < len(lines) && strings.HasPrefix(lines[i], "|"); i++ {
		cells := tableCells(lines[i])
		if len(cells) <= col {
			return nil, nil, fmt.Errorf("README.md:%d: the drop-in table's row has no column %d", i+1, col+1)
		}
		rows++
		var typ []string
		for _, m := range codeSpan.FindAllStringSubmatch(cells[0], -1) {
			if _, err := parser.ParseExpr(m[1]); err == nil {
				typ = append(typ, m[1])
			}
		}
		for _, m := range codeSpan.FindAllStringSubmatch(cells[col], -1) {
			s := readmeSnippet{line: i + 1, code: m[1], row: cells[0], types: typ}
			if token.IsIdentifier(s.code) {
				names = append(names, s)
				continue
			}
			snippets = append(snippets, s)
		}
	}
	if rows == 0 {
		return nil, nil, fmt.Errorf("README.md:%d: the drop-in table has no rows", i+1)
	}

	// Inline Go in prose (paragraphs and lists, not tables): a span that
	// parses as Go and does something (a call, an assignment, a composite
	// literal) is code to paste; a name (`keepalive.Config`, `Get`) is
	// not, and neither is a span that is not Go at all (a command line,
	// a Config's text form).
	fenced := false
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "```") {
			fenced = !fenced
			continue
		}
		if fenced || strings.HasPrefix(l, "|") {
			continue
		}
		for _, m := range codeSpan.FindAllStringSubmatch(l, -1) {
			s := readmeSnippet{line: i + 1, code: m[1]}
			switch proseKind(s.code) {
			case "code":
				snippets = append(snippets, s)
			case "name":
				names = append(names, s)
			}
		}
	}
	return snippets, names, nil
}

// looksLikeCall matches a call, whether it parses or not.
var looksLikeCall = regexp.MustCompile(`^[\pL_][\pL\pN_]*(\.[\pL_][\pL\pN_]*)*\(.*\)$`)

// proseKind says what an inline span of prose is: "code" (Go that does
// something), "name" (a Go name or type), or "" (not Go).
func proseKind(code string) string {
	stmts, ok := parseStmts(code)
	if !ok && looksLikeCall.MatchString(code) {
		return "code" // `f("tcp", ...)`: Go with a part left out, which wrapSnippet refuses
	}
	if !ok || len(stmts) == 0 || slices.ContainsFunc(stmts, func(s ast.Stmt) bool { _, label := s.(*ast.LabeledStmt); return label }) {
		return ""
	}
	// wal_level=logical, keepalives=0: a setting; Go spaces its =.
	if _, assign := stmts[0].(*ast.AssignStmt); assign && !strings.Contains(code, " = ") && !strings.Contains(code, " := ") {
		return ""
	}
	does := false
	for _, s := range stmts {
		ast.Inspect(s, func(n ast.Node) bool {
			switch n.(type) {
			case *ast.CallExpr, *ast.CompositeLit, *ast.AssignStmt, *ast.IncDecStmt, *ast.SendStmt:
				does = true
			}
			return !does
		})
	}
	if does {
		return "code"
	}
	return "name"
}

// tableCells splits a Markdown table row into its trimmed cells; a | inside
// a code span does not split.
func tableCells(line string) []string {
	var cells []string
	var cell strings.Builder
	inCode := false
	for _, r := range strings.TrimSpace(strings.Trim(strings.TrimSpace(line), "|")) {
		switch {
		case r == '`':
			inCode = !inCode
		case r == '|' && !inCode:
			cells = append(cells, strings.TrimSpace(cell.String()))
			cell.Reset()
			continue
		}
		cell.WriteRune(r)
	}
	return append(cells, strings.TrimSpace(cell.String()))
}

// wrapSnippet returns the Go source of a file of package readme whose
// function holds s, with the variables s uses declared and the packages it
// names imported, or why s cannot be wrapped.
func wrapSnippet(s readmeSnippet) (string, error) {
	// "{..., Dialer: d.DialContext}": the fields elided are the reader's.
	code := strings.ReplaceAll(s.code, "{..., ", "{")
	var bodies []string
	stmts, ok := parseStmts(code)
	// "Control: cfg.Control" parses as a labelled statement: it is a field.
	ok = ok && !slices.ContainsFunc(stmts, func(s ast.Stmt) bool { _, label := s.(*ast.LabeledStmt); return label })
	if ok {
		if len(stmts) == 1 {
			if e, ok := stmts[0].(*ast.ExprStmt); ok {
				if _, call := e.X.(*ast.CallExpr); !call {
					code = "_ = " + code // a value: websocket.Dialer{...}
				}
			}
		}
		bodies = append(bodies, code)
	} else if _, err := parser.ParseExpr("T{" + code + "}"); err == nil {
		// Fields of a composite literal ("Control: cfg.Control"), of the
		// types the row names ("your own `net.Dialer` / `net.ListenConfig`").
		if len(s.types) == 0 {
			return "", fmt.Errorf("%v: composite-literal fields, and the row's first column names no type to put them in", s)
		}
		for _, typ := range s.types {
			bodies = append(bodies, "_ = "+typ+"{"+code+"}")
		}
	} else {
		return "", fmt.Errorf("%v: not Go statements, an expression or composite-literal fields: the test cannot wrap it", s)
	}

	row := readmeRows[s.row]
	imports := map[string]string{}
	importAs := func(name, path string) error {
		if p, ok := imports[name]; ok && p != path {
			return fmt.Errorf("%v: the name %s stands for both %s and %s", s, name, p, path)
		}
		imports[name] = path
		return nil
	}
	var decls []string
	var uses []string
	for _, body := range bodies {
		stmts, ok := parseStmts(body)
		if !ok {
			return "", fmt.Errorf("%v: wrapped as %q, it does not parse", s, body)
		}
		free, defined := freeNames(stmts)
		for _, name := range defined {
			uses = append(uses, "_ = "+name)
		}
		for _, name := range free {
			if typ, ok := row.vars[name]; ok || readmeVars[name] != "" {
				if !ok {
					typ = readmeVars[name]
				}
				for _, m := range regexp.MustCompile(`(\w+)\.`).FindAllStringSubmatch(typ, -1) {
					path, ok := readmeTypeImports[m[1]]
					if !ok {
						return "", fmt.Errorf("%v: the type %s of %s names a package the test does not know", s, typ, name)
					}
					if err := importAs(m[1], path); err != nil {
						return "", err
					}
				}
				decl := "var " + name + " " + typ
				if !slices.Contains(decls, decl) {
					decls = append(decls, decl)
				}
				continue
			}
			path, ok := row.packages[name]
			if !ok {
				path, ok = readmePackages[name]
			}
			if !ok {
				return "", fmt.Errorf("%v: %s is neither a variable nor a package the test knows: add it to readmeVars or readmePackages", s, name)
			}
			if err := importAs(name, path); err != nil {
				return "", err
			}
		}
	}

	var b strings.Builder
	b.WriteString("package readme\n\nimport (\n")
	names := make([]string, 0, len(imports))
	for name := range imports {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fmt.Fprintf(&b, "\t%s %q\n", name, imports[name])
	}
	b.WriteString(")\n\nfunc _() {\n")
	for _, d := range decls {
		fmt.Fprintf(&b, "\t%s\n", d)
	}
	for _, body := range bodies {
		fmt.Fprintf(&b, "//line README.md:%d\n%s\n", s.line, body)
	}
	for _, u := range uses {
		fmt.Fprintf(&b, "\t%s\n", u)
	}
	b.WriteString("}\n")
	return b.String(), nil
}

// parseStmts parses code as the statements of a function body.
func parseStmts(code string) ([]ast.Stmt, bool) {
	f, err := parser.ParseFile(token.NewFileSet(), "", "package p\nfunc _() {\n"+code+"\n}", parser.SkipObjectResolution)
	if err != nil {
		return nil, false
	}
	return f.Decls[0].(*ast.FuncDecl).Body.List, true
}

// freeNames returns the names stmts use without defining them (variables
// and packages, not the universe's), and those they define with := or var.
func freeNames(stmts []ast.Stmt) (free, defined []string) {
	def := map[string]bool{}
	var used []string
	var visit func(n ast.Node) bool
	visit = func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.AssignStmt:
			if n.Tok == token.DEFINE {
				for _, l := range n.Lhs {
					if id, ok := l.(*ast.Ident); ok && id.Name != "_" && !def[id.Name] {
						def[id.Name] = true
						defined = append(defined, id.Name)
					}
				}
				for _, r := range n.Rhs {
					ast.Inspect(r, visit)
				}
				return false
			}
		case *ast.ValueSpec:
			for _, id := range n.Names {
				if id.Name != "_" && !def[id.Name] {
					def[id.Name] = true
					defined = append(defined, id.Name)
				}
			}
		case *ast.SelectorExpr:
			ast.Inspect(n.X, visit) // not the selected name
			return false
		case *ast.KeyValueExpr:
			if _, ok := n.Key.(*ast.Ident); !ok {
				ast.Inspect(n.Key, visit)
			}
			ast.Inspect(n.Value, visit) // a struct field's name is not a use
			return false
		case *ast.Ident:
			used = append(used, n.Name)
		}
		return true
	}
	for _, s := range stmts {
		ast.Inspect(s, visit)
	}
	for _, name := range used {
		if name == "_" || def[name] || types.Universe.Lookup(name) != nil || slices.Contains(free, name) {
			continue
		}
		free = append(free, name)
	}
	return free, defined
}

// buildSnippets wraps the snippets of readme, and builds them as one
// package of this module, through an overlay: nothing is written into
// the module. It returns the snippets and the go command's output on
// failure.
func buildSnippets(t *testing.T, readme string) ([]readmeSnippet, string, error) {
	t.Helper()
	snippets, names, err := readmeSnippets(readme)
	if err != nil {
		return nil, "", err
	}
	prose := 0
	for _, n := range names {
		if n.row == "" {
			prose++
			continue
		}
		t.Logf("%v, in the drop-in table: a name, not code", n)
	}
	t.Logf("%d names in prose (`keepalive.Config`, `Get`, `-detect`) are not code", prose)
	module, err := os.Getwd()
	require.NoError(t, err)
	dir := t.TempDir()
	pkg := filepath.Join(module, fmt.Sprintf("readmesnippets%d", os.Getpid()))
	overlay := map[string]string{}
	var unwrapped []error
	for i, s := range snippets {
		src, err := wrapSnippet(s)
		if err != nil {
			unwrapped = append(unwrapped, err)
			continue
		}
		name := fmt.Sprintf("snippet%03d.go", i)
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644))
		overlay[filepath.Join(pkg, name)] = filepath.Join(dir, name)
	}
	if len(unwrapped) > 0 {
		return nil, "", errors.Join(unwrapped...)
	}
	b, err := json.Marshal(map[string]any{"Replace": overlay})
	require.NoError(t, err)
	ovl := filepath.Join(dir, "overlay.json")
	require.NoError(t, os.WriteFile(ovl, b, 0o644))
	// go vet cannot take a package that exists only in an overlay; go
	// build type-checks and compiles it.
	args := []string{"build", "-o", os.DevNull, "-overlay", ovl}
	// With the test binary's -race, the packages it compiled are reused.
	if bi, ok := debug.ReadBuildInfo(); ok && slices.Contains(bi.Settings, debug.BuildSetting{Key: "-race", Value: "true"}) {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "./"+filepath.Base(pkg))...)
	cmd.Dir = module
	out, err := cmd.CombinedOutput()
	if err != nil {
		return snippets, string(bytes.TrimSpace(out)), fmt.Errorf("go build: %w", err)
	}
	return snippets, "", nil
}

func TestREADMESnippets(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("go"); err != nil {
		testserver.Skip(t, "the go command, which builds the README's snippets, is not on PATH: "+err.Error())
	}
	b, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	readme := string(b)

	start := time.Now()
	snippets, out, err := buildSnippets(t, readme)
	require.NoError(t, err, "the README's Go snippets do not compile:\n%s", out)
	t.Logf("%d snippets built in %v", len(snippets), time.Since(start).Round(time.Millisecond))

	// The test fails, naming the line, when a snippet stops compiling: a
	// method renamed in one drop-in line and in a ```go block.
	t.Run("a snippet that does not compile", func(t *testing.T) {
		lines := strings.Split(readme, "\n")
		var table, block int
		for _, s := range snippets {
			if s.row != "" && table == 0 && strings.Contains(s.code, "d.DialContext") {
				table = s.line
			}
			if i := strings.Index(s.code, "keepalive."); s.row == "" && block == 0 && i >= 0 {
				block = s.line + strings.Count(s.code[:i], "\n")
			}
		}
		require.NotZero(t, table, "no drop-in line with d.DialContext")
		require.NotZero(t, block, "no ```go block that uses the library")
		lines[table-1] = strings.Replace(lines[table-1], "d.DialContext", "d.DialContex", 1)
		lines[block-1] = strings.Replace(lines[block-1], "keepalive.", "keepalive.Gone", 1)
		_, out, err := buildSnippets(t, strings.Join(lines, "\n"))
		require.Error(t, err)
		assert.Contains(t, out, fmt.Sprintf("README.md:%d:", table), "the error names the drop-in line")
		assert.Contains(t, out, fmt.Sprintf("README.md:%d:", block), "the error names the block's line")
		t.Logf("%v:\n%s", err, out)
	})

	// A snippet the test cannot wrap, or whose names it does not know,
	// fails the test rather than being skipped.
	for _, tt := range []struct{ name, row, want string }{ // row: a line after the net/http row, or prose after the heading
		{"not Go", "| new client | `dial it -now` | |", "README.md:%d: `dial it -now`: not Go statements"},
		{"unknown variable", "| new client | `client.Dial(d.DialContext)` | |", "README.md:%d: `client.Dial(d.DialContext)`: client is neither a variable nor a package"},
		{"fields without a type", "| new client | `Dial: d.DialContext` | |", "README.md:%d: `Dial: d.DialContext`: composite-literal fields, and the row's first column names no type"},
		{"a call with a part left out, in prose", "Then `client.Dial(addr, ...)` dials.", "README.md:%d: `client.Dial(addr, ...)`: not Go statements"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			lines := strings.Split(readme, "\n")
			at := "| net/http |"
			if !strings.HasPrefix(tt.row, "|") {
				at = "## Drop-in"
			}
			i := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, at) })
			require.GreaterOrEqual(t, i, 0, "no line %q", at)
			lines = slices.Insert(lines, i+1, tt.row)
			snippets, _, err := readmeSnippets(strings.Join(lines, "\n"))
			require.NoError(t, err)
			i = slices.IndexFunc(snippets, func(s readmeSnippet) bool { return s.line == i+2 })
			require.GreaterOrEqual(t, i, 0, "the new row's snippet was not found")
			_, err = wrapSnippet(snippets[i])
			require.Error(t, err)
			assert.ErrorContains(t, err, fmt.Sprintf(tt.want, snippets[i].line))
		})
	}
}
