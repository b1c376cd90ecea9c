package integration_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

// The deployment files of `keepalive enforce` in ops/deploy, checked as
// far as this machine can: neither has run on a systemd host or on a
// Kubernetes cluster here. The systemd drop-in is parsed and verified by
// systemd-analyze; the DaemonSet is decoded, strictly, into the Kubernetes
// API's types; and the keepalive command line of each is run through the
// command itself, built from this tree, so that a flag it does not know or
// a Config it refuses fails the test.

const (
	dropInPath    = "../ops/deploy/systemd/keepalive.conf"
	daemonSetPath = "../ops/deploy/kubernetes/daemonset.yaml"
	dockerfile    = "../ops/deploy/kubernetes/Dockerfile"
)

// keepaliveCommand builds the command of this tree, once per test binary.
var keepaliveCommand = sync.OnceValues(func() (string, error) {
	if _, err := exec.LookPath("go"); err != nil {
		return "", errUnavailable{"building the command needs the go command: " + err.Error()}
	}
	bin := filepath.Join(tmpRoot, "keepalive")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = "../cmd/keepalive"
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/keepalive: %v\n%s", err, out)
	}
	return bin, nil
})

// needCommand returns the command built from this tree.
func needCommand(t *testing.T) string {
	t.Helper()
	bin, err := keepaliveCommand()
	if u := (errUnavailable{}); errors.As(err, &u) {
		unavailable(t, u.reason)
	}
	require.NoError(t, err)
	return bin
}

// checkEnforceLine runs the command bin with args, the arguments that
// follow the program in a deployment file ("enforce -cgroup PATH ..."),
// and returns an error with the command's output unless the command
// accepts them: every flag known, every value valid. So that it touches
// nothing on this machine, the path given to -cgroup is replaced with
// scratch, a directory that is not a cgroup: a policy is refused there
// with that reason and exit status 2, which the command reaches only once
// it has parsed every flag and validated the Config and the flows. -remove
// takes no Config; it is given scratch as -bpffs too, which is not one,
// and it fails with exit status 1 when it looks there.
func checkEnforceLine(bin, scratch string, args []string) error {
	if len(args) == 0 || args[0] != "enforce" {
		return fmt.Errorf("%q does not run keepalive enforce", args)
	}
	args = slices.Clone(args)
	found := 0
	for i := 1; i < len(args); i++ {
		switch {
		case args[i] == "-cgroup" || args[i] == "--cgroup":
			if i+1 < len(args) {
				args[i+1] = scratch
				found++
			}
		case strings.HasPrefix(args[i], "-cgroup=") || strings.HasPrefix(args[i], "--cgroup="):
			args[i] = "-cgroup=" + scratch
			found++
		}
	}
	if found != 1 {
		return fmt.Errorf("%q: want one -cgroup, not %d", args, found)
	}
	remove := slices.Contains(args, "-remove") || slices.Contains(args, "--remove")
	if remove {
		args = append(args, "-bpffs", scratch)
	}
	cmd := exec.Command(bin, args...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		return fmt.Errorf("keepalive %q, which should fail for want of a cgroup or bpffs: %v: %s", args, err, &stderr)
	}
	out := strings.TrimSpace(stderr.String())
	switch {
	case remove && exit.ExitCode() == 1 && !strings.Contains(out, "usage:"):
		return nil
	case !remove && exit.ExitCode() == 2 && strings.HasPrefix(out, "keepalive enforce: "+scratch+" is not in a cgroup filesystem"):
		return nil
	}
	return fmt.Errorf("keepalive %q: exit status %d: %s", args, exit.ExitCode(), out)
}

