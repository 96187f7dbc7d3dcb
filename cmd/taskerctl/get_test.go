package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
)

// getTasks creates the Tasks the get tests print, in a namespace of their own: alpha (running, queue batch,
// priority 7) and beta (succeeded).
func getTasks(t *testing.T) string {
	ns := env.NewNamespace(t, "get")
	createTask(t, ns, "alpha", taskerv1alpha1.TaskRunning, func(tk *taskerv1alpha1.Task) {
		tk.Spec.Queue, tk.Spec.Priority = "batch", 7
	})
	createTask(t, ns, "beta", taskerv1alpha1.TaskSucceeded, nil)
	return ns
}

// TestGetTable: without -o, the table as before; -o wide adds TEMPLATE, QUEUE, PRIORITY and REASON. AGE is
// the one column not compared (it depends on the clock).
func TestGetTable(t *testing.T) {
	ns := getTasks(t)
	for _, tt := range []struct {
		args []string
		want [][]string
	}{
		{[]string{"get"}, [][]string{{"NAME", "PHASE", "STEPS", "AGE"}, {"alpha", "Running", "0/1", ""}, {"beta", "Succeeded", "1/1", ""}}},
		{[]string{"get", "beta"}, [][]string{{"NAME", "PHASE", "STEPS", "AGE"}, {"beta", "Succeeded", "1/1", ""}}},
		{[]string{"get", "-o", "wide"}, [][]string{
			{"NAME", "PHASE", "STEPS", "AGE", "TEMPLATE", "QUEUE", "PRIORITY", "REASON"},
			{"alpha", "Running", "0/1", "", "<none>", "batch", "7", "Running"},
			{"beta", "Succeeded", "1/1", "", "<none>", "<none>", "0", "Succeeded"},
		}},
	} {
		r := taskerctl(t, append(tt.args, "-n", ns)...)
		if r.code != 0 || r.stderr != "" {
			t.Fatalf("%v: exit %d: %s", tt.args, r.code, r.stderr)
		}
		if got := tableCells(r.stdout); !slices.EqualFunc(got, tt.want, slices.Equal) {
			t.Errorf("%v printed:\n%s\nwant rows %q", tt.args, r.stdout, tt.want)
		}
	}
}

// tableCells splits a table into rows of cells, blanking the AGE column (which depends on the clock) of rows
// after the header.
func tableCells(table string) [][]string {
	var rows [][]string
	age := -1
	for line := range strings.Lines(table) {
		cells := strings.Fields(line)
		if age < 0 {
			age = slices.Index(cells, "AGE")
		} else if age < len(cells) {
			cells[age] = ""
		}
		rows = append(rows, cells)
	}
	return rows
}

