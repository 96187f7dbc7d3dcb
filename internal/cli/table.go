package cli

import (
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/util/duration"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
)

// TableOptions select Table's columns. The zero value prints NAME, PHASE, STEPS, AGE.
type TableOptions struct {
	// WithNamespace puts NAMESPACE first (for --all-namespaces).
	WithNamespace bool
	// Wide adds, after AGE (for -o wide): TEMPLATE (spec.templateRef), QUEUE (spec.queue: <none> means the
	// template's queue, else "default"), PRIORITY and REASON (the Ready condition's reason: why the Task is not
	// done, or how it ended).
	Wide bool
}

// Table prints Tasks the way `kubectl get tasks` does (NAME, PHASE, STEPS, AGE), with the columns opts adds;
// ages are relative to now.
func Table(w io.Writer, items []taskerv1alpha1.Task, opts TableOptions, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	row := func(cells ...string) {
		if !opts.WithNamespace {
			cells = cells[1:]
		}
		_, _ = io.WriteString(tw, strings.Join(cells, "\t")+"\n")
	}
	header := []string{"NAMESPACE", "NAME", "PHASE", "STEPS", "AGE"}
	if opts.Wide {
		header = append(header, "TEMPLATE", "QUEUE", "PRIORITY", "REASON")
	}
	row(header...)
	for i := range items {
		tk := &items[i]
		cells := []string{tk.Namespace, tk.Name, string(tk.Status.Phase), tk.Status.Progress,
			duration.HumanDuration(now.Sub(tk.CreationTimestamp.Time))}
		if opts.Wide {
			var template, reason string
			if tk.Spec.TemplateRef != nil {
				template = tk.Spec.TemplateRef.Name
			}
			if c := meta.FindStatusCondition(tk.Status.Conditions, taskerv1alpha1.TaskConditionReady); c != nil {
				reason = c.Reason
			}
			cells = append(cells, orNone(template), orNone(tk.Spec.Queue), strconv.Itoa(int(tk.Spec.Priority)), orNone(reason))
		}
		row(cells...)
	}
	return tw.Flush()
}

// CronTaskTable prints CronTasks the way `kubectl get crontasks` does (NAME, SCHEDULE, SUSPEND, ACTIVE, LAST,
// NEXT, AGE; NAMESPACE first with opts.WithNamespace); times are relative to now ("<none>" when unset; the next
// run is "in 5m").
func CronTaskTable(w io.Writer, items []taskerv1alpha1.CronTask, opts TableOptions, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	row := func(cells ...string) {
		if !opts.WithNamespace {
			cells = cells[1:]
		}
		_, _ = io.WriteString(tw, strings.Join(cells, "\t")+"\n")
	}
	row("NAMESPACE", "NAME", "SCHEDULE", "SUSPEND", "ACTIVE", "LAST", "NEXT", "AGE")
	for i := range items {
		ct := &items[i]
		last, next := "<none>", "<none>"
		if t := ct.Status.LastScheduleTime; t != nil {
			last = duration.HumanDuration(now.Sub(t.Time)) + " ago"
		}
		if t := ct.Status.NextScheduleTime; t != nil {
			next = "in " + duration.HumanDuration(t.Sub(now))
		}
		schedule := ct.Spec.Schedule
		if ct.Spec.TimeZone != nil {
			schedule += " (" + *ct.Spec.TimeZone + ")"
		}
		row(ct.Namespace, ct.Name, schedule, strconv.FormatBool(ct.Spec.Suspend != nil && *ct.Spec.Suspend),
			strconv.Itoa(int(ct.Status.ActiveCount)), last, next, duration.HumanDuration(now.Sub(ct.CreationTimestamp.Time)))
	}
	return tw.Flush()
}

// orNone is what the table shows of a value, "<none>" when it is unset, as kubectl does.
func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}
