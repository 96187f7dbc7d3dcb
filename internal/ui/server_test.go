package ui

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/internal/engine"
)

func newTestServer(c Cluster, db Database) *Server {
	return New(Options{Cluster: c, Database: db, Now: func() time.Time { return at(60) }})
}

// get fetches path and returns the status and body.
func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code, rec.Body.String()
}

var (
	nodeRE = regexp.MustCompile(`<a class="node s-([a-z]+)[^"]*" href="\?step=([a-z-]+)"`)
	edgeRE = regexp.MustCompile(`class="edge" data-from="([a-z-]+)" data-to="([a-z-]+)"`)
)

func nodesOf(body string) map[string]string {
	out := map[string]string{}
	for _, m := range nodeRE.FindAllStringSubmatch(body, -1) {
		out[m[2]] = m[1]
	}
	return out
}

func edgesOf(body string) []string {
	var out []string
	for _, m := range edgeRE.FindAllStringSubmatch(body, -1) {
		out = append(out, m[1]+">"+m[2])
	}
	return out
}

func TestTaskListFiltersByNamespacePhaseAndTemplate(t *testing.T) {
	mk := func(ns, name string, phase taskerv1alpha1.TaskPhase, template string, created int) taskerv1alpha1.Task {
		tk := taskerv1alpha1.Task{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: metav1.NewTime(at(created))}}
		tk.Status.Phase = phase
		if template != "" {
			tk.Spec.TemplateRef = &taskerv1alpha1.TemplateReference{Name: template}
		}
		return tk
	}
	c := &fakeCluster{tasks: []taskerv1alpha1.Task{
		mk("shop", "a", taskerv1alpha1.TaskSucceeded, "report", 1),
		mk("shop", "b", taskerv1alpha1.TaskRunning, "", 2),
		mk("ops", "c", taskerv1alpha1.TaskSucceeded, "report", 3),
		mk("ops", "d", "", "", 4),
	}}
	h := newTestServer(c, nil).Handler()
	rows := func(path string) []string {
		code, body := get(t, h, path)
		if code != http.StatusOK {
			t.Fatalf("%s: %d\n%s", path, code, body)
		}
		var out []string
		for _, m := range regexp.MustCompile(`data-task="([a-z/]+)" data-phase="([A-Za-z]+)"`).FindAllStringSubmatch(body, -1) {
			out = append(out, m[1]+":"+m[2])
		}
		return out
	}
	for path, want := range map[string]string{
		"/tasks":                                  "ops/d:Admitting ops/c:Succeeded shop/b:Running shop/a:Succeeded",
		"/tasks?namespace=shop":                   "shop/b:Running shop/a:Succeeded",
		"/tasks?phase=Succeeded":                  "ops/c:Succeeded shop/a:Succeeded",
		"/tasks?template=report&namespace=shop":   "shop/a:Succeeded",
		"/tasks?namespace=gone":                   "",
		"/tasks?phase=Succeeded&template=nothing": "",
	} {
		if got := strings.Join(rows(path), " "); got != want {
			t.Errorf("%s: rows %q, want %q", path, got, want)
		}
	}
	// The choices are the values the Tasks have, and a selected value stays one even when no Task has it.
	_, body := get(t, h, "/tasks?namespace=gone")
	for _, want := range []string{`<option>ops</option>`, `<option selected>gone</option>`, `<option>report</option>`,
		`<option>Admitting</option>`, "0 of 4"} {
		if !strings.Contains(body, want) {
			t.Errorf("list lacks %s", want)
		}
	}
}

