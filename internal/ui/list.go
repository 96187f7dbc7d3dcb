package ui

import (
	"net/http"
	"slices"
	"strings"
	"time"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
)

// maxListRows is the most Tasks the list shows at once (newest first); a filter narrows the rest down.
const maxListRows = 500

// taskFilter is the list's query: each field empty for "any". CronTask (the CronTasks page's links) keeps the
// Tasks a CronTask of that name made.
type taskFilter struct {
	Namespace, Phase, Template, CronTask string
}

func (f taskFilter) match(tk *taskerv1alpha1.Task) bool {
	return (f.Namespace == "" || tk.Namespace == f.Namespace) &&
		(f.Phase == "" || phaseOf(tk) == f.Phase) &&
		(f.Template == "" || templateOf(tk) == f.Template) &&
		(f.CronTask == "" || tk.Labels[taskerv1alpha1.CronTaskLabel] == f.CronTask)
}

// taskRow is one line of the list.
type taskRow struct {
	Namespace, Name, Phase, Progress, Template string
	Created                                    time.Time
	// Age is how long ago it was created; Duration how long it ran (so far, when it still runs).
	Age, Duration time.Duration
	// Started is false before the first step ran (no Duration); Running until the Task finishes.
	Started, Running bool
}

// taskList is the list page's data.
type taskList struct {
	Filter taskFilter
	// Namespaces, Phases and Templates are the filter's choices: the values the watched Tasks have.
	Namespaces, Phases, Templates []string
	Rows                          []taskRow
	// Matched is the number of Tasks the filter matches (Rows holds at most maxListRows of them).
	Matched, Total int
}

func (s *Server) tasksPage(w http.ResponseWriter, r *http.Request) {
	tasks, err := s.opts.Cluster.Tasks()
	if err != nil {
		s.opts.ErrorLog.Printf("list tasks: %v", err)
		s.renderError(w, http.StatusServiceUnavailable, "Tasks", "Tasks cannot be listed: "+err.Error())
		return
	}
	q := r.URL.Query()
	f := taskFilter{Namespace: q.Get("namespace"), Phase: q.Get("phase"), Template: q.Get("template"), CronTask: q.Get("crontask")}
	s.render(w, "tasks", http.StatusOK, page{Title: "Tasks", Nav: "tasks", Watch: "task", Data: buildList(tasks, f, s.opts.Now())})
}

// buildList filters and sorts the Tasks (newest first, then by namespace and name).
func buildList(tasks []taskerv1alpha1.Task, f taskFilter, now time.Time) taskList {
	l := taskList{Filter: f, Total: len(tasks)}
	// The selected values stay choices when no Task has them (any more); sortedKeys drops "".
	namespaces := map[string]bool{f.Namespace: true}
	phases := map[string]bool{f.Phase: true}
	templates := map[string]bool{f.Template: true}
	var matched []*taskerv1alpha1.Task
	for i := range tasks {
		tk := &tasks[i]
		namespaces[tk.Namespace], phases[phaseOf(tk)] = true, true
		templates[templateOf(tk)] = true
		if f.match(tk) {
			matched = append(matched, tk)
		}
	}
	l.Namespaces, l.Phases, l.Templates = sortedKeys(namespaces), sortedKeys(phases), sortedKeys(templates)
	l.Matched = len(matched)
	slices.SortFunc(matched, func(a, b *taskerv1alpha1.Task) int {
		if c := b.CreationTimestamp.Compare(a.CreationTimestamp.Time); c != 0 {
			return c
		}
		if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	for _, tk := range matched[:min(len(matched), maxListRows)] {
		row := taskRow{Namespace: tk.Namespace, Name: tk.Name, Phase: phaseOf(tk), Progress: tk.Status.Progress,
			Template: templateOf(tk), Created: tk.CreationTimestamp.Time, Age: now.Sub(tk.CreationTimestamp.Time)}
		if st := tk.Status.StartedAt; st != nil {
			row.Started = true
			end := now
			if c := tk.Status.CompletedAt; c != nil {
				end = c.Time
			} else {
				row.Running = true
			}
			row.Duration = end.Sub(st.Time)
		}
		l.Rows = append(l.Rows, row)
	}
	return l
}

// phaseOf is a Task's phase, "Admitting" before the operator has written one.
func phaseOf(tk *taskerv1alpha1.Task) string {
	if tk.Status.Phase == "" {
		return "Admitting"
	}
	return string(tk.Status.Phase)
}

// templateOf names the TaskTemplate a Task was made from ("" for inline steps).
func templateOf(tk *taskerv1alpha1.Task) string {
	if tk.Spec.TemplateRef == nil {
		return ""
	}
	return tk.Spec.TemplateRef.Name
}

// sortedKeys returns the non-empty keys, sorted.
func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		if k != "" {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}
