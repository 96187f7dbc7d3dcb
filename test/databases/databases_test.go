// Package databases runs the operator against two PostgreSQL clusters: TaskerDatabases bind namespaces to
// databases, each namespace's Tasks land in its own database, each WorkerPool's workers (run by the test from the
// Deployment and the Secret the operator wrote, as a kubelet would) drain only their database, a cluster that
// stops leaves the other's Tasks running, a namespace moves only once its Tasks in the old database finished,
// and --database-url stays the default for the namespaces no TaskerDatabase selects.
package databases

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	dto "github.com/prometheus/client_model/go"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/controllers"
	"github.com/tasker-operator/tasker-operator/internal/engine"
	"github.com/tasker-operator/tasker-operator/internal/operator"
	"github.com/tasker-operator/tasker-operator/internal/pgcluster"
	"github.com/tasker-operator/tasker-operator/internal/pgtest"
	"github.com/tasker-operator/tasker-operator/internal/store"
	"github.com/tasker-operator/tasker-operator/internal/testenv"
)

const (
	secretsNS = "tasker-system"
	label     = "tasker.dev/database"
)

var (
	env *testenv.Env
	// clusterA holds the --database-url database and TaskerDatabase east; clusterB holds west.
	clusterA, clusterB     *pgcluster.Cluster
	flagURL, eastURL, west string
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	if os.Getenv(pgtest.EnvDatabaseURL) != "" {
		fmt.Println("skipping: the databases test stops clusters of its own, not " + pgtest.EnvDatabaseURL)
		return 0
	}
	ctx := context.Background()
	var err error
	for _, c := range []**pgcluster.Cluster{&clusterA, &clusterB} {
		if *c, err = pgcluster.Start(ctx, pgcluster.Options{}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer (*c).Stop()
	}
	for _, d := range []struct {
		url  *string
		c    *pgcluster.Cluster
		name string
	}{{&flagURL, clusterA, "flag"}, {&eastURL, clusterA, "east"}, {&west, clusterB, "west"}} {
		if *d.url, err = pgtest.CreateDatabaseIn(d.c.URL, d.name); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	flagDB, err := operator.NewDatabase(flagURL, store.Options{MaxConns: 4}, engine.Options{QueryTimeout: 2 * time.Second},
		false, testenv.Logger())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	env, err = testenv.Start(testenv.Options{Operator: operator.Options{Database: flagDB, UpkeepInterval: time.Second}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer env.Stop()
	return m.Run()
}

func TestTwoClusters(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := env.Client

	// The operator's Secrets and the two TaskerDatabases, one per cluster.
	mustCreate(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: secretsNS}})
	for name, u := range map[string]string{"east": eastURL, "west": west} {
		mustCreate(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: secretsNS, Name: "pg-" + name},
			StringData: map[string]string{"url": u}})
		mustCreate(t, &taskerv1alpha1.TaskerDatabase{ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: taskerv1alpha1.TaskerDatabaseSpec{
				SecretRef:            taskerv1alpha1.NamespacedSecretKeyRef{Namespace: secretsNS, Name: "pg-" + name},
				NamespaceSelector:    &metav1.LabelSelector{MatchLabels: map[string]string{label: name}},
				ProbeIntervalSeconds: 5,
			}})
	}
	// A TaskerDatabase named "default" is refused: the name is --database-url's.
	bad := &taskerv1alpha1.TaskerDatabase{ObjectMeta: metav1.ObjectMeta{Name: "default"},
		Spec: taskerv1alpha1.TaskerDatabaseSpec{SecretRef: taskerv1alpha1.NamespacedSecretKeyRef{Namespace: secretsNS, Name: "x"}}}
	if err := c.Create(ctx, bad); err == nil || !strings.Contains(err.Error(), "--database-url") {
		t.Errorf("TaskerDatabase named default: %v, want refused", err)
	}
	for _, name := range []string{"east", "west"} {
		waitDatabaseReady(t, name, metav1.ConditionTrue, time.Minute)
	}

	// Three namespaces: east's, west's, and one no TaskerDatabase selects (--database-url's).
	nsEast := labeledNamespace(t, "east")
	nsWest := labeledNamespace(t, "west")
	nsFlag := labeledNamespace(t, "")
	mustCreate(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: nsFlag, Name: "pg"}, StringData: map[string]string{"url": flagURL}})

	// A WorkerPool in each: east's and west's get their database's Secret; the flag database's names its own.
	for _, ns := range []string{nsEast, nsWest, nsFlag} {
		pool := &taskerv1alpha1.WorkerPool{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "workers"},
			Spec: taskerv1alpha1.WorkerPoolSpec{Queues: []string{"default"},
				Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "w", Image: "worker"}}}},
				Scaling:  taskerv1alpha1.ScalingSpec{MinReplicas: ptr(int32(1)), MaxReplicas: ptr(int32(1))}}}
		if ns == nsFlag {
			pool.Spec.Database = &taskerv1alpha1.DatabaseSecretRef{SecretName: "pg"}
		}
		mustCreate(t, pool)
	}
	// A second pool in the flag namespace without spec.database: the flag database shares no Secret.
	mustCreate(t, &taskerv1alpha1.WorkerPool{ObjectMeta: metav1.ObjectMeta{Namespace: nsFlag, Name: "nosecret"},
		Spec: taskerv1alpha1.WorkerPoolSpec{Queues: []string{"default"},
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "w", Image: "worker"}}}}}})
	testenv.WaitFor(t, 30*time.Second, "the pool without a Secret to report it", func() (bool, error) {
		var p taskerv1alpha1.WorkerPool
		if err := c.Get(ctx, types.NamespacedName{Namespace: nsFlag, Name: "nosecret"}, &p); err != nil {
			return false, err
		}
		cond := meta.FindStatusCondition(p.Status.Conditions, taskerv1alpha1.WorkerPoolConditionReady)
		return cond != nil && cond.Reason == "DatabaseSecretMissing" && strings.Contains(cond.Message, "spec.database is required"), nil
	})

	k := startKubelet(ctx, t, []string{nsEast, nsWest, nsFlag})

	// Tasks of each namespace land in their own database and are drained by their own pool.
	const n = 4
	for _, ns := range []string{nsEast, nsWest, nsFlag} {
		createTasks(t, ns, "first", n)
	}
	waitSucceeded(t, nsEast, "first", n, "east", 90*time.Second)
	waitSucceeded(t, nsWest, "first", n, "west", 90*time.Second)
	waitSucceeded(t, nsFlag, "first", n, taskerv1alpha1.DefaultDatabaseName, 90*time.Second)
	checkNamespaces(t, eastURL, nsEast)
	checkNamespaces(t, west, nsWest)
	checkNamespaces(t, flagURL, nsFlag)
	for ns, db := range map[string]string{nsEast: eastURL, nsWest: west, nsFlag: flagURL} {
		if got := k.urlOf(ns); got != db {
			t.Errorf("the workers of %s were given %s, want %s", ns, got, db)
		}
		var p taskerv1alpha1.WorkerPool
		if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "workers"}, &p); err != nil {
			t.Fatal(err)
		}
		if want := map[string]string{nsEast: "east", nsWest: "west", nsFlag: "default"}[ns]; p.Status.Database != want {
			t.Errorf("WorkerPool %s/workers: status.database %q, want %q", ns, p.Status.Database, want)
		}
	}
	checkStatus(t, "east", []string{nsEast})
	checkStatus(t, "west", []string{nsWest})

	// Cluster B stops: east's and the flag database's Tasks run to completion meanwhile; west's wait.
	clusterB.Pause()
	for _, ns := range []string{nsEast, nsWest, nsFlag} {
		createTasks(t, ns, "outage", n)
	}
	waitSucceeded(t, nsEast, "outage", n, "east", 90*time.Second)
	waitSucceeded(t, nsFlag, "outage", n, taskerv1alpha1.DefaultDatabaseName, 90*time.Second)
	waitDatabaseReady(t, "west", metav1.ConditionFalse, time.Minute)
	if up := gauge(t, "tasker_database_up", "west"); up != 0 {
		t.Errorf("tasker_database_up{database=west} = %v during the outage, want 0", up)
	}
	if up := gauge(t, "tasker_database_up", "east"); up != 1 {
		t.Errorf("tasker_database_up{database=east} = %v, want 1", up)
	}
	for _, tk := range listTasks(t, nsWest, "outage") {
		if tk.Status.Phase == taskerv1alpha1.TaskSucceeded {
			t.Errorf("%s succeeded with its database down", tk.Name)
		}
	}

	// Meanwhile west's namespace is relabelled for east: the move waits for its unfinished Tasks in west, and
	// east says so; a Task created now still goes to west.
	relabel(t, nsWest, "east")
	testenv.WaitFor(t, 30*time.Second, "TaskerDatabase east to report the waiting move", func() (bool, error) {
		td := getDatabase(t, "east")
		cond := meta.FindStatusCondition(td.Status.Conditions, taskerv1alpha1.DatabaseConditionNamespacesBound)
		return cond != nil && cond.Status == metav1.ConditionFalse && cond.Reason == controllers.DatabaseReasonMoveWaiting &&
			strings.Contains(cond.Message, "namespace "+nsWest+" moves from database west to east when its"), fmt.Errorf("%+v", cond)
	})
	createTasks(t, nsWest, "during-move", 1)
	testenv.WaitFor(t, 30*time.Second, "the Task created during the move to be bound to west", func() (bool, error) {
		tks := listTasks(t, nsWest, "during-move")
		return len(tks) == 1 && tks[0].Status.Database == "west", fmt.Errorf("%+v", tks)
	})

	// Cluster B returns: west's Tasks finish, then the namespace moves, and its new Tasks (and workers) go east.
	if err := clusterB.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	waitDatabaseReady(t, "west", metav1.ConditionTrue, time.Minute)
	waitSucceeded(t, nsWest, "outage", n, "west", 2*time.Minute)
	waitSucceeded(t, nsWest, "during-move", 1, "west", time.Minute)
	createTasks(t, nsWest, "moved", n)
	waitSucceeded(t, nsWest, "moved", n, "east", 2*time.Minute)
	testenv.WaitFor(t, 30*time.Second, "the moved namespace's workers to be given east", func() (bool, error) {
		return k.urlOf(nsWest) == eastURL, fmt.Errorf("%s", k.urlOf(nsWest))
	})
	checkNamespaces(t, eastURL, nsEast, nsWest)
	checkNamespaces(t, west, nsWest)
	testenv.WaitFor(t, 30*time.Second, "the database statuses after the move", func() (bool, error) {
		e, w := getDatabase(t, "east"), getDatabase(t, "west")
		return slices.Equal(e.Status.Namespaces, sorted(nsEast, nsWest)) && len(w.Status.Namespaces) == 0 &&
				meta.IsStatusConditionTrue(e.Status.Conditions, taskerv1alpha1.DatabaseConditionNamespacesBound),
			fmt.Errorf("east %v, west %v", e.Status, w.Status.Namespaces)
	})

	// West, with nothing unfinished left in it, is deleted: it disconnects and goes.
	if err := c.Delete(ctx, getDatabase(t, "west")); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 30*time.Second, "TaskerDatabase west to go", func() (bool, error) {
		err := c.Get(ctx, types.NamespacedName{Name: "west"}, &taskerv1alpha1.TaskerDatabase{})
		return apierrors.IsNotFound(err) && gauge(t, "tasker_database_up", "west") == -1, err
	})
}

