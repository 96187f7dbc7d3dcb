package ui

import (
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"strings"
	"time"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/internal/cli"
)

// Size of a pool's chart, in CSS pixels.
const (
	chartWidth  = 360
	chartHeight = 84
)

// poolList is the pools page's data.
type poolList struct {
	Pools []poolRow
	Since time.Time
	Error string
}

// poolRow is one WorkerPool.
type poolRow struct {
	Namespace, Name         string
	Queues                  []string
	Backlog                 int64
	Desired, Current, Ready int32
	LastScale               *time.Time
	Chart                   template.HTML
}

func (s *Server) poolsPage(w http.ResponseWriter, _ *http.Request) {
	pools, err := s.opts.Cluster.WorkerPools()
	var l poolList
	switch {
	case errors.Is(err, ErrPoolsHidden):
		l.Error = "WorkerPools are not shown: " + err.Error() + "."
	case err != nil:
		s.opts.ErrorLog.Printf("list workerpools: %v", err)
		l.Error = "WorkerPools cannot be listed: " + err.Error()
	}
	now := s.opts.Now()
	slices.SortFunc(pools, func(a, b taskerv1alpha1.WorkerPool) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	for i := range pools {
		p := &pools[i]
		row := poolRow{Namespace: p.Namespace, Name: p.Name, Queues: p.Spec.Queues, Backlog: p.Status.Backlog,
			Desired: p.Status.DesiredReplicas, Current: p.Status.CurrentReplicas, Ready: p.Status.ReadyReplicas}
		if t := p.Status.LastScaleTime; t != nil {
			row.LastScale = &t.Time
		}
		samples, since := s.pools.samples(p.Namespace, p.Name)
		from := now.Add(-s.pools.window)
		if since.After(from) {
			from = since // an hour at most, since the UI started
		}
		row.Chart = renderChart(samples, from, now)
		l.Since = since
		l.Pools = append(l.Pools, row)
	}
	s.render(w, "pools", http.StatusOK, page{Title: "WorkerPools", Nav: "pools", Watch: "pool", Data: l})
}

// renderChart draws a pool's readings between from and to (labelled by its length) as an SVG: the backlog as a filled step area scaled to
// its maximum, desired and ready replicas as step lines scaled to theirs. A reading holds until the next one; the
// time before the first reading is left blank.
func renderChart(samples []poolSample, from, to time.Time) template.HTML {
	var maxBacklog int64 = 1
	var maxReplicas int32 = 1
	for _, s := range samples {
		maxBacklog, maxReplicas = max(maxBacklog, s.Backlog), max(maxReplicas, s.Desired, s.Ready)
	}
	span := to.Sub(from).Seconds()
	x := func(t time.Time) float64 {
		return float64(chartWidth) * min(max(t.Sub(from).Seconds(), 0), span) / span
	}
	y := func(v, top float64) float64 { return chartHeight - 2 - (chartHeight-14)*v/top }
	step := func(value func(poolSample) float64, top float64) string {
		var b strings.Builder
		for i, s := range samples {
			end := to
			if i+1 < len(samples) {
				end = samples[i+1].At
			}
			if !end.After(from) {
				continue
			}
			cmd := "L"
			if b.Len() == 0 {
				cmd = "M"
			}
			fmt.Fprintf(&b, "%s%s %sH%s", cmd, num(x(s.At)), num(y(value(s), top)), num(x(end)))
		}
		return b.String()
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="backlog and replicas over the last hour">`,
		chartWidth, chartHeight, chartWidth, chartHeight)
	if backlog := step(func(s poolSample) float64 { return float64(s.Backlog) }, float64(maxBacklog)); backlog != "" {
		first := samples[0].At
		if first.Before(from) {
			first = from
		}
		fmt.Fprintf(&b, `<path class="backlog" d="%sV%sH%sZ"/>`, backlog, num(y(0, 1)), num(x(first)))
		fmt.Fprintf(&b, `<path class="desired" d="%s"/>`, step(func(s poolSample) float64 { return float64(s.Desired) }, float64(maxReplicas)))
		fmt.Fprintf(&b, `<path class="ready" d="%s"/>`, step(func(s poolSample) float64 { return float64(s.Ready) }, float64(maxReplicas)))
	}
	fmt.Fprintf(&b, `<text x="2" y="10">backlog ≤ %d · replicas ≤ %d</text><text x="%d" y="10" text-anchor="end">last %s</text></svg>`,
		maxBacklog, maxReplicas, chartWidth-2, cli.FormatDuration(to.Sub(from)))
	return template.HTML(b.String()) //nolint:gosec // numbers only
}
