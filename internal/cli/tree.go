package cli

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tasker-operator/tasker-operator/internal/stepcounts"
)

// RenderOptions tune Render.
type RenderOptions struct {
	// Width is the terminal's width; lines are cut to fit. Default 120.
	Width int
	// Color marks states with ANSI colours.
	Color bool
	// Now is the time running steps' durations are measured to. Default time.Now().
	Now time.Time
}

// Render writes the Task's header and its DAG as a tree: every step appears once, under the dependency that
// finishes last in graph order (so a fan-in step sits below the branches it waits for), with its other
// dependencies named after it.
func Render(w io.Writer, v TaskView, opts RenderOptions) error {
	if opts.Width <= 0 {
		opts.Width = 120
	}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	header := fmt.Sprintf("%s/%s  %s  %s steps", v.Namespace, v.Name, paint(opts.Color, v.Phase, v.Phase), v.Progress)
	if v.StartedAt != nil {
		end := opts.Now
		if v.CompletedAt != nil {
			end = *v.CompletedAt
		}
		header += "  " + FormatDuration(end.Sub(*v.StartedAt))
	}
	if v.TaskID != 0 {
		header += fmt.Sprintf("  (task %d)", v.TaskID)
	}
	if _, err := fmt.Fprintln(w, header); err != nil {
		return err
	}
	lines := treeLines(v.Steps)
	nameWidth := 0
	for _, l := range lines {
		nameWidth = max(nameWidth, utf8.RuneCountInString(l.prefix)+len(l.step.Name))
	}
	for _, l := range lines {
		s := l.step
		name := l.prefix + s.Name
		line := fmt.Sprintf("%s%s  %s  %s  %s", name, strings.Repeat(" ", nameWidth-utf8.RuneCountInString(name)),
			pad(paint(opts.Color, s.State, s.State), 9+colorExtra(opts.Color, s.State)), pad(attempts(s.Attempts), 10), pad(stepDuration(s, opts.Now), 6))
		var notes []string
		if len(l.alsoAfter) > 0 {
			notes = append(notes, "after "+strings.Join(l.alsoAfter, ", "))
		}
		if w := waitNote(s, opts.Now); w != "" {
			notes = append(notes, w)
		}
		if s.Map != nil {
			notes = append(notes, "map of "+stepcounts.Line(*s.Map))
		}
		if c := s.Child; c != nil {
			notes = append(notes, "child workflow "+c.Template+": "+stepcounts.StepsLine(c.Steps))
		}
		if s.Error != "" {
			notes = append(notes, errorNote(s))
		}
		if len(s.Result) > 0 && string(s.Result) != "null" {
			notes = append(notes, "result: "+oneLine(string(s.Result)))
		}
		if len(notes) > 0 {
			line += "  " + strings.Join(notes, "; ")
		}
		if _, err := fmt.Fprintln(w, strings.TrimRight(cut(line, opts.Width+colorExtra(opts.Color, s.State)), " ")); err != nil {
			return err
		}
	}
	if len(v.Outputs) > 0 && string(v.Outputs) != "null" {
		if _, err := fmt.Fprintln(w, cut("outputs: "+oneLine(string(v.Outputs)), opts.Width)); err != nil {
			return err
		}
	}
	if v.Source == "status" && int(v.Counts.Total) > len(v.Steps) {
		_, err := fmt.Fprintf(w, "… %d more steps (status lists the first %d; give --database-url for all)\n",
			int(v.Counts.Total)-len(v.Steps), len(v.Steps))
		return err
	}
	return nil
}

type treeLine struct {
	step      StepView
	prefix    string
	alsoAfter []string
}