// TestGetObjectFormats: every -o but the table prints the Task objects themselves, kubectl's way: the Task when
// one was asked for by name, else a v1 List.
func TestGetObjectFormats(t *testing.T) {
	ns := getTasks(t)
	dir := t.TempDir()
	jsonpathFile := filepath.Join(dir, "phase.jsonpath")
	columnsFile := filepath.Join(dir, "columns.txt")
	if err := os.WriteFile(jsonpathFile, []byte(`{range .items[*]}{.metadata.name}={.status.phase}{"\n"}{end}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(columnsFile, []byte("NAME PRIORITY\n.metadata.name .spec.priority\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"get", "-o", "name"}, "task.tasker.dev/alpha\ntask.tasker.dev/beta\n"},
		{[]string{"get", "alpha", "-o", "name"}, "task.tasker.dev/alpha\n"},
		{[]string{"get", "-o", "jsonpath={.items[*].metadata.name}"}, "alpha beta"},
		{[]string{"get", "alpha", "-o", "jsonpath={.kind}/{.status.phase}"}, "Task/Running"},
		{[]string{"get", "-o", "jsonpath-file=" + jsonpathFile}, "alpha=Running\nbeta=Succeeded\n"},
		{[]string{"get", "-o", "go-template={{range .items}}{{.metadata.name}}:{{.spec.queue}} {{end}}"}, "alpha:batch beta:<no value> "},
		{[]string{"get", "beta", "-o", "go-template={{.apiVersion}}"}, "tasker.dev/v1alpha1"},
		{[]string{"get", "-o", "custom-columns=NAME:.metadata.name,QUEUE:.spec.queue"}, "NAME    QUEUE\nalpha   batch\nbeta    <none>\n"},
		{[]string{"get", "alpha", "-o", "custom-columns=PHASE:.status.phase"}, "PHASE\nRunning\n"},
		{[]string{"get", "-o", "custom-columns-file=" + columnsFile}, "NAME    PRIORITY\nalpha   7\nbeta    <none>\n"},
	} {
		taskerctl(t, append(tt.args, "-n", ns)...).want(t, 0, tt.want, "")
	}

	// json and yaml: the whole objects, without managedFields (as kubectl, unless --show-managed-fields).
	for _, format := range []string{"json", "yaml"} {
		decode := json.Unmarshal
		if format == "yaml" {
			decode = func(b []byte, v any) error { return yaml.UnmarshalStrict(b, v) }
		}
		one := taskerctl(t, "get", "alpha", "-n", ns, "-o", format)
		var tk taskerv1alpha1.Task
		if err := decode([]byte(one.stdout), &tk); err != nil || one.code != 0 {
			t.Fatalf("-o %s of one Task: exit %d, %v:\n%s%s", format, one.code, err, one.stdout, one.stderr)
		}
		if tk.APIVersion != "tasker.dev/v1alpha1" || tk.Kind != "Task" || tk.Name != "alpha" || tk.Spec.Queue != "batch" ||
			tk.Status.Phase != taskerv1alpha1.TaskRunning || tk.ManagedFields != nil {
			t.Errorf("-o %s of one Task printed:\n%s", format, one.stdout)
		}
		all := taskerctl(t, "get", "-n", ns, "-o", format)
		var list unstructured.UnstructuredList
		if err := decode([]byte(all.stdout), &list.Object); err != nil || all.code != 0 {
			t.Fatalf("-o %s of the Tasks: exit %d, %v:\n%s%s", format, all.code, err, all.stdout, all.stderr)
		}
		items, _, _ := unstructured.NestedSlice(list.Object, "items")
		if list.GetAPIVersion() != "v1" || list.GetKind() != "List" || len(items) != 2 {
			t.Fatalf("-o %s of the Tasks printed:\n%s", format, all.stdout)
		}
		for i, name := range []string{"alpha", "beta"} {
			item := unstructured.Unstructured{Object: items[i].(map[string]any)}
			if item.GetAPIVersion() != "tasker.dev/v1alpha1" || item.GetKind() != "Task" || item.GetName() != name ||
				item.GetManagedFields() != nil {
				t.Errorf("-o %s of the Tasks: item %d is %v", format, i, item.Object)
			}
		}
	}
	if r := taskerctl(t, "get", "alpha", "-n", ns, "-o", "yaml", "--show-managed-fields"); !strings.Contains(r.stdout, "managedFields:") {
		t.Errorf("--show-managed-fields printed:\n%s", r.stdout)
	}
}

// TestOutputFormatErrors: an unknown -o fails before anything is read, naming the formats allowed; describe and
// history (views, not objects) allow json and yaml only.
func TestOutputFormatErrors(t *testing.T) {
	r := taskerctl(t, "get", "-o", "table")
	if r.code != exitOther || r.stdout != "" || !strings.HasPrefix(r.stderr,
		`error: unable to match a printer suitable for the output format "table", allowed formats are: custom-columns,`) ||
		!strings.Contains(r.stderr, ",wide,yaml\n") {
		t.Errorf("get -o table: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	// No such Task, nor database: the format is checked first.
	for _, args := range [][]string{{"describe", "nothing", "-o", "wide"}, {"history", "nothing", "-o", "name"}} {
		taskerctl(t, args...).want(t, exitOther, "", `error: unable to match a printer suitable for the output format "`+
			args[3]+`", allowed formats are: json,yaml`+"\n")
	}
	ns := getTasks(t)
	r = taskerctl(t, "describe", "alpha", "-n", ns, "-o", "json")
	var v struct{ Name, Phase string }
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || r.code != 0 || v.Name != "alpha" || v.Phase != "Running" {
		t.Errorf("describe -o json: exit %d, %v:\n%s%s", r.code, err, r.stdout, r.stderr)
	}
}

