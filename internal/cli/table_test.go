package cli

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
)

// tableTasks are an inline Task, running, and one made from a template, failed.
func tableTasks(now time.Time) []taskerv1alpha1.Task {
	return []taskerv1alpha1.Task{
		{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "order-1042", CreationTimestamp: metav1.NewTime(now.Add(-90 * time.Second))},
			Spec:       taskerv1alpha1.TaskSpec{Steps: []taskerv1alpha1.StepSpec{{Name: "a", Handler: "echo"}}},
			Status: taskerv1alpha1.TaskStatus{Phase: taskerv1alpha1.TaskRunning, Progress: "0/1", Conditions: []metav1.Condition{
				{Type: taskerv1alpha1.TaskConditionReady, Status: metav1.ConditionFalse, Reason: "Running"},
			}},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Namespace: "reports", Name: "nightly", CreationTimestamp: metav1.NewTime(now.Add(-3 * time.Hour))},
			Spec: taskerv1alpha1.TaskSpec{TemplateRef: &taskerv1alpha1.TemplateReference{Name: "report"}, Queue: "batch",
				Priority: -5},
			Status: taskerv1alpha1.TaskStatus{Phase: taskerv1alpha1.TaskFailed, Progress: "2/3"},
		},
	}
}

func TestTable(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		opts TableOptions
		want string
	}{
		{"default", TableOptions{}, `
NAME         PHASE     STEPS   AGE
order-1042   Running   0/1     90s
nightly      Failed    2/3     3h
`},
		{"all namespaces", TableOptions{WithNamespace: true}, `
NAMESPACE   NAME         PHASE     STEPS   AGE
shop        order-1042   Running   0/1     90s
reports     nightly      Failed    2/3     3h
`},
		{"wide", TableOptions{Wide: true}, `
NAME         PHASE     STEPS   AGE   TEMPLATE   QUEUE    PRIORITY   REASON
order-1042   Running   0/1     90s   <none>     <none>   0          Running
nightly      Failed    2/3     3h    report     batch    -5         <none>
`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			if err := Table(&b, tableTasks(now), tt.opts, now); err != nil {
				t.Fatal(err)
			}
			if got, want := b.String(), strings.TrimPrefix(tt.want, "\n"); got != want {
				t.Errorf("got:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}
