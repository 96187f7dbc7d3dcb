// Which database a namespace's work goes to, as the controllers see it.

package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
)

// Database is one tasker database, as the controllers use it. Each controller takes only its part.
type Database struct {
	// Name is the TaskerDatabase's name, or taskerv1alpha1.DefaultDatabaseName for --database-url.
	Name string
	// Tasks admits and reads Tasks (the Task controller).
	Tasks TaskEngine
	// Limits writes queue limits (the Queue controller).
	Limits QueueLimiter
	// Metrics reads backlogs and worker records (the WorkerPool controller).
	Metrics PoolMetrics
	// Gate says whether the database is migrated; nil: always.
	Gate DatabaseGate
	// WorkerSecret is the Secret a WorkerPool without spec.database gets (roleMode Shared); nil: the pools must
	// name their own.
	WorkerSecret *taskerv1alpha1.NamespacedSecretKeyRef
}

// Ready is the gate's answer (nil without a gate).
func (d Database) Ready() error {
	if d.Gate == nil {
		return nil
	}
	return d.Gate.Ready()
}

// Databases picks each namespace's database and hands out the databases by name. The operator's registry
// implements it; SingleDatabase serves one database to every namespace.
type Databases interface {
	// ForNamespace returns the database a namespace's new work goes to. The error, when there is none (no
	// database configured, two TaskerDatabases select the namespace, ...), wraps ErrNoDatabase and its message is
	// safe to show users.
	ForNamespace(ctx context.Context, namespace string) (Database, error)
	// Named returns a database by name (where a Task was admitted). The error wraps ErrNoDatabase when no such
	// database is configured.
	Named(name string) (Database, error)
	// Several tells whether more than one database is configured (or being connected): then a namespace may move,
	// and a Task's database is written to its status before it is admitted.
	Several() bool
}

// ErrNoDatabase: no database serves the namespace (or has the name asked for).
var ErrNoDatabase = errors.New("no database")

// errNoDatabases is what a controller without Databases reports.
var errNoDatabases = fmt.Errorf("%w configured: start the manager with --database-url or create a TaskerDatabase", ErrNoDatabase)

// SingleDatabase serves db to every namespace (the manager with --database-url only; the controllers' unit tests).
type SingleDatabase Database

// ForNamespace implements Databases.
func (s SingleDatabase) ForNamespace(context.Context, string) (Database, error) {
	return Database(s), nil
}

// Several implements Databases: one database.
func (s SingleDatabase) Several() bool { return false }

// Named implements Databases.
func (s SingleDatabase) Named(name string) (Database, error) {
	if name != s.Name {
		return Database{}, fmt.Errorf("%w: database %q is not configured", ErrNoDatabase, name)
	}
	return Database(s), nil
}

// Binding is where a namespace's work goes and why.
type Binding struct {
	// Database is the namespace's database now ("" when none: Problem says why).
	Database string
	// Wanted is the database the selectors choose; it differs from Database while a move waits.
	Wanted string
	// Problem says what is wrong with the selectors for this namespace (safe for users). With Database "", the
	// namespace has no database; otherwise its unfinished Tasks keep it on Database meanwhile.
	Problem string
	// Unfinished counts the namespace's unfinished Tasks in Database when a move waits for them.
	Unfinished int
	// Conflict: two TaskerDatabases select the namespace, or two are the default (Problem says which).
	Conflict bool
}

// MoveWaits tells whether the namespace stays on its old database until its Tasks there finish.
func (b Binding) MoveWaits() bool {
	return b.Database != "" && b.Wanted != "" && b.Database != b.Wanted
}

// Reason explains a waiting move or a problem in a sentence about the namespace.
func (b Binding) Reason(namespace string) string {
	switch {
	case b.Problem != "":
		return b.Problem
	case b.MoveWaits():
		return fmt.Sprintf("namespace %s moves from database %s to %s when its %d unfinished Task(s) there finish; "+
			"its new Tasks go to %s until then", namespace, b.Database, b.Wanted, b.Unfinished, b.Database)
	}
	return ""
}