// TestGetMissingTask: kubectl's error and a non-zero exit, whatever the format.
func TestGetMissingTask(t *testing.T) {
	ns := getTasks(t)
	for _, args := range [][]string{{"get", "gone"}, {"get", "gone", "-o", "yaml"}, {"get", "alpha", "gone", "-o", "name"}} {
		taskerctl(t, append(args, "-n", ns)...).want(t, exitOther, "",
			`Error from server (NotFound): tasks.tasker.dev "gone" not found`+"\n")
	}
}

// TestNamespaceFlags: --namespace/-n, else the kubeconfig context's namespace (--context picks the context), and
// -A for every namespace.
func TestNamespaceFlags(t *testing.T) {
	ns1, ns2 := env.NewNamespace(t, "ns"), env.NewNamespace(t, "ns")
	createTask(t, ns1, "one", taskerv1alpha1.TaskRunning, nil)
	createTask(t, ns2, "two", taskerv1alpha1.TaskRunning, nil)

	// A kubeconfig whose current context is in ns1, and a second context in ns2.
	cfg, err := clientcmd.Load(env.KubeConfig())
	if err != nil {
		t.Fatal(err)
	}
	admin := *cfg.Contexts[cfg.CurrentContext]
	for name, ns := range map[string]string{"in-ns1": ns1, "in-ns2": ns2} {
		c := admin
		c.Namespace = ns
		cfg.Contexts[name] = &c
	}
	cfg.CurrentContext = "in-ns1"
	contexts := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, contexts); err != nil {
		t.Fatal(err)
	}

	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"-n", ns1}, "one"},
		{[]string{"--namespace", ns2}, "two"},
		{[]string{"--namespace=" + ns2}, "two"},
		{[]string{"--kubeconfig", contexts}, "one"},
		{[]string{"--kubeconfig", contexts, "--context", "in-ns2"}, "two"},
		{[]string{"--kubeconfig", contexts, "--context", "in-ns2", "-n", ns1}, "one"},
	} {
		taskerctl(t, append(tt.args, "get", "-o", "name")...).want(t, 0, "task.tasker.dev/"+tt.want+"\n", "")
	}

	r := taskerctl(t, "get", "-A")
	rows := tableCells(r.stdout)
	if r.code != 0 || len(rows) < 3 || !slices.Equal(rows[0], []string{"NAMESPACE", "NAME", "PHASE", "STEPS", "AGE"}) ||
		!slices.ContainsFunc(rows, func(c []string) bool { return slices.Equal(c, []string{ns1, "one", "Running", "0/1", ""}) }) ||
		!slices.ContainsFunc(rows, func(c []string) bool { return slices.Equal(c, []string{ns2, "two", "Running", "0/1", ""}) }) {
		t.Errorf("get -A: exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	taskerctl(t, "get", "-A", "one").want(t, exitOther, "",
		"error: a resource cannot be retrieved by name across all namespaces\n")
}