// TestEnforceLineRefused: checkEnforceLine fails for command lines the
// command refuses, so that it can fail for the deployment files'.
func TestEnforceLineRefused(t *testing.T) {
	t.Parallel()
	bin := needCommand(t)
	good := []string{"enforce", "-cgroup", "/sys/fs/cgroup/system.slice/app.service", "-config", "idle=60s,interval=10s,count=5", "-remote", "10.0.0.0/8", "-port", "5432"}
	require.NoError(t, checkEnforceLine(bin, t.TempDir(), good))
	require.NoError(t, checkEnforceLine(bin, t.TempDir(), []string{"enforce", "-remove", "-cgroup", "/sys/fs/cgroup/system.slice/app.service"}))
	for _, args := range [][]string{
		{"enforce", "-cgroup", "/sys/fs/cgroup/x", "-config", "idle=60s", "-intervall", "10s"},
		{"enforce", "-cgroup", "/sys/fs/cgroup/x", "-config", "idle=1.5s"},
		{"enforce", "-cgroup", "/sys/fs/cgroup/x", "-idle", "60s", "-remote", "10.0.0.0/33"},
		{"enforce", "-cgroup", "/sys/fs/cgroup/x", "-idle", "60s", "-wins", "both"},
		{"enforce", "-cgroup", "/sys/fs/cgroup/x"},
		{"enforce", "-remove", "-cgroup", "/sys/fs/cgroup/x", "-idle", "60s"},
		{"enforce", "-list", "-cgroup", "/sys/fs/cgroup/x"},
		{"audit", "-cgroup", "/sys/fs/cgroup/x"},
		{"enforce", "-config", "idle=60s"},
	} {
		err := checkEnforceLine(bin, t.TempDir(), args)
		assert.Error(t, err, "%q", args)
		t.Logf("%q: %v", args, err)
	}
}

// unitSetting is one setting of a systemd unit file or drop-in.
type unitSetting struct {
	section, key, value string
	line                int
}

// parseUnit reads a unit file as systemd.syntax(7) describes it: comments
// start with # or ;, sections are [Name], settings Key=Value, and a line
// that ends in a backslash goes on on the next. Anything else is an
// error.
func parseUnit(text string) ([]unitSetting, error) {
	var out []unitSetting
	section := ""
	sc := bufio.NewScanner(strings.NewReader(text))
	n, cont := 0, ""
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if cont == "" && (line == "" || line[0] == '#' || line[0] == ';') {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cont += strings.TrimSuffix(line, "\\") + " "
			continue
		}
		line, cont = cont+line, ""
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = line[1 : len(line)-1]
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok || section == "" {
			return nil, fmt.Errorf("line %d: %q is neither a section nor a setting in one", n, line)
		}
		out = append(out, unitSetting{section, strings.TrimSpace(key), strings.TrimSpace(value), n})
	}
	return out, sc.Err()
}

// execLine splits an Exec setting's value into its prefixes (systemd.service(5):
// @, -, :, +, !, !!) and its words, with the specifiers %n, %N, %p, %i and
// %% expanded for the unit named unit. It refuses quoting, escapes,
// variables and other specifiers, which it does not interpret.
func execLine(value, unit string) (prefixes string, words []string, err error) {
	i := strings.IndexFunc(value, func(r rune) bool { return !strings.ContainsRune("@-:+!", r) })
	if i < 0 {
		return "", nil, fmt.Errorf("%q has no command", value)
	}
	prefixes, value = value[:i], value[i:]
	if strings.ContainsAny(value, "\"'\\$") {
		return "", nil, fmt.Errorf("%q: quotes, escapes and variables are not read here", value)
	}
	name, _, _ := strings.Cut(unit, ".")
	prefix, instance, _ := strings.Cut(name, "@")
	spec := map[byte]string{'n': unit, 'N': name, 'p': prefix, 'i': instance, '%': "%"}
	for _, w := range strings.Fields(value) {
		var b strings.Builder
		for j := 0; j < len(w); j++ {
			if w[j] != '%' {
				b.WriteByte(w[j])
				continue
			}
			if j+1 == len(w) {
				return "", nil, fmt.Errorf("%q ends in %%", w)
			}
			s, ok := spec[w[j+1]]
			if !ok {
				return "", nil, fmt.Errorf("%q: specifier %%%c is not expanded here", w, w[j+1])
			}
			b.WriteString(s)
			j++
		}
		words = append(words, b.String())
	}
	return prefixes, words, nil
}

