package conditions

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestSet(t *testing.T) {
	var conds []metav1.Condition
	if !True(&conds, 3, "Ready", "Fine", "all good") {
		t.Fatal("first Set reported no change")
	}
	if conds[0].ObservedGeneration != 3 || conds[0].LastTransitionTime.IsZero() {
		t.Fatalf("condition not stamped: %+v", conds[0])
	}
	first := conds[0].LastTransitionTime
	if True(&conds, 3, "Ready", "Fine", "all good") {
		t.Fatal("identical Set reported a change")
	}
	if !True(&conds, 4, "Ready", "Fine", "all good") || conds[0].ObservedGeneration != 4 {
		t.Fatal("a new generation must be recorded")
	}
	if conds[0].LastTransitionTime != first {
		t.Fatal("transition time moved without a status change")
	}
	if !False(&conds, 4, "Ready", "Broken", strings.Repeat("x", 5000)) || len(conds[0].Message) != MaxMessageLength {
		t.Fatalf("message not trimmed: %d", len(conds[0].Message))
	}
	if !IsTrue([]metav1.Condition{{Type: "A", Status: metav1.ConditionTrue}}, "A") || IsTrue(conds, "Ready") {
		t.Fatal("IsTrue")
	}
	if !Remove(&conds, "Ready") || len(conds) != 0 {
		t.Fatal("Remove")
	}
}
