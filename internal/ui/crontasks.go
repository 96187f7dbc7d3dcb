package ui

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
)

// ErrCronTasksHidden is Cluster.CronTasks' error when the credentials may not list CronTasks (or the cluster has
// no CronTask CRD).
var ErrCronTasksHidden = errors.New("these credentials may not list CronTasks, or the cluster has none")

// cronTaskList is the CronTasks page's data.
type cronTaskList struct {
	Rows  []cronTaskRow
	Error string
}

// cronTaskRow is one CronTask.
type cronTaskRow struct {
	Namespace, Name, Schedule, TimeZone, Policy string
	Suspended                                   bool
	Active                                      int32
	Last, LastSuccess, Next                     *time.Time
	// Tasks counts the Tasks it made that the UI watches; Problem is a False Ready condition's message.
	Tasks   int
	Problem string
}

func (s *Server) cronTasksPage(w http.ResponseWriter, _ *http.Request) {
	cts, err := s.opts.Cluster.CronTasks()
	var l cronTaskList
	switch {
	case errors.Is(err, ErrCronTasksHidden):
		l.Error = "CronTasks are not shown: " + err.Error() + "."
	case err != nil:
		s.opts.ErrorLog.Printf("list crontasks: %v", err)
		l.Error = "CronTasks cannot be listed: " + err.Error()
	}
	made := map[string]int{}
	if tasks, err := s.opts.Cluster.Tasks(); err == nil {
		for i := range tasks {
			if ct := tasks[i].Labels[taskerv1alpha1.CronTaskLabel]; ct != "" {
				made[tasks[i].Namespace+"/"+ct]++
			}
		}
	}
	slices.SortFunc(cts, func(a, b taskerv1alpha1.CronTask) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	for i := range cts {
		ct := &cts[i]
		row := cronTaskRow{Namespace: ct.Namespace, Name: ct.Name, Schedule: ct.Spec.Schedule, TimeZone: "UTC",
			Policy: string(ct.Spec.ConcurrencyPolicy), Suspended: ct.Spec.Suspend != nil && *ct.Spec.Suspend,
			Active: ct.Status.ActiveCount, Last: timeOf(ct.Status.LastScheduleTime),
			LastSuccess: timeOf(ct.Status.LastSuccessfulTime), Next: timeOf(ct.Status.NextScheduleTime),
			Tasks: made[ct.Namespace+"/"+ct.Name]}
		if ct.Spec.TimeZone != nil {
			row.TimeZone = *ct.Spec.TimeZone
		}
		for _, c := range ct.Status.Conditions {
			if c.Type == taskerv1alpha1.CronTaskConditionReady && c.Status == metav1.ConditionFalse {
				row.Problem = c.Message
			}
		}
		l.Rows = append(l.Rows, row)
	}
	s.render(w, "crontasks", http.StatusOK, page{Title: "CronTasks", Nav: "crontasks", Watch: "crontask", Data: l})
}

func timeOf(t *metav1.Time) *time.Time {
	if t == nil {
		return nil
	}
	return &t.Time
}