// TestImpersonation: --as reaches the apiserver: a user without rights is refused, one with a Role reads its
// namespace only.
func TestImpersonation(t *testing.T) {
	mine, other := env.NewNamespace(t, "as"), env.NewNamespace(t, "as")
	createTask(t, mine, "mine", taskerv1alpha1.TaskRunning, nil)
	grantTaskReader(t, mine, "reader")

	taskerctl(t, "--as", "nobody", "get", "-n", mine).want(t, exitOther, "", `Error from server (Forbidden): tasks.tasker.dev is forbidden: `+
		`User "nobody" cannot list resource "tasks" in API group "tasker.dev" in the namespace "`+mine+`"`+"\n")
	taskerctl(t, "--as", "reader", "get", "-n", mine, "-o", "name").want(t, 0, "task.tasker.dev/mine\n", "")
	taskerctl(t, "--as", "reader", "get", "mine", "-n", other).want(t, exitOther, "", `Error from server (Forbidden): tasks.tasker.dev "mine" is forbidden: `+
		`User "reader" cannot get resource "tasks" in API group "tasker.dev" in the namespace "`+other+`"`+"\n")
}

// grantTaskReader lets user get, list and watch the Tasks of ns (and nothing else).
func grantTaskReader(t *testing.T, ns, user string) {
	t.Helper()
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "task-reader"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{taskerv1alpha1.GroupVersion.Group}, Resources: []string{"tasks"},
			Verbs: []string{"get", "list", "watch"}}},
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: user},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
	}
	for _, obj := range []client.Object{role, binding} {
		if err := env.Client.Create(context.Background(), obj); err != nil {
			t.Fatal(err)
		}
	}
}

// TestGetCronTasks: `get crontasks` lists CronTasks with kubectl's columns (SCHEDULE, SUSPEND, ACTIVE, LAST,
// NEXT), by name too, and prints them with -o as it does Tasks.
func TestGetCronTasks(t *testing.T) {
	ns := env.NewNamespace(t, "getct")
	tz := "Europe/Berlin"
	for _, name := range []string{"nightly", "hourly"} {
		ct := &taskerv1alpha1.CronTask{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: taskerv1alpha1.CronTaskSpec{Schedule: "30 2 * * *", Task: taskerv1alpha1.CronTaskTaskSpec{
				Steps: []taskerv1alpha1.StepSpec{{Name: "a", Handler: "echo"}}}}}
		if name == "nightly" {
			ct.Spec.TimeZone = &tz
		} else {
			ct.Spec.Schedule, ct.Spec.Suspend = "@hourly", new(true)
		}
		if err := env.Client.Create(context.Background(), ct); err != nil {
			t.Fatal(err)
		}
	}
	r := taskerctl(t, "get", "crontasks", "-n", ns)
	want := [][]string{{"NAME", "SCHEDULE", "SUSPEND", "ACTIVE", "LAST", "NEXT", "AGE"},
		{"hourly", "@hourly", "true", "0", "<none>", "<none>", ""},
		{"nightly", "30", "2", "*", "*", "*", "(Europe/Berlin)", "false", "0", "<none>", "<none>", ""}}
	var got [][]string
	for line := range strings.Lines(r.stdout) {
		cells := strings.Fields(line)
		if len(got) > 0 { // AGE, last, depends on the clock
			cells[len(cells)-1] = ""
		}
		got = append(got, cells)
	}
	if r.code != 0 || !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("get crontasks: exit %d %s\n%s\nwant rows %q", r.code, r.stderr, r.stdout, want)
	}
	r = taskerctl(t, "get", "ctk", "nightly", "-n", ns, "-o", "jsonpath={.kind} {.spec.schedule}")
	if r.code != 0 || r.stdout != "CronTask 30 2 * * *" {
		t.Errorf("get ctk nightly -o jsonpath: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
	if r := taskerctl(t, "get", "crontasks", "nope", "-n", ns); r.code == 0 || !strings.Contains(r.stderr, `crontasks.tasker.dev "nope" not found`) {
		t.Errorf("a missing CronTask: exit %d %s", r.code, r.stderr)
	}
}