// treeLines lays the DAG out as a tree. Each step's tree parent is the dependency latest in spec order among
// those present; steps whose dependencies are unknown (beyond the listed steps) become roots.
func treeLines(steps []StepView) []treeLine {
	index := make(map[string]int, len(steps))
	for i, s := range steps {
		index[s.Name] = i
	}
	children := make([][]int, len(steps))
	parentOf := make([]int, len(steps))
	var roots []int
	for i, s := range steps {
		parent := -1
		for _, d := range s.DependsOn {
			if j, ok := index[d]; ok && j != i && (parent == -1 || j > parent) {
				parent = j
			}
		}
		if j, ok := index[s.ChildOf]; parent == -1 && ok && j != i {
			parent = j // a child workflow's first steps hang below its step
		}
		parentOf[i] = parent
		if parent == -1 {
			roots = append(roots, i)
		} else {
			children[parent] = append(children[parent], i)
		}
	}
	var out []treeLine
	visited := make([]bool, len(steps))
	var walk func(i int, prefix, childPrefix string)
	walk = func(i int, prefix, childPrefix string) {
		if visited[i] { // only possible with a cycle, which admission rejects; never loop
			return
		}
		visited[i] = true
		var also []string
		for _, d := range steps[i].DependsOn {
			if j, ok := index[d]; ok && j != parentOf[i] {
				also = append(also, d)
			}
		}
		out = append(out, treeLine{step: steps[i], prefix: prefix, alsoAfter: also})
		// A child workflow's subtree first, then the step's dependents.
		slices.SortStableFunc(children[i], func(a, b int) int {
			return cmp.Compare(boolInt(steps[b].ChildOf == steps[i].Name), boolInt(steps[a].ChildOf == steps[i].Name))
		})
		for k, c := range children[i] {
			if k == len(children[i])-1 {
				walk(c, childPrefix+"└─ ", childPrefix+"   ")
			} else {
				walk(c, childPrefix+"├─ ", childPrefix+"│  ")
			}
		}
	}
	for _, r := range roots {
		walk(r, "", "")
	}
	for i := range steps { // anything unreachable (a cycle) is still shown
		if !visited[i] {
			walk(i, "", "")
		}
	}
	return out
}

// errorNote says which attempt the step's last error is from, and what came of the step since: the error stays
// recorded after a later attempt succeeds, and "error: ..." on a succeeded step reads as if it had failed.
func errorNote(s StepView) string {
	msg := oneLine(s.Error)
	switch {
	case s.Attempts < 1:
		return "error: " + msg
	case s.State == "succeeded" && s.Attempts > 1:
		return fmt.Sprintf("succeeded on attempt %d; attempt %d failed: %s", s.Attempts, s.Attempts-1, msg)
	case s.State == "succeeded" || s.State == "resolved":
		return fmt.Sprintf("%s; an earlier failure: %s", s.State, msg)
	case s.State == "failed":
		return fmt.Sprintf("attempt %d failed: %s", s.Attempts, msg)
	case s.State == "retrying":
		return fmt.Sprintf("attempt %d failed, retrying: %s", s.Attempts, msg)
	case (s.State == "running" || s.State == "enqueued") && s.Attempts > 1:
		return fmt.Sprintf("attempt %d failed: %s", s.Attempts-1, msg)
	default:
		return "error: " + msg
	}
}

// waitNote says when a step that waits for its time becomes claimable: a delayed step ("delayed until") or a
// retry ("next attempt"), while that time is ahead.
func waitNote(s StepView, now time.Time) string {
	if s.NextAttemptAt == nil || (!now.IsZero() && !s.NextAttemptAt.After(now)) {
		return ""
	}
	at := s.NextAttemptAt.UTC().Format(time.RFC3339)
	switch s.State {
	case "enqueued":
		return "delayed until " + at
	case "retrying":
		return "next attempt at " + at
	case "waiting":
		return "waits for a signal until " + at
	}
	return ""
}

func attempts(n int) string {
	switch n {
	case 0:
		return "-"
	case 1:
		return "1 attempt"
	default:
		return fmt.Sprintf("%d attempts", n)
	}
}

func stepDuration(s StepView, now time.Time) string {
	if s.StartedAt == nil {
		return "-"
	}
	end := now
	if s.FinishedAt != nil {
		end = *s.FinishedAt
	}
	return FormatDuration(end.Sub(*s.StartedAt))
}

// FormatDuration prints a duration compactly: 850µs, 12ms, 1.2s, 3m04s, 2h05m.
func FormatDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	default:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
}

var stateColors = map[string]string{
	"succeeded": "32", "Succeeded": "32", "resolved": "32",
	"failed": "31", "Failed": "31",
	"running": "36", "Running": "36", "retrying": "33",
	"cancelled": "90", "Cancelled": "90", "skipped": "90", "omitted": "90", "waiting": "35", "mapping": "36",
}

func paint(on bool, state, text string) string {
	if c, ok := stateColors[state]; on && ok {
		return "\x1b[" + c + "m" + text + "\x1b[0m"
	}
	return text
}

// colorExtra is the number of invisible bytes paint adds, so padding and cutting count only visible ones.
func colorExtra(on bool, state string) int {
	if c, ok := stateColors[state]; on && ok {
		return len(c) + 7
	}
	return 0
}

func pad(s string, n int) string {
	if l := utf8.RuneCountInString(s); l < n {
		return s + strings.Repeat(" ", n-l)
	}
	return s
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func cut(s string, width int) string {
	if utf8.RuneCountInString(s) <= width {
		return s
	}
	r := []rune(s)
	return string(r[:max(width-1, 0)]) + "…"
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
