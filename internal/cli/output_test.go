package cli

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
)

// printFlags returns print flags parsed from args, as get's command line would give them.
func printFlags(t *testing.T, args ...string) *PrintFlags {
	t.Helper()
	f := NewPrintFlags()
	cmd := &cobra.Command{Use: "get"}
	f.AddFlags(cmd)
	if err := cmd.ParseFlags(args); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestPrintFlagsTableFormats(t *testing.T) {
	for _, tt := range []struct {
		args []string
		wide bool
	}{{nil, false}, {[]string{"-o", "wide"}, true}} {
		f := printFlags(t, tt.args...)
		if p, err := f.ToPrinter(); p != nil || err != nil {
			t.Errorf("%v: printer %T, %v; want the table", tt.args, p, err)
		}
		if f.Wide() != tt.wide {
			t.Errorf("%v: Wide() = %t", tt.args, f.Wide())
		}
	}
}

func TestPrintFlagsObjectFormats(t *testing.T) {
	tk := &taskerv1alpha1.Task{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "order-1042"},
		Status: taskerv1alpha1.TaskStatus{Phase: taskerv1alpha1.TaskRunning}}
	tk.SetGroupVersionKind(taskerv1alpha1.GroupVersion.WithKind("Task"))
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"-o", "name"}, "task.tasker.dev/order-1042\n"},
		{[]string{"-o", "jsonpath={.status.phase}"}, "Running"},
		{[]string{"-o", "go-template={{.metadata.namespace}}"}, "shop"},
		{[]string{"--template", "{{.metadata.name}}"}, "order-1042"},
		{[]string{"-o", "custom-columns=NAME:.metadata.name,PHASE:.status.phase"}, "NAME         PHASE\norder-1042   Running\n"},
		{[]string{"-o", "json"}, `"apiVersion": "tasker.dev/v1alpha1"`},
		{[]string{"-o", "yaml"}, "kind: Task\n"},
	} {
		p, err := printFlags(t, tt.args...).ToPrinter()
		if err != nil || p == nil {
			t.Fatalf("%v: printer %v, %v", tt.args, p, err)
		}
		var b strings.Builder
		if err := p.PrintObj(tk, &b); err != nil {
			t.Fatalf("%v: %v", tt.args, err)
		}
		if !strings.Contains(b.String(), tt.want) {
			t.Errorf("%v printed:\n%s\nwant it to contain:\n%s", tt.args, b.String(), tt.want)
		}
	}
}

func TestPrintFlagsUnknownFormat(t *testing.T) {
	_, err := printFlags(t, "-o", "table").ToPrinter()
	if !genericclioptions.IsNoCompatiblePrinterError(err) {
		t.Fatalf("got %v, want NoCompatiblePrinterError", err)
	}
	for _, format := range []string{`"table"`, "custom-columns", "json", "jsonpath", "name", "wide", "yaml"} {
		if !strings.Contains(err.Error(), format) {
			t.Errorf("the error %q does not name %s", err, format)
		}
	}
}

func TestObjects(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := taskerv1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	tasks := func(names ...string) []taskerv1alpha1.Task {
		var items []taskerv1alpha1.Task
		for _, n := range names {
			items = append(items, taskerv1alpha1.Task{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: n}})
		}
		return items
	}

	obj, err := Objects(scheme, tasks("a"), true)
	if err != nil {
		t.Fatal(err)
	}
	if tk, ok := obj.(*taskerv1alpha1.Task); !ok || tk.APIVersion != "tasker.dev/v1alpha1" || tk.Kind != "Task" || tk.Name != "a" {
		t.Errorf("one Task by name: got %#v, want the Task with its apiVersion and kind", obj)
	}

	for _, tt := range []struct {
		names  []string
		single bool
	}{{[]string{"a", "b"}, false}, {[]string{"a"}, false}, {nil, false}, {[]string{"a", "b"}, true}} {
		obj, err := Objects(scheme, tasks(tt.names...), tt.single)
		if err != nil {
			t.Fatal(err)
		}
		list, ok := obj.(*unstructured.UnstructuredList)
		if !ok || list.GetAPIVersion() != "v1" || list.GetKind() != "List" || len(list.Items) != len(tt.names) {
			t.Fatalf("%v (single %t): got %#v, want a v1 List of %d", tt.names, tt.single, obj, len(tt.names))
		}
		for i, item := range list.Items {
			if item.GetAPIVersion() != "tasker.dev/v1alpha1" || item.GetKind() != "Task" || item.GetName() != tt.names[i] {
				t.Errorf("%v: item %d is %s %s %s", tt.names, i, item.GetAPIVersion(), item.GetKind(), item.GetName())
			}
		}
	}
}

func TestViewFormats(t *testing.T) {
	v := HistoryEntry{Step: "ship", From: "running", To: "succeeded", Reason: "Completed"}
	for format, want := range map[string]string{"json": "\"step\": \"ship\",\n", "yaml": "step: ship\n"} {
		if err := CheckViewFormat(format); err != nil {
			t.Errorf("%s: %v", format, err)
		}
		var b strings.Builder
		if err := PrintView(&b, format, v); err != nil || !strings.Contains(b.String(), want) {
			t.Errorf("%s printed %q, %v; want it to contain %q", format, b.String(), err, want)
		}
	}
	if err := CheckViewFormat(""); err != nil {
		t.Errorf("no -o: %v", err)
	}
	for _, format := range []string{"name", "wide", "xml"} {
		err := CheckViewFormat(format)
		if !genericclioptions.IsNoCompatiblePrinterError(err) || !strings.Contains(err.Error(), "json,yaml") {
			t.Errorf("%s: got %v, want an error naming json and yaml", format, err)
		}
		if err := PrintView(&strings.Builder{}, format, v); err == nil {
			t.Errorf("PrintView printed %s", format)
		}
	}
}
