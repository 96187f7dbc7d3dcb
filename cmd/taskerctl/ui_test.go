package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
)

// TestUIServesWhatTheCredentialsSee: taskerctl ui watches with the user's credentials (here impersonated): a
// user who may read the Tasks of one namespace sees them, is told that WorkerPools are hidden from them and that
// step details need the database; a user who may read nothing gets the apiserver's refusal and no UI.
func TestUIServesWhatTheCredentialsSee(t *testing.T) {
	mine := env.NewNamespace(t, "ui")
	createTask(t, mine, "visible", taskerv1alpha1.TaskRunning, nil)
	grantTaskReader(t, mine, "ui-reader")

	taskerctl(t, "--as", "nobody", "ui", "-n", mine, "--address", "127.0.0.1:0").want(t, exitOther, "",
		`Error from server (Forbidden): tasks.tasker.dev is forbidden: User "nobody" cannot list resource "tasks" in API group "tasker.dev" in the namespace "`+mine+`"`+"\n")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	root := newRoot()
	root.SetArgs([]string{"--kubeconfig", kubeconfig, "--as", "ui-reader", "-n", mine, "ui", "--address", "127.0.0.1:0"})
	out, w := io.Pipe()
	root.SetOut(w)
	root.SetErr(w)
	exited := make(chan int, 1)
	go func() { exited <- run(ctx, root); _ = w.Close() }()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("taskerctl ui printed %q: %v", line, err)
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	m := regexp.MustCompile(`^tasker UI on (http://127\.0\.0\.1:\d+/) \(namespace (\S+); no step details: give --database-url`).FindStringSubmatch(line)
	if m == nil || m[2] != mine {
		t.Fatalf("taskerctl ui printed %q", line)
	}
	for path, want := range map[string]string{
		"tasks":                      `data-task="` + mine + `/visible"`,
		"tasks/" + mine + "/visible": "Step details need the database",
		"pools":                      "WorkerPools are not shown: these credentials may not list WorkerPools",
		"tasks/elsewhere/visible":    "There is no Task elsewhere/visible",
	} {
		resp, err := http.Get(m[1] + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if !strings.Contains(string(body), want) {
			t.Errorf("%s: %s, lacks %q", path, resp.Status, want)
		}
	}
	cancel()
	if code := <-exited; code != 0 {
		t.Errorf("taskerctl ui exited %d when interrupted, want 0", code)
	}
}
