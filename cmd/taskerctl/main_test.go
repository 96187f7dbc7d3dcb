package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/internal/testenv"
)

// The command tree runs against a real kube-apiserver and etcd (envtest) with the CRDs and webhooks, without the
// operator's reconcilers: the tests set the Tasks' status themselves, through the status subresource.
var (
	env        *testenv.Env
	kubeconfig string // the control plane's admin kubeconfig
)

func TestMain(m *testing.M) { os.Exit(runTests(m)) }

func runTests(m *testing.M) int {
	var err error
	env, err = testenv.Start(testenv.Options{SkipOperator: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer env.Stop()
	dir, err := os.MkdirTemp("", "taskerctl-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()
	kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, env.KubeConfig(), 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// result is what one taskerctl command printed, and its exit status.
type result struct {
	stdout, stderr string
	code           int
}

// taskerctl runs the command tree with args (after --kubeconfig of the test control plane, which args may
// override) as main does, and returns what it printed and its exit status.
func taskerctl(t *testing.T, args ...string) result {
	t.Helper()
	root := newRoot()
	var stdout, stderr bytes.Buffer
	root.SetArgs(append([]string{"--kubeconfig", kubeconfig}, args...))
	root.SetOut(&stdout)
	root.SetErr(&stderr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code := run(ctx, root)
	return result{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

// want fails the test unless r exited with code and printed stdout and stderr exactly.
func (r result) want(t *testing.T, code int, stdout, stderr string) {
	t.Helper()
	if r.code != code || r.stdout != stdout || r.stderr != stderr {
		t.Errorf("exit %d, stdout:\n%s\nstderr:\n%s\nwant exit %d, stdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr,
			code, stdout, stderr)
	}
}

// createTask creates a one-step Task, changed by mutate, and then writes its status through the status
// subresource when phase is set, as the operator would: Ready's reason is the phase.
func createTask(t *testing.T, ns, name string, phase taskerv1alpha1.TaskPhase, mutate func(*taskerv1alpha1.Task)) *taskerv1alpha1.Task {
	t.Helper()
	ctx := context.Background()
	tk := &taskerv1alpha1.Task{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       taskerv1alpha1.TaskSpec{Steps: []taskerv1alpha1.StepSpec{{Name: "a", Handler: "echo"}}},
	}
	if mutate != nil {
		mutate(tk)
	}
	if err := env.Client.Create(ctx, tk); err != nil {
		t.Fatal(err)
	}
	if phase != "" {
		setPhase(t, tk, phase)
	}
	return tk
}

// setPhase writes the Task's phase, its progress and its Ready condition through the status subresource.
func setPhase(t *testing.T, tk *taskerv1alpha1.Task, phase taskerv1alpha1.TaskPhase) {
	t.Helper()
	tk.Status.Phase, tk.Status.Progress = phase, "0/1"
	if phase == taskerv1alpha1.TaskSucceeded {
		tk.Status.Progress = "1/1"
	}
	ready := metav1.ConditionFalse
	if phase == taskerv1alpha1.TaskSucceeded {
		ready = metav1.ConditionTrue
	}
	meta.SetStatusCondition(&tk.Status.Conditions, metav1.Condition{Type: taskerv1alpha1.TaskConditionReady, Status: ready,
		Reason: string(phase), Message: "set by the test"})
	if err := env.Client.Status().Update(context.Background(), tk); err != nil {
		t.Fatal(err)
	}
}