func TestTaskPageFromTheDatabase(t *testing.T) {
	c := &fakeCluster{tasks: []taskerv1alpha1.Task{orderTask("shop")}}
	db := &fakeDatabase{state: orderState(), history: chargeHistory(),
		inputs: map[string]json.RawMessage{"charge-payment": json.RawMessage(`{"failTimes":1}`)}}
	h := newTestServer(c, db).Handler()
	code, body := get(t, h, "/tasks/shop/order-fulfillment?step=charge-payment")
	if code != http.StatusOK {
		t.Fatalf("status %d\n%s", code, body)
	}
	nodes := nodesOf(body)
	want := map[string]string{"validate-order": "succeeded", "charge-payment": "succeeded", "reserve-inventory": "succeeded", "ship": "running"}
	if !maps.Equal(nodes, want) {
		t.Errorf("nodes %v, want %v", nodes, want)
	}
	edges := edgesOf(body)
	slices.Sort(edges)
	if got := strings.Join(edges, " "); got != "charge-payment>ship reserve-inventory>ship validate-order>charge-payment validate-order>reserve-inventory" {
		t.Errorf("edges %s", got)
	}
	if strings.Contains(body, "--database-url") {
		t.Error("the page asks for a database URL although it has the database")
	}
	// The panel: both attempts with their workers, the first one's error, the inputs and the timings.
	attempts := regexp.MustCompile(`(?s)<tr data-attempt="(\d)" data-outcome="([a-z]+)"><td>\d</td><td>(w\d)</td>`).FindAllStringSubmatch(body, -1)
	if len(attempts) != 2 || attempts[0][2] != "retrying" || attempts[0][3] != "w1" || attempts[1][2] != "succeeded" || attempts[1][3] != "w2" {
		t.Errorf("attempt rows %v", attempts)
	}
	for _, want := range []string{"card processor timed out", `&#34;failTimes&#34;: 1`, "waited in the queue</dt><dd>1.0s",
		"first start to end</dt><dd>6.0s", `class="node s-succeeded sel"`} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	// The panel alone, as the script fetches it.
	code, frag := get(t, h, "/tasks/shop/order-fulfillment/steps/charge-payment")
	if code != http.StatusOK || !strings.HasPrefix(frag, `<section class="step" data-step="charge-payment">`) || strings.Contains(frag, "<html") {
		t.Errorf("panel fragment: %d\n%s", code, frag)
	}
	if code, _ := get(t, h, "/tasks/shop/order-fulfillment/steps/nope"); code != http.StatusNotFound {
		t.Errorf("panel of an unknown step: %d, want 404", code)
	}
}

func TestTaskPageFromTheStatusSaysWhatIsMissing(t *testing.T) {
	c := &fakeCluster{tasks: []taskerv1alpha1.Task{orderTask("shop")}}
	h := newTestServer(c, nil).Handler()
	_, body := get(t, h, "/tasks/shop/order-fulfillment?step=validate-order")
	// The status lists two steps; the spec has the other two, in an unknown state.
	want := map[string]string{"validate-order": "succeeded", "charge-payment": "retrying", "reserve-inventory": "unknown", "ship": "unknown"}
	if got := nodesOf(body); !maps.Equal(got, want) {
		t.Errorf("nodes %v, want %v", got, want)
	}
	if n := len(edgesOf(body)); n != 4 {
		t.Errorf("%d edges, want 4 (from the spec)", n)
	}
	for _, want := range []string{"Step details need the database", "start the UI with <code>--database-url</code>",
		`&#34;checks&#34;`} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %s", want)
		}
	}
}

func TestDatabaseErrorsFallBackToTheStatus(t *testing.T) {
	c := &fakeCluster{tasks: []taskerv1alpha1.Task{orderTask("shop")}}
	dbErr := &engine.DatabaseError{Op: "read task", Err: errors.New(`pq: relation "tasker.steps" does not exist`)}
	h := newTestServer(c, &fakeDatabase{err: dbErr}).Handler()
	code, body := get(t, h, "/tasks/shop/order-fulfillment")
	if code != http.StatusOK || !strings.Contains(body, "Step details cannot be read from the database: "+esc(dbErr.Error())) {
		t.Errorf("%d: the page does not say that the database failed\n%s", code, body)
	}
	if strings.Contains(body, "relation") {
		t.Error("the page shows the database's own error")
	}
	if len(nodesOf(body)) != 4 {
		t.Errorf("graph of the status: %v", nodesOf(body))
	}
}

func TestUnknownTaskIsNotFound(t *testing.T) {
	h := newTestServer(&fakeCluster{}, nil).Handler()
	if code, body := get(t, h, "/tasks/shop/nope"); code != http.StatusNotFound || !strings.Contains(body, "There is no Task shop/nope") {
		t.Errorf("%d\n%s", code, body)
	}
}

func TestEventsStreamTheChangesAPageWatches(t *testing.T) {
	s := newTestServer(&fakeCluster{}, nil)
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/events", nil)
	req.Header.Set("Accept-Encoding", "gzip") // the stream is never compressed
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" || resp.Header.Get("Content-Encoding") != "" {
		t.Fatalf("content type %q, encoding %q", ct, resp.Header.Get("Content-Encoding"))
	}
	buf := make([]byte, 64)
	if n, err := resp.Body.Read(buf); err != nil || !strings.HasPrefix(string(buf[:n]), "retry:") {
		t.Fatalf("stream opening %q, %v", buf[:n], err)
	}
	tk := orderTask("shop")
	s.Observe(&tk)
	var got strings.Builder
	for !strings.Contains(got.String(), "data: task shop/order-fulfillment\n\n") {
		n, err := resp.Body.Read(buf)
		if err != nil {
			t.Fatalf("stream so far %q: %v", got.String(), err)
		}
		got.Write(buf[:n])
	}
}

