// Package e2e runs the local stack (tasker-dev, what `make demo` runs) as a user would: the binaries built
// from this checkout, driven from outside through kubectl and taskerctl.
package e2e

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tasker-operator/tasker-operator/internal/testenv"
)

// build compiles the binaries the demo runs into dir.
func build(t *testing.T, root, dir string) {
	t.Helper()
	for name, pkg := range map[string]string{"manager": "./cmd/manager", "worker": "./cmd/worker", "taskerctl": "./cmd/taskerctl",
		"tasker-dev": "./cmd/tasker-dev"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, name), pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", name, err, out)
		}
	}
}

// descendants returns the pids of every process below pid.
func descendants(pid int) []int {
	children := map[int][]int{}
	procs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range procs {
		stat, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		s := string(stat)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) < 2 {
			continue
		}
		child, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		parent, _ := strconv.Atoi(fields[1])
		children[parent] = append(children[parent], child)
	}
	var out []int
	var walk func(int)
	walk = func(p int) {
		for _, c := range children[p] {
			out = append(out, c)
			walk(c)
		}
	}
	walk(pid)
	return out
}

func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(stat)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(fields) > 0 && fields[0] != "Z"
}

// lineWaiter collects a process's output and lets a test wait for a line.
type lineWaiter struct {
	mu    sync.Mutex
	lines []string
	cond  *sync.Cond
}

func newLineWaiter(r io.Reader, echo func(string)) *lineWaiter {
	w := &lineWaiter{}
	w.cond = sync.NewCond(&w.mu)
	go func() {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			echo(sc.Text())
			w.mu.Lock()
			w.lines = append(w.lines, sc.Text())
			w.cond.Broadcast()
			w.mu.Unlock()
		}
	}()
	return w
}

func (w *lineWaiter) has(substr string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, l := range w.lines {
		if strings.Contains(l, substr) {
			return true
		}
	}
	return false
}

