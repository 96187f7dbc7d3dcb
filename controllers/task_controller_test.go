package controllers

import (
	"context"
	"errors"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/tasker-operator/tasker-operator/internal/engine"
)

func TestAfterDatabaseError(t *testing.T) {
	unreachable := &engine.DatabaseError{Op: "get task", Unavailable: true, Err: errors.New("dial tcp: connection refused")}
	unexpected := &engine.DatabaseError{Op: "get task", Err: errors.New("syntax error")}
	apiserver := errors.New("the object has been modified")
	for _, tc := range []struct {
		name      string
		err, werr error
		wantErr   bool
	}{
		{name: "unreachable database: requeued quietly", err: unreachable},
		{name: "unexpected database error: returned", err: unexpected, wantErr: true},
		{name: "status write failed too: returned", err: unreachable, werr: apiserver, wantErr: true},
		{name: "not a database error: returned", err: apiserver, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &TaskReconciler{dbBackoff: newDBBackoff()}
			res, err := r.afterDatabaseError(context.Background(), types.NamespacedName{Name: "t"}, tc.err, tc.werr)
			if (err != nil) != tc.wantErr {
				t.Fatalf("error = %v, want error: %v", err, tc.wantErr)
			}
			if tc.wantErr {
				if !errors.Is(err, tc.err) || (tc.werr != nil && !errors.Is(err, tc.werr)) {
					t.Errorf("error %v does not carry %v and %v", err, tc.err, tc.werr)
				}
				if res.RequeueAfter != 0 {
					t.Errorf("RequeueAfter = %s with an error returned", res.RequeueAfter)
				}
			} else if res.RequeueAfter != dbRetryFirst {
				t.Errorf("RequeueAfter = %s, want %s", res.RequeueAfter, dbRetryFirst)
			}
		})
	}
}

// The backoff doubles per Task, stops at dbRetryMax, and starts again once the Task reached the database.
func TestAfterDatabaseErrorBackoff(t *testing.T) {
	r := &TaskReconciler{dbBackoff: newDBBackoff()}
	down := &engine.DatabaseError{Op: "admit", Unavailable: true, Err: errors.New("timeout")}
	a, b := types.NamespacedName{Name: "a"}, types.NamespacedName{Name: "b"}
	var got []time.Duration
	for range 8 {
		res, err := r.afterDatabaseError(context.Background(), a, down, nil)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, res.RequeueAfter)
	}
	want := []time.Duration{1, 2, 4, 8, 16, 30, 30, 30}
	for i := range want {
		if got[i] != want[i]*time.Second {
			t.Fatalf("backoff = %v, want %v seconds", got, want)
		}
	}
	if res, _ := r.afterDatabaseError(context.Background(), b, down, nil); res.RequeueAfter != time.Second {
		t.Errorf("another Task's first retry waits %s, want 1s", res.RequeueAfter)
	}
	r.dbBackoff.Forget(a) // what a reconcile that reached the database does
	if res, _ := r.afterDatabaseError(context.Background(), a, down, nil); res.RequeueAfter != time.Second {
		t.Errorf("after a success the backoff restarts at %s, want 1s", res.RequeueAfter)
	}
}
