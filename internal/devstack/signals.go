package devstack

import (
	"context"
	"fmt"
	"io"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
)

// SampleSignals lists the signals the steps of a sample Task wait for (spec.steps[].wait.signal), so that
// whoever runs the samples can send them, as a person approving would.
func SampleSignals(obj *unstructured.Unstructured) []string {
	steps, _, _ := unstructured.NestedSlice(obj.Object, "spec", "steps")
	var out []string
	for _, s := range steps {
		step, _ := s.(map[string]any)
		if sig, found, _ := unstructured.NestedString(step, "wait", "signal"); found && sig != "" {
			out = append(out, sig)
		}
	}
	return out
}

// SignalAction is the action that sends signal to a Task, with the demo as the sender.
func SignalAction(signal string) taskerv1alpha1.TaskAction {
	return taskerv1alpha1.TaskAction{ID: "demo-" + signal, Type: taskerv1alpha1.ActionSignal, Signal: signal,
		Reason: "sent by the demo"}
}

// signalLater sends the signals the sample Task ns/name waits for after delay, as `taskerctl signal` would, so
// that the demo shows the step waiting first.
func signalLater(ctx context.Context, c client.Client, out io.Writer, ns, name string, signals []string, delay time.Duration) {
	go func() {
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		var tk taskerv1alpha1.Task
		if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &tk); err != nil {
			fmt.Fprintf(out, "    could not signal %s: %v\n", name, err)
			return
		}
		base := tk.DeepCopy()
		for _, sig := range signals {
			tk.Spec.Actions = append(tk.Spec.Actions, SignalAction(sig))
		}
		if err := c.Patch(ctx, &tk, client.MergeFrom(base)); err != nil {
			fmt.Fprintf(out, "    could not signal %s: %v\n", name, err)
			return
		}
		for _, sig := range signals {
			fmt.Fprintf(out, "    signalled %s: %s (what `taskerctl -n %s signal %s %s` does)\n", name, sig, ns, name, sig)
		}
	}()
}
