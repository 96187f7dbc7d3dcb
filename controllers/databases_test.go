package controllers

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
)

func TestBind(t *testing.T) {
	db := func(name string, def bool, sel map[string]string) taskerv1alpha1.TaskerDatabase {
		d := taskerv1alpha1.TaskerDatabase{ObjectMeta: metav1.ObjectMeta{Name: name}}
		d.Spec.Default = def
		if sel != nil {
			d.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: sel}
		}
		return d
	}
	east := db("east", false, map[string]string{"region": "east"})
	west := db("west", false, map[string]string{"region": "west"})
	anyRegion := db("any", false, map[string]string{"team": "a"})
	fallback := db("fallback", true, nil)
	fallback2 := db("fallback2", true, nil)
	empty := db("empty", false, map[string]string{})
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "a", Labels: map[string]string{"region": "east", "team": "a"}}}
	plain := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "b"}}

	tests := []struct {
		name       string
		ns         *corev1.Namespace
		dbs        []taskerv1alpha1.TaskerDatabase
		flag       bool
		unfinished map[string]int
		want       string // Database
		wanted     string
		problem    string // in Problem
		waits      bool
	}{
		{name: "selected", ns: ns, dbs: []taskerv1alpha1.TaskerDatabase{east, west}, want: "east", wanted: "east"},
		{name: "flag when none selects", ns: plain, dbs: []taskerv1alpha1.TaskerDatabase{east}, flag: true,
			want: "default", wanted: "default"},
		{name: "default resource wins over the flag", ns: plain, dbs: []taskerv1alpha1.TaskerDatabase{east, fallback},
			flag: true, want: "fallback", wanted: "fallback"},
		{name: "selector wins over default", ns: ns, dbs: []taskerv1alpha1.TaskerDatabase{east, fallback},
			want: "east", wanted: "east"},
		{name: "nothing", ns: plain, dbs: []taskerv1alpha1.TaskerDatabase{east}, problem: "no database for namespace b"},
		{name: "two select", ns: ns, dbs: []taskerv1alpha1.TaskerDatabase{east, anyRegion}, flag: true,
			problem: "selected by the TaskerDatabases any, east"},
		{name: "two defaults", ns: plain, dbs: []taskerv1alpha1.TaskerDatabase{fallback, fallback2}, flag: true,
			problem: "fallback, fallback2 are all marked default"},
		{name: "an empty selector selects nothing", ns: plain, dbs: []taskerv1alpha1.TaskerDatabase{empty}, flag: true,
			want: "default", wanted: "default"},
		{name: "move waits for unfinished Tasks", ns: ns, dbs: []taskerv1alpha1.TaskerDatabase{east, west},
			unfinished: map[string]int{"west": 3, "east": 1}, want: "west", wanted: "east", waits: true},
		{name: "finished Tasks elsewhere do not hold", ns: ns, dbs: []taskerv1alpha1.TaskerDatabase{east, west},
			unfinished: map[string]int{"west": 0}, want: "east", wanted: "east"},
		{name: "a conflict keeps the old database while Tasks run", ns: ns,
			dbs: []taskerv1alpha1.TaskerDatabase{east, anyRegion}, unfinished: map[string]int{"default": 2},
			want: "default", problem: "keep it on database default"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := Bind(tt.ns, tt.dbs, tt.flag, tt.unfinished)
			if b.Database != tt.want || (tt.wanted != "" && b.Wanted != tt.wanted) || b.MoveWaits() != tt.waits {
				t.Errorf("Bind = %+v, want database %q wanted %q waits %v", b, tt.want, tt.wanted, tt.waits)
			}
			if tt.problem == "" && b.Problem != "" || !strings.Contains(b.Problem, tt.problem) {
				t.Errorf("Problem = %q, want it to contain %q", b.Problem, tt.problem)
			}
			if tt.waits && !strings.Contains(b.Reason(tt.ns.Name), "moves from database west to east when its 3 unfinished") {
				t.Errorf("Reason = %q", b.Reason(tt.ns.Name))
			}
		})
	}
}

func TestUnfinishedDatabaseIndex(t *testing.T) {
	tk := func(phase taskerv1alpha1.TaskPhase, db string, id int64) *taskerv1alpha1.Task {
		return &taskerv1alpha1.Task{Status: taskerv1alpha1.TaskStatus{Phase: phase, Database: db, TaskID: id}}
	}
	for _, tt := range []struct {
		task *taskerv1alpha1.Task
		want []string
	}{
		{tk(taskerv1alpha1.TaskRunning, "east", 4), []string{"east"}},
		{tk(taskerv1alpha1.TaskPending, "east", 0), []string{"east"}},
		{tk(taskerv1alpha1.TaskSucceeded, "east", 4), nil},
		{tk(taskerv1alpha1.TaskRunning, "", 4), []string{"default"}}, // admitted before databases were recorded
		{tk(taskerv1alpha1.TaskPending, "", 0), nil},
	} {
		if got := unfinishedDatabaseOf(tt.task); strings.Join(got, ",") != strings.Join(tt.want, ",") {
			t.Errorf("%+v: %v, want %v", tt.task.Status, got, tt.want)
		}
	}
}
