package engine_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/tasker-operator/tasker-operator/internal/engine"
)

// With one worker, 50 high-priority tasks admitted after 500 low-priority ones on the same queue are all claimed
// before any of the low ones left; within a priority, steps are claimed in the order they were enqueued.
func TestPriorityClaimsHigherFirst(t *testing.T) {
	b := setup(t)
	const low, high = 500, 50
	ids := map[int64]int{} // task id -> priority
	for i := range low {
		id := b.admit(t, engine.TaskSpec{ExternalKey: fmt.Sprintf("low-%d", i), Queue: "prio",
			Steps: []engine.StepSpec{{Name: "a", Handler: "h"}}})
		ids[id] = 0
	}
	// One worker has already started on the low ones.
	first, err := b.engine.Claim(b.ctx, "prio", 10, time.Minute, "w")
	if err != nil || len(first) != 10 {
		t.Fatalf("claimed %d (%v)", len(first), err)
	}
	for i := range high {
		id := b.admit(t, engine.TaskSpec{ExternalKey: fmt.Sprintf("high-%d", i), Queue: "prio", Priority: 10,
			Steps: []engine.StepSpec{{Name: "a", Handler: "h"}}})
		ids[id] = 10
	}
	var order []int64
	for {
		steps, err := b.engine.Claim(b.ctx, "prio", 7, time.Minute, "w")
		if err != nil {
			t.Fatal(err)
		}
		if len(steps) == 0 {
			break
		}
		cs := make([]engine.Completion, len(steps))
		for i, s := range steps {
			order = append(order, s.TaskID)
			cs[i] = engine.Completion{Lease: s.Lease}
		}
		if _, err := b.engine.CompleteMany(b.ctx, cs); err != nil {
			t.Fatal(err)
		}
	}
	if len(order) != low+high-len(first) {
		t.Fatalf("claimed %d steps after the first batch, want %d", len(order), low+high-len(first))
	}
	for i, id := range order {
		want := 0
		if i < high {
			want = 10
		}
		if ids[id] != want {
			t.Fatalf("claim #%d was a task of priority %d, want %d (order: high ones first)", i, ids[id], want)
		}
		if i > 0 && ids[order[i-1]] == ids[id] && order[i-1] > id {
			t.Fatalf("claim #%d: task %d after task %d of the same priority (want FIFO)", i, id, order[i-1])
		}
	}
}

// Tasks whose priority is 0 leave their queue unprioritized: pgmq's plain read, and messages without a priority.
func TestPriorityZeroKeepsTheQueuePlain(t *testing.T) {
	b := setup(t)
	b.admit(t, engine.TaskSpec{Queue: "plain", Steps: []engine.StepSpec{{Name: "a", Handler: "h"}}})
	b.admit(t, engine.TaskSpec{Queue: "ranked", Priority: -5, Steps: []engine.StepSpec{{Name: "a", Handler: "h"}}})
	var plain, ranked bool
	var plainIdx, rankedIdx bool
	if err := b.pool.QueryRow(b.ctx, `
		SELECT (SELECT prioritized FROM tasker.queues WHERE name = 'plain'),
		       (SELECT prioritized FROM tasker.queues WHERE name = 'ranked'),
		       to_regclass('pgmq.q_plain_priority_idx') IS NOT NULL, to_regclass('pgmq.q_ranked_priority_idx') IS NOT NULL`).
		Scan(&plain, &ranked, &plainIdx, &rankedIdx); err != nil {
		t.Fatal(err)
	}
	if plain || plainIdx || !ranked || !rankedIdx {
		t.Errorf("plain: prioritized %v index %v; ranked: prioritized %v index %v", plain, plainIdx, ranked, rankedIdx)
	}
}