// kubelet runs a worker per WorkerPool Deployment, from the Deployment's injected environment and the Secret it
// names, and restarts it when they change (as a rollout would).
type kubelet struct {
	mu   sync.Mutex
	urls map[string]string // namespace -> URL its workers were given
}

func startKubelet(ctx context.Context, t *testing.T, namespaces []string) *kubelet {
	k := &kubelet{urls: map[string]string{}}
	for _, ns := range namespaces {
		go k.run(ctx, t, ns)
	}
	return k
}

func (k *kubelet) urlOf(ns string) string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.urls[ns]
}

func (k *kubelet) run(ctx context.Context, t *testing.T, ns string) {
	var (
		current string
		stop    context.CancelFunc = func() {}
	)
	defer func() { stop() }()
	for ctx.Err() == nil {
		time.Sleep(100 * time.Millisecond)
		u, queues, err := podConfig(ctx, ns)
		if err != nil || u == "" {
			continue
		}
		if key := u + "|" + strings.Join(queues, ","); key != current {
			stop()
			current = key
			k.mu.Lock()
			k.urls[ns] = u
			k.mu.Unlock()
			wctx, cancel := context.WithCancel(ctx)
			stop = cancel
			go worker(wctx, u, queues)
		}
	}
}

// podConfig is what a worker Pod of the pool "workers" would see: TASKER_DATABASE_URL from its Secret, and
// TASKER_QUEUES.
func podConfig(ctx context.Context, ns string) (string, []string, error) {
	var dep appsv1.Deployment
	if err := env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: "workers"}, &dep); err != nil {
		return "", nil, err
	}
	var u string
	var queues []string
	for _, e := range dep.Spec.Template.Spec.Containers[0].Env {
		switch e.Name {
		case "TASKER_QUEUES":
			queues = strings.Split(e.Value, ",")
		case "TASKER_DATABASE_URL":
			ref := e.ValueFrom.SecretKeyRef
			var s corev1.Secret
			if err := env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: ref.Name}, &s); err != nil {
				return "", nil, err
			}
			u = string(s.Data[ref.Key])
		}
	}
	return u, queues, nil
}