func TestBrokerCoalescesAndOverflows(t *testing.T) {
	b := newBroker()
	sub := b.subscribe()
	for range 3 {
		b.publish("task a/b")
	}
	if got := b.take(sub); len(got) != 1 || got[0] != "task a/b" {
		t.Errorf("three changes of one Task: %v, want one", got)
	}
	for i := range maxPending + 1 {
		b.publish("task a/" + strconv.Itoa(i))
	}
	if got := b.take(sub); len(got) != 1 || got[0] != "all" {
		t.Errorf("after an overflow: %d changes, want [all]", len(got))
	}
	b.unsubscribe(sub)
	b.publish("task a/b")
	if got := b.take(sub); len(got) != 0 {
		t.Errorf("an unsubscribed page still gets %v", got)
	}
}

func TestGuardRefusesOtherHosts(t *testing.T) {
	s := New(Options{Cluster: &fakeCluster{}, AllowedHosts: []string{"127.0.0.1:8642"}})
	req := httptest.NewRequest(http.MethodGet, "/tasks", nil)
	req.Host = "evil.example:8642"
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusMisdirectedRequest {
		t.Errorf("foreign host: %d, want 421", rec.Code)
	}
	req.Host = "127.0.0.1:8642"
	rec = httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || !strings.Contains(rec.Header().Get("Content-Security-Policy"), "default-src 'self'") {
		t.Errorf("own host: %d, CSP %q", rec.Code, rec.Header().Get("Content-Security-Policy"))
	}
}

func TestPagesAreCompressedAndAssetsCached(t *testing.T) {
	c := &fakeCluster{tasks: []taskerv1alpha1.Task{orderTask("shop")}}
	h := newTestServer(c, nil).Handler()
	req := httptest.NewRequest(http.MethodGet, "/tasks/shop/order-fulfillment", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Header().Get("Content-Encoding") != "gzip" {
		t.Fatalf("not compressed: %v", rec.Header())
	}
	zr, err := gzip.NewReader(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil || !strings.Contains(string(plain), `id="dag"`) {
		t.Fatalf("decompressed page: %v\n%.200s", err, plain)
	}
	asset := regexp.MustCompile(`src="(/static/ui\.js\?v=[0-9a-f]{12})"`).FindStringSubmatch(string(plain))
	if asset == nil {
		t.Fatal("the page does not link the versioned script")
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, asset[1], nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Header().Get("Cache-Control"), "immutable") ||
		!strings.Contains(rec.Body.String(), "EventSource") {
		t.Errorf("script: %d %v", rec.Code, rec.Header())
	}
	if code, _ := get(t, h, "/static/"); code != http.StatusNotFound {
		t.Errorf("asset listing: %d, want 404", code)
	}
}

// A map step (forEach) is one stacked box with its finished and total instances, and its panel counts them by
// state: however many instances, the graph has one node for them.
func TestMapStepIsOneStackedBox(t *testing.T) {
	tk := orderTask("shop")
	st := orderState()
	st.Steps[3] = engine.StepState{Name: "ship", Handler: "echo", Phase: engine.StepMapping, Attempts: 1,
		DependsOn: []string{"charge-payment", "reserve-inventory"}, Map: &engine.MapState{Items: 500,
			Counts: map[engine.StepPhase]int{engine.StepSucceeded: 480, engine.StepRunning: 8, engine.StepEnqueued: 12}}}
	h := newTestServer(&fakeCluster{tasks: []taskerv1alpha1.Task{tk}}, &fakeDatabase{state: st}).Handler()
	code, body := get(t, h, "/tasks/shop/order-fulfillment?step=ship")
	if code != http.StatusOK {
		t.Fatalf("status %d\n%s", code, body)
	}
	if n := nodesOf(body); len(n) != 4 || n["ship"] != "mapping" {
		t.Errorf("nodes %v", n)
	}
	for _, want := range []string{`class="node s-mapping group sel"`, `<rect class="stack"`, "mapping · 480/500 · echo",
		`<p class="map">map of 500 items: 480 succeeded, 8 running, 12 enqueued</p>`} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %s", want)
		}
	}
}