// Bind decides a namespace's database: the TaskerDatabase whose namespaceSelector selects it, else the one marked
// default, else --database-url's (when haveFlag). A namespace with unfinished Tasks in another database stays
// there until they finish (unfinished counts them per database name). dbs excludes resources being deleted.
func Bind(ns *corev1.Namespace, dbs []taskerv1alpha1.TaskerDatabase, haveFlag bool, unfinished map[string]int) Binding {
	var selected, defaults []string
	for i := range dbs {
		d := &dbs[i]
		if d.Spec.Default {
			defaults = append(defaults, d.Name)
		}
		if d.Spec.NamespaceSelector == nil {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.NamespaceSelector)
		if err != nil || sel.Empty() {
			continue // an invalid or empty selector selects nothing (the resource's status says why)
		}
		if sel.Matches(labels.Set(ns.Labels)) {
			selected = append(selected, d.Name)
		}
	}
	slices.Sort(selected)
	slices.Sort(defaults)
	var b Binding
	switch {
	case len(selected) > 1:
		b.Conflict = true
		b.Problem = fmt.Sprintf("namespace %s is selected by the TaskerDatabases %s: it uses none of them until one "+
			"selector stops matching", ns.Name, strings.Join(selected, ", "))
	case len(selected) == 1:
		b.Wanted = selected[0]
	case len(defaults) > 1:
		b.Conflict = true
		b.Problem = fmt.Sprintf("namespace %s falls to the default database, and the TaskerDatabases %s are all marked "+
			"default: unmark all but one", ns.Name, strings.Join(defaults, ", "))
	case len(defaults) == 1:
		b.Wanted = defaults[0]
	case haveFlag:
		b.Wanted = taskerv1alpha1.DefaultDatabaseName
	default:
		b.Problem = fmt.Sprintf("no database for namespace %s: no TaskerDatabase selects it, none is the default, "+
			"and the manager has no --database-url", ns.Name)
	}
	// A namespace with unfinished Tasks elsewhere stays there: the first such database by name.
	var names []string
	for name, n := range unfinished {
		if n > 0 && name != b.Wanted {
			names = append(names, name)
		}
	}
	if len(names) > 0 {
		slices.Sort(names)
		b.Database, b.Unfinished = names[0], unfinished[names[0]]
		if b.Problem != "" {
			b.Problem += fmt.Sprintf("; its %d unfinished Task(s) keep it on database %s meanwhile", b.Unfinished, b.Database)
		}
		return b
	}
	b.Database = b.Wanted
	return b
}

// databaseIndex indexes the unfinished Tasks by the database they were admitted into (those admitted before
// databases were recorded: "default").
const databaseIndex = "status.unfinishedDatabase"

func unfinishedDatabaseOf(o client.Object) []string {
	tk := o.(*taskerv1alpha1.Task)
	if finished(tk.Status.Phase) {
		return nil
	}
	switch {
	case tk.Status.Database != "":
		return []string{tk.Status.Database}
	case tk.Status.TaskID != 0:
		return []string{taskerv1alpha1.DefaultDatabaseName}
	}
	return nil
}

// UnfinishedTasks counts a namespace's unfinished Tasks admitted into a database (from the cache, through the
// index SetupIndexes registers).
func UnfinishedTasks(ctx context.Context, c client.Reader, namespace, database string) (int, error) {
	var list taskerv1alpha1.TaskList
	if err := c.List(ctx, &list, client.InNamespace(namespace), client.MatchingFields{databaseIndex: database},
		client.UnsafeDisableDeepCopy); err != nil {
		return 0, fmt.Errorf("listing the Tasks of namespace %s: %w", namespace, err)
	}
	return len(list.Items), nil
}
