package cli

import (
	"errors"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/internal/engine"
)

// With several databases one id names different tasks: a view is built only from the Task's own.
func TestCheckOwner(t *testing.T) {
	tk := &taskerv1alpha1.Task{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "t", UID: "uid-1"},
		Status: taskerv1alpha1.TaskStatus{TaskID: 7, Database: "east"}}
	if err := CheckOwner(tk, &engine.TaskState{ID: 7, ExternalKey: "uid-1"}); err != nil {
		t.Errorf("own task: %v", err)
	}
	err := CheckOwner(tk, &engine.TaskState{ID: 7, ExternalKey: "uid-2"})
	if !errors.Is(err, ErrOtherDatabase) || !strings.Contains(err.Error(), `admitted into database "east"`) {
		t.Errorf("another task: %v", err)
	}
}
