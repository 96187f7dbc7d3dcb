package ui

import (
	"context"
	"fmt"
	"html/template"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/internal/cli"
	"github.com/tasker-operator/tasker-operator/internal/engine"
)

// taskDetail is the Task page's data.
type taskDetail struct {
	View     cli.TaskView
	Template string
	Counts   []stateCount
	Graph    template.HTML
	Steps    int
	// Details is true when step detail comes from the database; DetailsError says why it does not although
	// the UI has a database (the message is the engine's, safe to show).
	Details      bool
	DetailsError string
	// Problems are the conditions worth showing: not True, or a Failed one.
	Problems []cli.ConditionView
	Panel    *stepPanel
}

// stateCount is the number of steps in one state.
type stateCount struct {
	State string
	N     int
}

func (s *Server) taskPage(w http.ResponseWriter, r *http.Request) {
	tk, ok := s.getTask(w, r)
	if !ok {
		return
	}
	d, nodes := s.taskDetail(r.Context(), tk)
	step := r.URL.Query().Get("step")
	d.Graph = renderGraph(nodes, step)
	if step != "" {
		d.Panel = s.stepPanel(r.Context(), tk, d.View, step)
	}
	key := tk.Namespace + "/" + tk.Name
	s.render(w, "task", http.StatusOK, page{Title: key, Nav: "tasks", Watch: "task " + key, Data: d})
}

// getTask reads the Task of the request's path or answers the request with why it cannot.
func (s *Server) getTask(w http.ResponseWriter, r *http.Request) (*taskerv1alpha1.Task, bool) {
	ns, name := r.PathValue("namespace"), r.PathValue("name")
	tk, err := s.opts.Cluster.Task(ns, name)
	switch {
	case apierrors.IsNotFound(err):
		s.renderError(w, http.StatusNotFound, "Not found", fmt.Sprintf("There is no Task %s/%s (any more).", ns, name))
		return nil, false
	case err != nil:
		s.opts.ErrorLog.Printf("get task %s/%s: %v", ns, name, err)
		s.renderError(w, http.StatusServiceUnavailable, "Unavailable", "The Task cannot be read: "+err.Error())
		return nil, false
	}
	return tk, true
}

// taskDetail builds the view (from the database when the UI has one and the Task was admitted, else from its
// status) and the graph's nodes.
func (s *Server) taskDetail(ctx context.Context, tk *taskerv1alpha1.Task) (taskDetail, []graphNode) {
	d := taskDetail{View: cli.FromStatus(tk), Template: templateOf(tk)}
	if s.opts.Database != nil && tk.Status.TaskID != 0 {
		st, err := s.opts.Database.GetTask(ctx, tk.Status.TaskID)
		if err == nil {
			err = cli.CheckOwner(tk, st)
		}
		if err != nil {
			s.opts.ErrorLog.Printf("read task %d (%s/%s): %v", tk.Status.TaskID, tk.Namespace, tk.Name, err)
			d.DetailsError = err.Error()
		} else {
			d.View, d.Details = cli.FromEngine(tk, st), true
		}
	}
	if d.View.Phase == "" {
		d.View.Phase = phaseOf(tk)
	}
	for _, c := range d.View.Conditions {
		if c.Status != "True" || c.Type == taskerv1alpha1.TaskConditionFailed {
			d.Problems = append(d.Problems, c)
		}
	}
	nodes := make([]graphNode, 0, len(d.View.Steps))
	seen := map[string]bool{}
	for _, st := range d.View.Steps {
		seen[st.Name] = true
		if st.ChildOf != "" { // a child workflow's step: in its step's box
			continue
		}
		n := graphNode{Name: st.Name, Handler: st.Handler, State: st.State, Attempts: st.Attempts,
			DependsOn: st.DependsOn}
		if m := st.Map; m != nil { // a map step: one box for its instances
			n.Count, n.Done = int(m.Total), finishedOf(*m)
		}
		if c := st.Child; c != nil { // a child workflow step: one box for its child's steps
			n.Count, n.Done, n.Child = int(c.Steps.Total), finishedOf(c.Steps), c.Template
		}
		nodes = append(nodes, n)
	}
	if !d.Details { // the status lists the first 50 steps: the spec has the others, in an unknown state
		for _, sp := range tk.Spec.Steps {
			if !seen[sp.Name] {
				nodes = append(nodes, graphNode{Name: sp.Name, Handler: sp.Handler, DependsOn: sp.DependsOn})
			}
		}
	}
	d.Steps = len(nodes) // the Task's own steps: a child's are counted in its step's box
	counts := map[string]int{}
	for _, n := range nodes {
		counts[n.State]++
	}
	for _, p := range engine.AllStepPhases {
		if n := counts[string(p)]; n > 0 {
			d.Counts = append(d.Counts, stateCount{State: string(p), N: n})
		}
	}
	if n := counts[""]; n > 0 {
		d.Counts = append(d.Counts, stateCount{State: "unknown", N: n})
	}
	return d, nodes
}

// finishedOf counts the finished steps (or instances) of c.
func finishedOf(c taskerv1alpha1.StepCounts) int {
	return int(c.Succeeded + c.Resolved + c.Failed + c.Cancelled + c.Skipped + c.Omitted)
}