// worker claims and completes steps of queues on u, reconnecting after errors, until ctx ends.
func worker(ctx context.Context, u string, queues []string) {
	for ctx.Err() == nil {
		pool, err := store.Open(ctx, u, store.Options{MaxConns: 2})
		if err != nil {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		eng := engine.New(pool, engine.Options{QueryTimeout: 2 * time.Second})
		for ctx.Err() == nil {
			idle := true
			for _, q := range queues {
				steps, err := eng.Claim(ctx, q, 8, 30*time.Second, "databases-test")
				if err != nil {
					time.Sleep(100 * time.Millisecond)
					continue
				}
				for _, s := range steps {
					idle = false
					_ = eng.Complete(ctx, s.Lease, s.Inputs)
				}
			}
			if idle {
				time.Sleep(50 * time.Millisecond)
			}
		}
		pool.Close()
	}
}

func mustCreate(t *testing.T, o client.Object) {
	t.Helper()
	if err := env.Client.Create(context.Background(), o); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create %T %s: %v", o, o.GetName(), err)
	}
}

func ptr[T any](v T) *T { return &v }

func labeledNamespace(t *testing.T, database string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "db-"}}
	if database != "" {
		ns.Labels = map[string]string{label: database}
	}
	if err := env.Client.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

func relabel(t *testing.T, ns, database string) {
	t.Helper()
	var obj corev1.Namespace
	if err := env.Client.Get(context.Background(), types.NamespacedName{Name: ns}, &obj); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(obj.DeepCopy())
	obj.Labels[label] = database
	if err := env.Client.Patch(context.Background(), &obj, patch); err != nil {
		t.Fatal(err)
	}
}

