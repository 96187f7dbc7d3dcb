package v1alpha1

import (
	"encoding/json"
	"strings"
	"testing"
)

// An idle pool's counts are written as 0: kubectl's printer columns show a missing field as blank.
func TestWorkerPoolStatusWritesZeroCounts(t *testing.T) {
	b, err := json.Marshal(WorkerPoolStatus{})
	if err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{`"backlog":0`, `"desiredReplicas":0`, `"currentReplicas":0`, `"readyReplicas":0`} {
		if !strings.Contains(string(b), field) {
			t.Errorf("status %s lacks %s", b, field)
		}
	}
}
