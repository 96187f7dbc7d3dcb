package cli

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tasker-operator/tasker-operator/internal/engine"
)

// HistoryEntry is one transition as `taskerctl history -o json|yaml` prints it.
type HistoryEntry struct {
	At      time.Time `json:"at"`
	Step    string    `json:"step,omitempty"`
	From    string    `json:"from"`
	To      string    `json:"to"`
	Attempt int       `json:"attempt,omitempty"`
	Worker  string    `json:"worker,omitempty"`
	Reason  string    `json:"reason"`
	Error   string    `json:"error,omitempty"`
}

// FromHistory converts the engine's history.
func FromHistory(entries []engine.HistoryEntry) []HistoryEntry {
	out := make([]HistoryEntry, len(entries))
	for i, h := range entries {
		out[i] = HistoryEntry{At: h.At, Step: h.Step, From: h.From, To: h.To, Attempt: h.Attempt, Worker: h.Worker,
			Reason: h.Reason, Error: h.Error}
	}
	return out
}

// HistoryTable prints transitions as a table: TIME (UTC, milliseconds), STEP ("(task)" for the task's own),
// TRANSITION, ATTEMPT, WORKER, REASON, ERROR (on one line, cut to width when width > 0).
func HistoryTable(w io.Writer, entries []HistoryEntry, width int) error {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tSTEP\tTRANSITION\tATTEMPT\tWORKER\tREASON\tERROR")
	for _, h := range entries {
		step := h.Step
		if step == "" {
			step = "(task)"
		}
		attempt, worker, errMsg := "-", "-", ""
		if h.Attempt > 0 {
			attempt = strconv.Itoa(h.Attempt)
		}
		if h.Worker != "" {
			worker = h.Worker
		}
		if h.Error != "" {
			errMsg = oneLine(h.Error)
			if width > 0 {
				errMsg = cut(errMsg, max(width/2, 20))
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s -> %s\t%s\t%s\t%s\t%s\n", h.At.UTC().Format("2006-01-02T15:04:05.000Z"), step,
			h.From, h.To, attempt, worker, h.Reason, errMsg)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, line := range strings.SplitAfter(buf.String(), "\n") {
		if _, err := io.WriteString(w, strings.TrimRight(line, " \n")+strings.Repeat("\n", strings.Count(line, "\n"))); err != nil {
			return err
		}
	}
	return nil
}