// A child workflow step is one stacked box with its template and its finished and total child steps; the child's
// steps are not drawn, and the step's panel lists them, each linking to its own panel.
func TestChildWorkflowIsOneStackedBox(t *testing.T) {
	tk := orderTask("shop")
	st := orderState()
	st.Steps[3] = engine.StepState{Name: "ship", Phase: engine.StepMapping, Attempts: 1,
		DependsOn: []string{"charge-payment", "reserve-inventory"}, Child: &engine.ChildState{Template: "shipping",
			Steps: 3, Counts: map[engine.StepPhase]int{engine.StepSucceeded: 2, engine.StepRunning: 1}}}
	st.Steps = append(st.Steps,
		engine.StepState{Name: "ship/label", Handler: "echo", Phase: engine.StepSucceeded, ChildOf: "ship"},
		engine.StepState{Name: "ship/pick", Handler: "echo", Phase: engine.StepSucceeded, ChildOf: "ship"},
		engine.StepState{Name: "ship/send", Handler: "echo", Phase: engine.StepRunning, ChildOf: "ship",
			DependsOn: []string{"ship/label", "ship/pick"}})
	h := newTestServer(&fakeCluster{tasks: []taskerv1alpha1.Task{tk}}, &fakeDatabase{state: st}).Handler()
	code, body := get(t, h, "/tasks/shop/order-fulfillment?step=ship")
	if code != http.StatusOK {
		t.Fatalf("status %d\n%s", code, body)
	}
	if n := nodesOf(body); len(n) != 4 || n["ship"] != "mapping" {
		t.Errorf("nodes %v, want the 4 of the Task (the child's steps in ship's box)", n)
	}
	for _, want := range []string{`class="node s-mapping group child sel"`, "mapping · 2/3 · ⤷ shipping",
		`<p class="map">child workflow shipping: 3 steps: 2 succeeded, 1 running</p>`,
		`<a href="?step=ship%2fsend" data-step="ship/send">ship/send</a> <span class="chip s-running">running</span>`} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	if _, panel := get(t, h, "/tasks/shop/order-fulfillment?step=ship/send"); !strings.Contains(panel, `in the child workflow of <a href="?step=ship" data-step="ship">ship</a>`) {
		t.Errorf("a child step's panel does not link back to its step")
	}
}

// The CronTasks page: each CronTask with its schedule, state, times and a link to the Tasks it made (the list
// filtered by its label); hidden with a note when the credentials may not list CronTasks.
func TestCronTasksPage(t *testing.T) {
	tz := "Europe/Berlin"
	ct := taskerv1alpha1.CronTask{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "nightly"},
		Spec:   taskerv1alpha1.CronTaskSpec{Schedule: "30 2 * * *", TimeZone: &tz, ConcurrencyPolicy: taskerv1alpha1.ConcurrencyForbid},
		Status: taskerv1alpha1.CronTaskStatus{ActiveCount: 1, LastScheduleTime: mtime(10), NextScheduleTime: mtime(50)}}
	made := orderTask("shop")
	made.Name, made.Labels = "nightly-1764988200", map[string]string{taskerv1alpha1.CronTaskLabel: "nightly"}
	c := &fakeCluster{tasks: []taskerv1alpha1.Task{orderTask("shop"), made}, cronTasks: []taskerv1alpha1.CronTask{ct}}
	h := newTestServer(c, nil).Handler()
	code, body := get(t, h, "/crontasks")
	if code != http.StatusOK {
		t.Fatalf("status %d\n%s", code, body)
	}
	for _, want := range []string{`data-crontask="shop/nightly"`, "<code>30 2 * * *</code> Europe/Berlin · Forbid",
		`href="/tasks?namespace=shop&amp;crontask=nightly">1 Task</a>`, `aria-current="page">CronTasks`} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	_, list := get(t, h, "/tasks?namespace=shop&crontask=nightly")
	if !strings.Contains(list, `data-task="shop/nightly-1764988200"`) || strings.Contains(list, `data-task="shop/order-fulfillment"`) ||
		!strings.Contains(list, "made by CronTask <b>nightly</b>") {
		t.Errorf("the list filtered by CronTask:\n%s", list)
	}
	c.cronTasks, c.cronTasksErr = nil, ErrCronTasksHidden
	if _, body := get(t, h, "/crontasks"); !strings.Contains(body, "CronTasks are not shown: these credentials may not list CronTasks, or the cluster has none.") {
		t.Errorf("hidden CronTasks:\n%s", body)
	}
}

// A Task waiting for its concurrency group says so on its page.
func TestTaskPageShowsTheConcurrencyWait(t *testing.T) {
	tk := orderTask("shop")
	tk.Status.Concurrency = &taskerv1alpha1.ConcurrencyStatus{Group: "shop/deploy=acme", Waiting: true, Ahead: 2,
		Running: 1, MaxRunning: 1}
	h := newTestServer(&fakeCluster{tasks: []taskerv1alpha1.Task{tk}}, nil).Handler()
	_, body := get(t, h, "/tasks/shop/order-fulfillment")
	if want := "shop/deploy=acme: waiting for a slot, 2 ahead (1 of 1 running)"; !strings.Contains(body, want) {
		t.Errorf("page lacks %q", want)
	}
}
