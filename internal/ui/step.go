package ui

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/internal/cli"
	"github.com/tasker-operator/tasker-operator/internal/engine"
)

// maxJSONShown is the most bytes of a step's inputs or result the panel shows (indented); `taskerctl describe
// -o json` has them whole.
const maxJSONShown = 64 << 10

// stepPanel is the data of a step's panel.
type stepPanel struct {
	Task string // namespace/name
	Step cli.StepView
	// Found is false for a step the Task does not have.
	Found          bool
	Inputs, Result string
	Attempts       []attemptRow
	Timings        []timing
	// Details is true when the panel has what the database holds (attempts, result); Error says what failed.
	Details bool
	Error   string
	// Children are, for a child workflow step, its child's steps (each with a link to its own panel).
	Children []cli.StepView
}

// attemptRow is one attempt of a step, from its history.
type attemptRow struct {
	N                 int
	Worker            string
	Started, Finished *time.Time
	Duration          time.Duration
	// Outcome is the state the attempt ended in ("" while it runs), Reason why.
	Outcome, Reason, Error string
}

// timing is one line of the panel's timings.
type timing struct {
	Label string
	At    *time.Time
	For   time.Duration
}

func (s *Server) stepPanelFragment(w http.ResponseWriter, r *http.Request) {
	tk, ok := s.getTask(w, r)
	if !ok {
		return
	}
	d, _ := s.taskDetail(r.Context(), tk)
	p := s.stepPanel(r.Context(), tk, d.View, r.PathValue("step"))
	var buf bytes.Buffer
	if err := pages["task"].ExecuteTemplate(&buf, "panel", p); err != nil {
		s.opts.ErrorLog.Printf("render panel: %v", err)
		http.Error(w, "the panel could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if !p.Found {
		w.WriteHeader(http.StatusNotFound)
	}
	_, _ = w.Write(buf.Bytes())
}

// stepPanel gathers a step's panel: its state from the view, its inputs, result, attempts and timings from the
// database when the UI has one, else what the Task's status and spec hold.
func (s *Server) stepPanel(ctx context.Context, tk *taskerv1alpha1.Task, v cli.TaskView, step string) *stepPanel {
	p := &stepPanel{Task: tk.Namespace + "/" + tk.Name, Step: cli.StepView{Name: step}}
	for _, st := range v.Steps {
		if st.Name == step {
			p.Step, p.Found = st, true
		}
		if st.ChildOf == step {
			p.Children = append(p.Children, st)
		}
	}
	for _, sp := range tk.Spec.Steps {
		if sp.Name != step {
			continue
		}
		if !p.Found {
			p.Step, p.Found = cli.StepView{Name: sp.Name, Handler: sp.Handler, DependsOn: sp.DependsOn}, true
		}
		if sp.Inputs != nil {
			p.Inputs = indentJSON(sp.Inputs.Raw)
		}
	}
	if !p.Found {
		return p
	}
	p.Result = indentJSON(p.Step.Result)
	if v.Source != "database" {
		return p
	}
	p.Details = true
	inputs, err := s.opts.Database.StepInputs(ctx, v.TaskID, step)
	if err == nil {
		p.Inputs = indentJSON(inputs)
	}
	var history []engine.HistoryEntry
	if err == nil {
		history, err = s.opts.Database.History(ctx, v.TaskID, step)
	}
	if err != nil {
		s.opts.ErrorLog.Printf("step %s of task %d: %v", step, v.TaskID, err)
		p.Error = err.Error()
		if errors.Is(err, engine.ErrStepNotFound) {
			p.Error = "The database has no such step."
		}
		return p
	}
	p.Attempts, p.Timings = attemptsOf(history)
	return p
}

// attemptsOf reads a step's history: one row per attempt (claimed → how it ended), and the timings: when it was
// first enqueued, first started and finished, with the wait in the queue and the time from first start to the
// end.
func attemptsOf(history []engine.HistoryEntry) ([]attemptRow, []timing) {
	var rows []attemptRow
	var enqueued, started, finished *time.Time
	for _, h := range history {
		at := h.At
		switch {
		case h.To == string(engine.StepEnqueued) && enqueued == nil:
			enqueued = &at
		case h.To == string(engine.StepRunning) && h.Attempt > 0:
			rows = append(rows, attemptRow{N: h.Attempt, Worker: h.Worker, Started: &at})
			if started == nil {
				started = &at
			}
		}
		if h.From == string(engine.StepRunning) && len(rows) > 0 && rows[len(rows)-1].N == h.Attempt {
			a := &rows[len(rows)-1]
			a.Finished, a.Outcome, a.Reason, a.Error = &at, h.To, h.Reason, h.Error
			a.Duration = at.Sub(*a.Started)
		}
		if engine.StepPhase(h.To).Finished() {
			finished = &at
		}
	}
	t := []timing{{Label: "enqueued", At: enqueued}, {Label: "first started", At: started}, {Label: "finished", At: finished}}
	if enqueued != nil && started != nil {
		t = append(t, timing{Label: "waited in the queue", For: started.Sub(*enqueued)})
	}
	if started != nil && finished != nil {
		t = append(t, timing{Label: "first start to end", For: finished.Sub(*started)})
	}
	return rows, t
}

// indentJSON indents a JSON document for the panel ("" for none), cut at maxJSONShown.
func indentJSON(raw []byte) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var b bytes.Buffer
	if json.Indent(&b, raw, "", "  ") != nil {
		b.Reset()
		b.Write(raw)
	}
	if b.Len() > maxJSONShown {
		return b.String()[:maxJSONShown] + "\n… (cut: taskerctl describe -o json has it whole)"
	}
	return b.String()
}
