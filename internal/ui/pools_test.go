package ui

import (
	"net/http"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
)

func pool(backlog int64, desired, ready int32) *taskerv1alpha1.WorkerPool {
	p := &taskerv1alpha1.WorkerPool{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "default"}}
	p.Spec.Queues = []string{"default"}
	p.Status = taskerv1alpha1.WorkerPoolStatus{Backlog: backlog, DesiredReplicas: desired, CurrentReplicas: desired, ReadyReplicas: ready}
	return p
}

func TestPoolHistoryKeepsChangesWithinTheWindow(t *testing.T) {
	h := newPoolHistory(time.Hour)
	h.record(pool(0, 1, 1), t0)
	h.record(pool(0, 1, 1), t0.Add(time.Minute)) // no change: not kept
	h.record(pool(40, 3, 1), t0.Add(10*time.Minute))
	h.record(pool(5, 3, 3), t0.Add(70*time.Minute))
	got, since := h.samples("shop", "default")
	if !since.Equal(t0) {
		t.Errorf("since %v, want %v", since, t0)
	}
	// The reading at t0 is older than the window and was followed by one that is too: it is dropped; the one at
	// 10 minutes says what the values were when the window opened.
	if len(got) != 2 || got[0].Backlog != 40 || got[1].Ready != 3 {
		t.Errorf("samples %+v", got)
	}
}

func TestPoolsPageChartsBacklogAndReplicas(t *testing.T) {
	p := pool(12, 3, 2)
	now := t0
	s := New(Options{Cluster: &fakeCluster{pools: []taskerv1alpha1.WorkerPool{*p}}, Now: func() time.Time { return now }})
	s.Observe(pool(0, 1, 1)) // what the watch saw at t0
	now = t0.Add(time.Hour)
	s.pools.record(pool(30, 3, 1), t0.Add(30*time.Minute))
	s.pools.record(p, t0.Add(45*time.Minute))
	code, body := get(t, s.Handler(), "/pools")
	if code != http.StatusOK {
		t.Fatalf("%d\n%s", code, body)
	}
	for _, want := range []string{`data-pool="shop/default"`, `<b class="backlog">12</b>`, `<b class="ready">2</b>`,
		"backlog ≤ 30 · replicas ≤ 3",
		// 30 minutes in (x 180), the backlog rises to 30 (the top, y 12) until 45 minutes (x 270), then 12 to now.
		`L180 12H270L270 `, `class="desired"`, `class="ready"`} {
		if !strings.Contains(body, want) {
			t.Errorf("pools page lacks %s\n%s", want, body)
		}
	}
}

func TestPoolsPageSaysWhenPoolsAreHidden(t *testing.T) {
	h := newTestServer(&fakeCluster{poolsErr: ErrPoolsHidden}, nil).Handler()
	if code, body := get(t, h, "/pools"); code != http.StatusOK || !strings.Contains(body, "WorkerPools are not shown: these credentials may not list WorkerPools") {
		t.Errorf("%d\n%s", code, body)
	}
}

func TestChartLeavesTheTimeBeforeTheFirstReadingBlank(t *testing.T) {
	from := t0
	chart := string(renderChart([]poolSample{{At: t0.Add(30 * time.Minute), Backlog: 4, Desired: 2, Ready: 2}}, from, t0.Add(time.Hour)))
	if !strings.Contains(chart, `d="M180 12H360V82H180Z"`) {
		t.Errorf("backlog area: %s", chart)
	}
	if empty := string(renderChart(nil, from, t0.Add(time.Hour))); strings.Contains(empty, "<path") {
		t.Errorf("a chart without readings draws %s", empty)
	}
}
