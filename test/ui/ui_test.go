package ui

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/internal/testenv"
)

// TestDemoWorkflowsInTheBrowser follows the demo's samples through the UI: the list updates without a reload
// when the Tasks finish, the order-fulfilment Task is drawn with its 4 steps and 4 edges, and the panel of its
// step that failed once shows both attempts.
func TestDemoWorkflowsInTheBrowser(t *testing.T) {
	ns := env.NewNamespace(t, "ui")
	tasks := applySamples(t, ns)
	if !slices.Contains(tasks, "order-fulfillment") {
		t.Fatalf("the samples have no order-fulfillment Task: %v", tasks)
	}
	for _, name := range tasks {
		waitTask(t, ns, name, time.Minute, "admitted", func(tk *taskerv1alpha1.Task) bool { return tk.Status.TaskID != 0 })
	}
	// The sample pool's reading of its backlog (every 5 s) sees the steps waiting, for its chart.
	testenv.WaitFor(t, 30*time.Second, "the pool to read a backlog", func() (bool, error) {
		var p taskerv1alpha1.WorkerPool
		err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "default-workers"}, &p)
		return err == nil && p.Status.Backlog > 0, err
	})
	browser := newBrowser(t)

	// The list, before any worker runs: no Task has finished.
	act(t, browser, 30*time.Second, chromedp.Navigate(uiURL+"tasks?namespace="+ns))
	waitJS(t, browser, 10*time.Second, "the live updates to connect", `document.querySelector("#live.on")`)
	rowPhase := func(name string) string {
		return fmt.Sprintf(`(document.querySelector('#tasks tr[data-task=%s]') || {dataset: {}}).dataset.phase`, jsString(ns+"/"+name))
	}
	phase := eval[string](t, browser, rowPhase("order-fulfillment")+` || ""`)
	if phase == "" || phase == "Succeeded" {
		t.Fatalf("order-fulfillment is %q in the list before any worker ran", phase)
	}
	eval[bool](t, browser, "window.stillThisPage = true")
	startWorker(t, ns, "ui-worker-1")
	for _, name := range tasks {
		waitJS(t, browser, time.Minute, name+" to be Succeeded in the list", rowPhase(name)+` === "Succeeded"`)
	}
	if !eval[bool](t, browser, "window.stillThisPage === true") {
		t.Fatal("the list was reloaded: it should update in place")
	}
	screenshot(t, browser, "tasks")

	// The Task page: 4 boxes, all succeeded, and the edges of the sample.
	act(t, browser, 30*time.Second, chromedp.Navigate(uiURL+"tasks/"+ns+"/order-fulfillment"))
	t.Logf("UI figures, order-fulfillment: %s", pageFigures(t, browser))
	nodes := eval[[]string](t, browser, `Array.from(document.querySelectorAll("#dag .node")).map(n => n.dataset.step + ":" + n.dataset.state)`)
	slices.Sort(nodes)
	if want := []string{"charge-payment:succeeded", "reserve-inventory:succeeded", "ship:succeeded", "validate-order:succeeded"}; !slices.Equal(nodes, want) {
		t.Errorf("nodes %v, want %v", nodes, want)
	}
	edges := eval[[]string](t, browser, `Array.from(document.querySelectorAll("#dag .edge")).map(e => e.dataset.from + ">" + e.dataset.to)`)
	slices.Sort(edges)
	if want := []string{"charge-payment>ship", "reserve-inventory>ship", "validate-order>charge-payment",
		"validate-order>reserve-inventory"}; !slices.Equal(edges, want) {
		t.Errorf("edges %v, want %v", edges, want)
	}
	// Every edge is drawn from its dependency's box to its dependant's, left to right.
	backwards := eval[int](t, browser, `Array.from(document.querySelectorAll("#dag .edge")).filter(e => {
		const box = s => document.querySelector('#dag .node[data-step="' + s + '"]').getBoundingClientRect();
		const p = e.getBoundingClientRect(), from = box(e.dataset.from), to = box(e.dataset.to);
		return !(Math.abs(p.left - from.right) < 2 && Math.abs(p.right - to.left) < 8);
	}).length`)
	if backwards != 0 {
		t.Errorf("%d edges do not run from their dependency's box to their dependant's", backwards)
	}

	// The panel of the step that failed once: both attempts, with their workers and the first one's error.
	act(t, browser, 10*time.Second, chromedp.Click(chromedp.CSS(`#dag .node[data-step="charge-payment"]`)))
	waitJS(t, browser, 10*time.Second, "the panel's attempts", `document.querySelectorAll('#panel [data-step="charge-payment"] #attempts tr[data-attempt]').length === 2`)
	attempts := eval[[]string](t, browser, `Array.from(document.querySelectorAll("#attempts tr[data-attempt]")).map(r => r.dataset.attempt + ":" + r.dataset.outcome + ":" + r.cells[1].textContent)`)
	if want := []string{"1:retrying:ui-worker-1", "2:succeeded:ui-worker-1"}; !slices.Equal(attempts, want) {
		t.Errorf("attempts %v, want %v", attempts, want)
	}
	panel := eval[string](t, browser, `document.getElementById("panel").innerText`)
	for _, want := range []string{"card processor timed out", `"failTimes": 1`, `"charged": true`, "waited in the queue"} {
		if !strings.Contains(panel, want) {
			t.Errorf("the panel lacks %q:\n%s", want, panel)
		}
	}
	if search := eval[string](t, browser, "location.search"); search != "?step=charge-payment" {
		t.Errorf("the address is %q: the panel should be linkable", search)
	}
	screenshot(t, browser, "task")

	// The WorkerPools page: the sample's pool, whose backlog comes back to 0 in place once the pool reads its
	// queue again, and its chart, which shows the backlog it had.
	// First the pool itself (polled every 5 s), so that a failure says whether the pool or the page lagged.
	testenv.WaitFor(t, time.Minute, "the WorkerPool to read a backlog of 0", func() (bool, error) {
		var wp taskerv1alpha1.WorkerPool
		if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "default-workers"}, &wp); err != nil {
			return false, err
		}
		return wp.Status.Backlog == 0, fmt.Errorf("backlog %d, database %q, conditions %+v", wp.Status.Backlog, wp.Status.Database, wp.Status.Conditions)
	})
	act(t, browser, 30*time.Second, chromedp.Navigate(uiURL+"pools"))
	pool := fmt.Sprintf(`document.querySelector('[data-pool=%s]')`, jsString(ns+"/default-workers"))
	waitJS(t, browser, 30*time.Second, "the pool's backlog to be 0", pool+` && `+pool+`.querySelector(".backlog").textContent === "0"`)
	if h := eval[float64](t, browser, pool+`.querySelector("svg.chart path.backlog").getBBox().height`); h < 10 {
		t.Errorf("the chart's backlog is %.0f px high: it does not show the backlog the pool had", h)
	}
	screenshot(t, browser, "pools")
}