// TestSystemdDropIn checks ops/deploy/systemd/keepalive.conf: a drop-in
// for a service, installed as app.service.d/keepalive.conf, that puts the
// policy on the service's cgroup before each start (as root, outside the
// service's sandbox) and removes it after each stop.
func TestSystemdDropIn(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(dropInPath)
	require.NoError(t, err)
	settings, err := parseUnit(string(b))
	require.NoError(t, err)
	const unit = "app.service"
	const program = "/usr/local/bin/keepalive"
	bin := needCommand(t)
	var keys []string
	cgroups := map[string]string{}
	for _, s := range settings {
		keys = append(keys, s.section+"."+s.key)
		prefixes, words, err := execLine(s.value, unit)
		require.NoError(t, err, "line %d", s.line)
		require.NotEmpty(t, words)
		assert.Equal(t, program, words[0], "line %d: the command, where the README installs it", s.line)
		assert.Contains(t, prefixes, "+", "line %d: run as root with every capability, outside the service's sandbox", s.line)
		assert.Contains(t, prefixes, "-", "line %d: a policy that cannot be put in force or removed does not fail the service", s.line)
		assert.NoError(t, checkEnforceLine(bin, t.TempDir(), words[1:]), "line %d", s.line)
		i := slices.Index(words, "-cgroup")
		require.Greater(t, i, 0, "line %d: -cgroup", s.line)
		cgroups[s.key] = words[i+1]
		switch s.key {
		case "ExecStartPre":
			assert.NotContains(t, words, "-remove", "line %d", s.line)
		case "ExecStopPost":
			assert.Contains(t, words, "-remove", "line %d", s.line)
		}
	}
	assert.Equal(t, []string{"Service.ExecStartPre", "Service.ExecStopPost"}, keys)
	assert.Equal(t, "/sys/fs/cgroup/system.slice/"+unit, cgroups["ExecStartPre"], "the service's cgroup on a unified host")
	assert.Equal(t, cgroups["ExecStartPre"], cgroups["ExecStopPost"], "the policy removed is the one put in force")

	// systemd's own reading: the drop-in beside a service that uses it, the
	// command where the drop-in runs it replaced with the one built here
	// (verify checks that each command is an executable).
	verify := func(dropIn string) string {
		analyze, err := exec.LookPath("systemd-analyze")
		if err != nil {
			unavailable(t, "systemd-analyze is not installed (Debian package systemd): "+err.Error())
		}
		dir := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(dir, unit), []byte("[Service]\nExecStart=/bin/sleep infinity\n"), 0o644))
		require.NoError(t, os.Mkdir(filepath.Join(dir, unit+".d"), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, unit+".d", "keepalive.conf"), []byte(strings.ReplaceAll(dropIn, program, bin)), 0o644))
		cmd := exec.Command(analyze, "verify", filepath.Join(dir, unit))
		cmd.Env = append(os.Environ(), "SYSTEMD_UNIT_PATH="+dir+":", "SYSTEMD_LOG_COLOR=0")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "systemd-analyze verify: %s", out)
		return strings.TrimSpace(string(out))
	}
	assert.Empty(t, verify(string(b)), "systemd-analyze verify: no warning")
	// It reads the drop-in: a misspelt key is reported.
	assert.Contains(t, verify(strings.Replace(string(b), "ExecStartPre=", "ExecStartPr=", 1)), "Unknown key 'ExecStartPr'")

	readme, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	for _, s := range settings {
		assert.True(t, strings.Contains(string(readme), s.key+"="+s.value), "the README shows the drop-in's line %d as it is: %s=%s", s.line, s.key, s.value)
	}
}

