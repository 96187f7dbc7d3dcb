package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/yaml"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
)

// FuzzTaskValidation feeds the Task webhook random Task documents (JSON, as the apiserver hands them over after
// its schema let them through, or not): it never panics, and every rejection is a field error whose path lies
// under spec and says why (issue 13). Seeds: the samples and shapes that reach each rule. `make fuzz` runs it
// longer; `go test` runs the seeds and the corpus in testdata/fuzz.
func FuzzTaskValidation(f *testing.F) {
	samples, _ := filepath.Glob(filepath.Join("..", "..", "config", "samples", "tasker_v1alpha1_task*.yaml"))
	for _, file := range samples {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		j, err := yaml.ToJSON(data)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(j)
	}
	for _, seed := range []string{
		`{"spec":{"steps":[{"name":"a","handler":"h","dependsOn":["a"]}]}}`,
		`{"spec":{"steps":[{"name":"a","handler":"h","dependsOn":["b"]},{"name":"b","handler":"h","dependsOn":["a"]}]}}`,
		`{"spec":{"steps":[{"name":"a","handler":"h"},{"name":"a","handler":"h"}]}}`,
		`{"spec":{"steps":[{"name":"a","handler":"h","dependsOn":["x","x",""]}],"actions":[{"id":"1","type":"Retry","step":"zz","result":{}}]}}`,
		`{"spec":{"templateRef":{"name":"t"},"actions":[{"id":"1","type":"Complete","step":"a","inputs":[1]}]}}`,
		`{"spec":{"context":{"k":"` + strings.Repeat("x", 70) + `"},"steps":[]}}`,
		`{"spec":{}}`,
		`{}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		var task taskerv1alpha1.Task
		if err := json.Unmarshal(doc, &task); err != nil {
			return // the apiserver's decoding refuses it before any webhook
		}
		for _, fe := range ValidateTask(&task) {
			if !strings.HasPrefix(fe.Field, "spec") || fe.Error() == "" {
				t.Fatalf("field error without a spec path or message: %#v", fe)
			}
		}
		_, err := TaskValidator{}.ValidateCreate(context.Background(), &task)
		var status *apierrors.StatusError
		if err != nil && (!errors.As(err, &status) || !apierrors.IsInvalid(err) || len(status.ErrStatus.Details.Causes) == 0) {
			t.Fatalf("rejection that names no field: %v", err)
		}
	})
}