// TestThousandStepTask measures the page of the largest Task the API allows (1,000 steps, 40 layers of 25, two
// dependencies each) in a fresh browser: time to the first frame with the whole graph, and page weight.
func TestThousandStepTask(t *testing.T) {
	ns := env.NewNamespace(t, "big")
	const n, width = 1000, 25
	tk := &taskerv1alpha1.Task{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "thousand"}}
	tk.Spec.Queue = "nobody_serves_this" // the steps stay pending: only the drawing is measured
	for i := range n {
		s := taskerv1alpha1.StepSpec{Name: fmt.Sprintf("step-%04d", i), Handler: "echo"}
		if i >= width {
			base := (i/width - 1) * width
			s.DependsOn = []string{fmt.Sprintf("step-%04d", base+i%width), fmt.Sprintf("step-%04d", base+(i+1)%width)}
		}
		tk.Spec.Steps = append(tk.Spec.Steps, s)
	}
	if err := env.Client.Create(context.Background(), tk); err != nil {
		t.Fatal(err)
	}
	waitTask(t, ns, "thousand", 2*time.Minute, "admitted", func(tk *taskerv1alpha1.Task) bool { return tk.Status.TaskID != 0 })

	browser := newBrowser(t)
	act(t, browser, time.Minute, chromedp.Navigate(uiURL+"tasks/"+ns+"/thousand"))
	counts := eval[struct{ Nodes, Pending, Edges int }](t, browser, `({Nodes: document.querySelectorAll("#dag .node").length,
		Pending: document.querySelectorAll('#dag .node[data-state="pending"], #dag .node[data-state="enqueued"]').length,
		Edges: document.querySelectorAll("#dag .edge").length})`)
	if counts.Nodes != n || counts.Pending != n || counts.Edges != 2*(n-width) {
		t.Errorf("drawn: %+v, want %d nodes, all pending or enqueued, and %d edges", counts, n, 2*(n-width))
	}
	f := pageFigures(t, browser)
	t.Logf("UI figures, 1,000-step Task: %s", f)
	screenshot(t, browser, "task-1000")
	if f.GraphDrawnMs > 15000 {
		t.Errorf("the 1,000-step graph took %.0f ms to draw", f.GraphDrawnMs)
	}
}

// figures are what the browser measured of one page load (Navigation and Resource Timing, Paint Timing).
type figures struct {
	// HTMLBytes is the page's body as sent (gzip) and HTMLDecodedBytes as parsed; AssetBytes the script and
	// stylesheet as sent.
	HTMLBytes, HTMLDecodedBytes, AssetBytes int
	// ServerMs is from the request to the first byte of the response; FirstPaintMs the first contentful
	// paint; GraphDrawnMs the first frame after the whole graph was in the page (ui.js's mark); all from the
	// start of the navigation.
	ServerMs, FirstPaintMs, GraphDrawnMs float64
}

func (f figures) String() string {
	return fmt.Sprintf("page %.1f KB sent (%.1f KB decoded) + assets %.1f KB; first byte %.0f ms, first contentful paint %.0f ms, graph drawn %.0f ms",
		float64(f.HTMLBytes)/1024, float64(f.HTMLDecodedBytes)/1024, float64(f.AssetBytes)/1024, f.ServerMs, f.FirstPaintMs, f.GraphDrawnMs)
}

func pageFigures(t *testing.T, browser context.Context) figures {
	t.Helper()
	waitJS(t, browser, 30*time.Second, "the paint timings", `performance.getEntriesByName("first-contentful-paint").length > 0 &&
		performance.getEntriesByName("tasker-graph-drawn").length > 0`)
	f := eval[figures](t, browser, `(() => {
		const nav = performance.getEntriesByType("navigation")[0];
		const assets = performance.getEntriesByType("resource").filter(r => r.name.includes("/static/"));
		const mark = (name) => (performance.getEntriesByName(name)[0] || {startTime: -1}).startTime;
		return {HTMLBytes: nav.encodedBodySize, HTMLDecodedBytes: nav.decodedBodySize,
			AssetBytes: assets.reduce((n, r) => n + r.encodedBodySize, 0),
			ServerMs: nav.responseStart - nav.startTime, FirstPaintMs: mark("first-contentful-paint"),
			GraphDrawnMs: mark("tasker-graph-drawn")};
	})()`)
	if f.HTMLBytes == 0 || f.AssetBytes == 0 || f.FirstPaintMs < 0 {
		t.Errorf("incomplete figures: %+v", f)
	}
	return f
}