// TestDaemonSet checks ops/deploy/kubernetes/daemonset.yaml, decoded
// strictly (a field the API does not have is an error) into the
// Kubernetes API's types: a pod on every node, in the host's PID
// namespace, whose init container runs keepalive enforce, privileged, on
// the node's kubepods cgroup through a mount of the host's cgroup tree,
// with the host's bpffs mounted Bidirectional.
func TestDaemonSet(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(daemonSetPath)
	require.NoError(t, err)
	var ds appsv1.DaemonSet
	require.NoError(t, yaml.UnmarshalStrict(b, &ds))
	assert.Equal(t, metav1.TypeMeta{APIVersion: "apps/v1", Kind: "DaemonSet"}, ds.TypeMeta)
	sel, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector)
	require.NoError(t, err)
	assert.False(t, sel.Empty())
	assert.True(t, sel.Matches(labels.Set(ds.Spec.Template.Labels)), "the selector matches the pods")

	spec := ds.Spec.Template.Spec
	assert.True(t, spec.HostPID, "hostPID: the cgroup.procs of the pods' cgroups list host PIDs")
	assert.Contains(t, spec.Tolerations, corev1.Toleration{Operator: corev1.TolerationOpExists}, "on every node, whatever its taints")
	require.NotEmpty(t, spec.Containers, "a container that keeps the pod running once the init container is done")

	var runs []corev1.Container
	for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
		if len(c.Command) > 0 && filepath.Base(c.Command[0]) == "keepalive" {
			runs = append(runs, c)
		}
	}
	require.Len(t, runs, 1, "one container runs keepalive")
	c := runs[0]
	assert.True(t, slices.ContainsFunc(spec.InitContainers, func(i corev1.Container) bool { return i.Name == c.Name }), "keepalive enforce runs once, in an init container")
	require.NotNil(t, c.SecurityContext)
	require.NotNil(t, c.SecurityContext.Privileged)
	assert.True(t, *c.SecurityContext.Privileged, "privileged: CAP_SYS_ADMIN, and Bidirectional mount propagation")

	args := append(slices.Clone(c.Command[1:]), c.Args...)
	assert.NoError(t, checkEnforceLine(needCommand(t), t.TempDir(), args))
	i := slices.Index(args, "-cgroup")
	require.Greater(t, i, 0)
	cgroup := args[i+1]

	volumes := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = v
	}
	hostPath := func(m corev1.VolumeMount) string {
		v, ok := volumes[m.Name]
		require.True(t, ok, "volume %s", m.Name)
		require.NotNil(t, v.HostPath, "volume %s is a hostPath", m.Name)
		return v.HostPath.Path
	}
	var sawBPFFS, sawCgroup bool
	for _, m := range c.VolumeMounts {
		switch {
		case m.MountPath == "/sys/fs/bpf":
			sawBPFFS = true
			assert.Equal(t, "/sys/fs/bpf", hostPath(m), "the host's bpffs, where the policy is pinned")
			assert.False(t, m.ReadOnly)
			require.NotNil(t, m.MountPropagation)
			assert.Equal(t, corev1.MountPropagationBidirectional, *m.MountPropagation, "a bpffs mounted here is mounted on the host")
		case strings.HasPrefix(cgroup, m.MountPath+"/"):
			sawCgroup = true
			assert.Equal(t, "/sys/fs/cgroup", hostPath(m), "the host's cgroup tree")
			rel := strings.TrimPrefix(cgroup, m.MountPath)
			assert.Equal(t, "/sys/fs/cgroup/kubepods.slice", "/sys/fs/cgroup"+rel, "the kubelet's cgroup of every pod, with the systemd cgroup driver")
		}
	}
	assert.True(t, sawBPFFS, "/sys/fs/bpf is mounted")
	assert.True(t, sawCgroup, "the cgroup %s is in a mount of the host's cgroup tree", cgroup)

	// The image: the Dockerfile puts the command where the container runs
	// it.
	df, err := os.ReadFile(dockerfile)
	require.NoError(t, err)
	var copies []string
	for _, line := range strings.Split(string(df), "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == "COPY" {
			copies = append(copies, f[len(f)-1])
		}
	}
	assert.Equal(t, []string{c.Command[0]}, copies, "the Dockerfile copies the command to the path the DaemonSet runs")

	readme, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	for _, want := range []string{"ops/deploy/kubernetes/daemonset.yaml", c.Command[0] + " " + strings.Join(args, " ")} {
		assert.True(t, strings.Contains(string(readme), want), "the README shows %q", want)
	}
}