// createTasks creates n two-step chains named <prefix>-<i>.
func createTasks(t *testing.T, ns, prefix string, n int) {
	t.Helper()
	for i := range n {
		mustCreate(t, &taskerv1alpha1.Task{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("%s-%d", prefix, i),
			Labels: map[string]string{"batch": prefix}},
			Spec: taskerv1alpha1.TaskSpec{Steps: []taskerv1alpha1.StepSpec{
				{Name: "a", Handler: "echo", Inputs: &apiextensionsv1.JSON{Raw: []byte(`{"n":1}`)}},
				{Name: "b", Handler: "echo", DependsOn: []string{"a"}},
			}}})
	}
}

func listTasks(t *testing.T, ns, prefix string) []taskerv1alpha1.Task {
	t.Helper()
	var l taskerv1alpha1.TaskList
	if err := env.Client.List(context.Background(), &l, client.InNamespace(ns), client.MatchingLabels{"batch": prefix}); err != nil {
		t.Fatal(err)
	}
	return l.Items
}

// waitSucceeded waits for the n Tasks <prefix>-* of ns to succeed, admitted into database.
func waitSucceeded(t *testing.T, ns, prefix string, n int, database string, d time.Duration) {
	t.Helper()
	testenv.WaitFor(t, d, fmt.Sprintf("%d Tasks %s/%s-* to succeed in database %s", n, ns, prefix, database), func() (bool, error) {
		tks := listTasks(t, ns, prefix)
		done := 0
		var last string
		for _, tk := range tks {
			if tk.Status.Database != database && tk.Status.Database != "" {
				t.Fatalf("%s/%s admitted into database %q, want %q", ns, tk.Name, tk.Status.Database, database)
			}
			if tk.Status.Phase == taskerv1alpha1.TaskSucceeded {
				done++
			} else {
				last = fmt.Sprintf("%s: %s %v", tk.Name, tk.Status.Phase, tk.Status.Conditions)
			}
		}
		return len(tks) == n && done == n, fmt.Errorf("%d of %d succeeded; %s", done, len(tks), last)
	})
}