func (w *lineWaiter) all() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.lines, "\n")
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestDemo runs `tasker-dev --keep` non-interactively, checks the demo's claims from the outside (kubectl and
// taskerctl agree; a failed Task is brought back with taskerctl retry), then interrupts it and checks that no
// process it started is left.
func TestDemo(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	assets, err := testenv.AssetsDir()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("kubectl"); err != nil {
		t.Fatal("kubectl is needed on PATH (the README lists it as a prerequisite)")
	}
	bin := t.TempDir()
	build(t, root, bin)
	// The demo's PostgreSQL runs as the postgres user, which must reach its data folder: t.TempDir() is 0700.
	stateParent, err := os.MkdirTemp("", "tasker-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(stateParent) })
	if err := os.Chmod(stateParent, 0o755); err != nil {
		t.Fatal(err)
	}
	stateDir := filepath.Join(stateParent, "demo")

	cmd := exec.Command(filepath.Join(bin, "tasker-dev"), "--keep", "--live=false", "--dir", stateDir, "--repo", root,
		"--assets", assets, "--manager-bin", filepath.Join(bin, "manager"), "--worker-bin", filepath.Join(bin, "worker"))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	out := newLineWaiter(stdout, func(l string) { t.Log("demo: " + l) })
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	// Everything the demo starts, seen while it runs.
	var mu sync.Mutex
	started := map[int]bool{}
	stopWatch := make(chan struct{})
	go func() {
		for {
			for _, p := range descendants(cmd.Process.Pid) {
				mu.Lock()
				started[p] = true
				mu.Unlock()
			}
			select {
			case <-stopWatch:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
	}()

	waitFor(t, 5*time.Minute, "all sample tasks succeeded", func() bool {
		select {
		case err := <-exited:
			t.Fatalf("the demo exited early (%v):\n%s", err, out.all())
		default:
		}
		return out.has("all sample tasks succeeded")
	})
	// The web UI's address is printed beside the kubeconfig, and it serves the demo's Tasks.
	uiURL := regexp.MustCompile(`(?m)^web UI: +(http://127\.0\.0\.1:\d+/)$`).FindStringSubmatch(out.all())
	if uiURL == nil {
		t.Fatalf("no web UI address in the demo's output:\n%s", out.all())
	}
	for path, want := range map[string]string{"tasks?namespace=demo": `data-task="demo/order-fulfillment" data-phase="Succeeded"`,
		"tasks/demo/order-fulfillment": `data-step="charge-payment"`} {
		resp, err := http.Get(uiURL[1] + path)
		if err != nil {
			t.Fatalf("web UI: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
			t.Errorf("web UI %s: %s, lacks %s\n%s", path, resp.Status, want, body)
		}
	}
	waitFor(t, 5*time.Minute, "the pool to scale back down", func() bool { return out.has("back down to") })
	if !out.has("scaled up to") {
		t.Fatalf("the pool did not scale up during the burst:\n%s", out.all())
	}
	// A progress line that counts every Task succeeded shows the backlog as it is then: none.
	allDone := regexp.MustCompile(`tasks: (\d+)/(\d+) succeeded`)
	var finalLines int
	for _, l := range strings.Split(out.all(), "\n") {
		if m := allDone.FindStringSubmatch(l); m != nil && m[1] == m[2] {
			finalLines++
			if !strings.Contains(l, ": backlog 0 now") {
				t.Errorf("progress line with every Task succeeded shows a backlog: %s", l)
			}
		}
	}
	if finalLines == 0 {
		t.Errorf("no progress line with every Task succeeded:\n%s", out.all())
	}
	kubeconfig := filepath.Join(stateDir, "kubeconfig")
	taskerctl := func(args ...string) (string, error) {
		c := exec.Command(filepath.Join(bin, "taskerctl"), append([]string{"--kubeconfig", kubeconfig, "-n", "demo"}, args...)...)
		b, err := c.CombinedOutput()
		return string(b), err
	}

	// kubectl get tasks and taskerctl describe agree on PHASE and STEPS.
	kc := exec.Command("kubectl", "--kubeconfig", kubeconfig, "-n", "demo", "get", "tasks", "--no-headers",
		"linear-etl", "order-fulfillment", "nightly-report-2026-11-27")
	var kout bytes.Buffer
	kc.Stdout = &kout
	if err := kc.Run(); err != nil {
		t.Fatalf("kubectl get tasks: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(kout.String()), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			t.Fatalf("kubectl line %q", line)
		}
		name, phase, steps := f[0], f[1], f[2]
		desc, err := taskerctl("describe", name, "-o", "json")
		if err != nil {
			t.Fatalf("taskerctl describe %s: %v\n%s", name, err, desc)
		}
		var v struct{ Phase, Progress string }
		if err := json.Unmarshal([]byte(desc), &v); err != nil {
			t.Fatalf("describe -o json: %v\n%s", err, desc)
		}
		if v.Phase != phase || v.Progress != steps || phase != "Succeeded" {
			t.Errorf("%s: kubectl says %s %s, taskerctl says %s %s", name, phase, steps, v.Phase, v.Progress)
		}
		tree, err := taskerctl("describe", name)
		if err != nil || !strings.Contains(tree, "succeeded") {
			t.Errorf("taskerctl describe %s: %v\n%s", name, err, tree)
		}
	}

	// A Task failed by a permanently failing step, retried with fixed inputs, succeeds.
	manifest := `apiVersion: tasker.dev/v1alpha1
kind: Task
metadata: {name: broken-input, namespace: demo}
spec:
  steps:
    - {name: prepare, handler: echo}
    - {name: charge, handler: fail, dependsOn: [prepare], inputs: {permanent: true, message: "card number is invalid"}}
    - {name: ship, handler: echo, dependsOn: [charge]}
`
	apply := exec.Command("kubectl", "--kubeconfig", kubeconfig, "apply", "-f", "-")
	apply.Stdin = strings.NewReader(manifest)
	if b, err := apply.CombinedOutput(); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, b)
	}
	// taskerctl wait's exit codes (argo wait's): 1 when the Task finishes in another phase, 0 when it reaches the
	// phase, 2 at the timeout; watch exits 1 on a failed Task.
	exitCode := func(err error) int {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			return -1
		}
		return 0
	}
	if s, err := taskerctl("wait", "broken-input", "--for=phase=Succeeded", "--timeout=1m"); exitCode(err) != 1 ||
		!strings.Contains(s, "finished Failed") {
		t.Fatalf("taskerctl wait for a Task that fails: exit %d, want 1\n%s", exitCode(err), s)
	}
	if s, err := taskerctl("watch", "broken-input"); exitCode(err) != 1 || !strings.Contains(s, "card number is invalid") {
		t.Errorf("taskerctl watch of a failed Task: exit %d, want 1\n%s", exitCode(err), s)
	}
	if s, err := taskerctl("retry", "broken-input", "charge", "--inputs", `{"permanent":false}`); err != nil {
		t.Fatalf("taskerctl retry: %v\n%s", err, s)
	}
	if s, err := taskerctl("wait", "broken-input", "--for=phase=Succeeded", "--timeout=1m"); err != nil {
		t.Fatalf("taskerctl wait for broken-input to succeed after the retry: exit %d\n%s", exitCode(err), s)
	}
	// The history of the retried step, from the database (its URL is in the demo's Secret, as docs/local-stack.md
	// shows).
	secret, err := exec.Command("kubectl", "--kubeconfig", kubeconfig, "-n", "demo", "get", "secret", "tasker-db",
		"-o", "jsonpath={.data.url}").Output()
	if err != nil {
		t.Fatalf("kubectl get secret: %v", err)
	}
	dbURL, err := base64.StdEncoding.DecodeString(string(secret))
	if err != nil {
		t.Fatal(err)
	}
	hist, err := taskerctl("history", "broken-input", "charge", "--database-url", string(dbURL))
	if err != nil {
		t.Fatalf("taskerctl history: %v\n%s", err, hist)
	}
	for _, want := range []string{"running -> failed", "card number is invalid", "failed -> enqueued",
		"running -> succeeded"} {
		if !strings.Contains(hist, want) {
			t.Errorf("taskerctl history broken-input charge lacks %q:\n%s", want, hist)
		}
	}
	if s, err := taskerctl("history", "broken-input"); err == nil || !strings.Contains(s, "--database-url") {
		t.Errorf("taskerctl history without a database URL: %v\n%s", err, s)
	}
	// Shell completion reads Task and step names from the cluster.
	if s, err := taskerctl("__complete", "describe", "linear"); err != nil || !strings.Contains(s, "linear-etl\n") ||
		strings.Contains(s, "order-fulfillment") {
		t.Errorf("completion of a Task name: %v\n%s", err, s)
	}
	if s, err := taskerctl("__complete", "retry", "broken-input", ""); err != nil ||
		!strings.Contains(s, "charge\n") || !strings.Contains(s, "ship\n") {
		t.Errorf("completion of a step name: %v\n%s", err, s)
	}
	stuck := `apiVersion: tasker.dev/v1alpha1
kind: Task
metadata: {name: no-workers, namespace: demo}
spec:
  queue: nobody_serves_this
  steps:
    - {name: only, handler: echo}
`
	apply = exec.Command("kubectl", "--kubeconfig", kubeconfig, "apply", "-f", "-")
	apply.Stdin = strings.NewReader(stuck)
	if b, err := apply.CombinedOutput(); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, b)
	}
	if s, err := taskerctl("wait", "no-workers", "--for=phase=Succeeded", "--timeout=2s"); exitCode(err) != 2 ||
		!strings.Contains(s, "timed out") {
		t.Errorf("taskerctl wait for a Task nobody runs: exit %d, want 2\n%s", exitCode(err), s)
	}
	if s, err := taskerctl("cancel", "no-workers"); err != nil {
		t.Fatalf("taskerctl cancel: %v\n%s", err, s)
	}
	if s, err := taskerctl("wait", "no-workers", "--for=phase=Cancelled", "--timeout=1m"); err != nil {
		t.Errorf("taskerctl wait for the cancellation: exit %d\n%s", exitCode(err), s)
	}

	// Ctrl-C stops everything, even when its output went to a pipe that is gone by then (as with
	// 'make demo | tee demo.log': Ctrl-C ends tee too).
	if err := stdout.Close(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case _ = <-exited:
	case <-time.After(2 * time.Minute):
		t.Fatal("the demo did not stop within 2 minutes of Ctrl-C")
	}
	close(stopWatch)
	mu.Lock()
	defer mu.Unlock()
	if len(started) < 4 {
		t.Fatalf("saw only %d processes under the demo; the watch is broken", len(started))
	}
	deadline := time.Now().Add(10 * time.Second)
	for pid := range started {
		for alive(pid) && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if alive(pid) {
			cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			t.Errorf("process %d (%s) is still running after the demo stopped", pid, bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))
		}
	}
}
