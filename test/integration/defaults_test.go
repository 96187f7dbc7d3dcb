package integration

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
)

// TestStepDefaultsAreStored: the CRD schema sets the steps' static defaults, so a Task or TaskTemplate read back
// (kubectl get -o yaml) shows the policy each step runs with. backoff.max, whose default depends on base, stays
// unset: the operator derives it at admission.
func TestStepDefaultsAreStored(t *testing.T) {
	ns := newNamespace(t)
	steps := func() []taskerv1alpha1.StepSpec {
		s := []taskerv1alpha1.StepSpec{step("a", "echo"), step("b", "echo", "a"), step("c", "echo", "b")}
		s[1].Retry = &taskerv1alpha1.RetryPolicy{Backoff: &taskerv1alpha1.Backoff{Base: &metav1.Duration{Duration: 10 * time.Minute}}}
		s[2].TimeoutSeconds = ptr.To(int32(30))
		s[2].Retry = &taskerv1alpha1.RetryPolicy{MaxAttempts: ptr.To(int32(1)), Backoff: &taskerv1alpha1.Backoff{JitterPercent: ptr.To(int32(0))}}
		return s
	}
	want := []string{
		`{"name":"a","handler":"echo","timeoutSeconds":3600,"retry":{"maxAttempts":3,"backoff":{"base":"1s","jitterPercent":20}}}`,
		`{"name":"b","handler":"echo","dependsOn":["a"],"timeoutSeconds":3600,"retry":{"maxAttempts":3,"backoff":{"base":"10m0s","jitterPercent":20}}}`,
		`{"name":"c","handler":"echo","dependsOn":["b"],"timeoutSeconds":30,"retry":{"maxAttempts":1,"backoff":{"base":"1s","jitterPercent":0}}}`,
	}
	tk := task(steps()...)
	tmpl := &taskerv1alpha1.TaskTemplate{ObjectMeta: metav1.ObjectMeta{GenerateName: "tkt-"},
		Spec: taskerv1alpha1.TaskTemplateSpec{Steps: steps()}}
	for _, obj := range []client.Object{tk, tmpl} {
		obj.SetNamespace(ns)
		if err := env.Client.Create(ctxT(t), obj); err != nil {
			t.Fatalf("create: %v", err)
		}
		read := &unstructured.Unstructured{}
		read.SetGroupVersionKind(taskerv1alpha1.GroupVersion.WithKind(reflect.TypeOf(obj).Elem().Name()))
		if err := env.Client.Get(ctxT(t), client.ObjectKeyFromObject(obj), read); err != nil {
			t.Fatal(err)
		}
		got, _, _ := unstructured.NestedSlice(read.Object, "spec", "steps")
		if len(got) != len(want) {
			t.Fatalf("%s: %d steps read back, want %d", read.GetKind(), len(got), len(want))
		}
		for i, w := range want {
			if g, w := canonicalJSON(t, got[i]), canonicalJSON(t, json.RawMessage(w)); g != w {
				t.Errorf("%s step %d read back as\n%s\nwant\n%s", read.GetKind(), i, g, w)
			}
		}
	}
}

// canonicalJSON encodes v with sorted keys, so that equal documents compare equal as strings.
func canonicalJSON(t *testing.T, v any) string {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}