// checkNamespaces checks that a database holds tasks of exactly these namespaces.
func checkNamespaces(t *testing.T, u string, want ...string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(ctx) }()
	rows, err := conn.Query(ctx, "SELECT DISTINCT namespace FROM tasker.tasks ORDER BY 1")
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if w := sorted(want...); !slices.Equal(got, w) {
		t.Errorf("database %s holds tasks of namespaces %v, want %v", u, got, w)
	}
}

func sorted(s ...string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func getDatabase(t *testing.T, name string) *taskerv1alpha1.TaskerDatabase {
	t.Helper()
	var td taskerv1alpha1.TaskerDatabase
	if err := env.Client.Get(context.Background(), types.NamespacedName{Name: name}, &td); err != nil {
		t.Fatal(err)
	}
	return &td
}

func waitDatabaseReady(t *testing.T, name string, status metav1.ConditionStatus, d time.Duration) {
	t.Helper()
	testenv.WaitFor(t, d, fmt.Sprintf("TaskerDatabase %s Ready=%s", name, status), func() (bool, error) {
		td := getDatabase(t, name)
		cond := meta.FindStatusCondition(td.Status.Conditions, taskerv1alpha1.DatabaseConditionReady)
		ok := cond != nil && cond.Status == status && cond.ObservedGeneration == td.Generation
		if ok && status == metav1.ConditionTrue && td.Status.SchemaVersion != int64(store.LatestVersion()) {
			return false, fmt.Errorf("schema version %d", td.Status.SchemaVersion)
		}
		return ok, fmt.Errorf("%+v", td.Status)
	})
}

func checkStatus(t *testing.T, name string, namespaces []string) {
	t.Helper()
	testenv.WaitFor(t, 30*time.Second, "TaskerDatabase "+name+"'s namespaces", func() (bool, error) {
		td := getDatabase(t, name)
		return slices.Equal(td.Status.Namespaces, sorted(namespaces...)) && td.Status.NamespaceCount == int32(len(namespaces)) &&
			meta.IsStatusConditionTrue(td.Status.Conditions, taskerv1alpha1.DatabaseConditionNamespacesBound), fmt.Errorf("%+v", td.Status)
	})
	if v := gauge(t, "tasker_database_schema_version", name); v != float64(store.LatestVersion()) {
		t.Errorf("tasker_database_schema_version{database=%s} = %v, want %d", name, v, store.LatestVersion())
	}
}

// gauge reads a gauge with database=name from the manager's registry (-1: absent).
func gauge(t *testing.T, metric, name string) float64 {
	t.Helper()
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != metric {
			continue
		}
		for _, m := range f.Metric {
			if hasLabel(m, "database", name) {
				return m.GetGauge().GetValue()
			}
		}
	}
	return -1
}

func hasLabel(m *dto.Metric, k, v string) bool {
	for _, l := range m.Label {
		if l.GetName() == k && l.GetValue() == v {
			return true
		}
	}
	return false
}
