package main

import (
	"errors"
	"net/url"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"
)

// The exit statuses of taskerctl: any error exits exitOther, but for wait's timeout (the codes of argo wait).
const (
	exitReached  = 0 // success; for wait, the Task is in the phase waited for
	exitOther    = 1 // an error; for wait and watch, the Task finished in another phase
	exitTimedOut = 2 // wait's timeout passed first
)

// exitError ends taskerctl with its code (run prints the message, as for any error).
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// exitCode is the process's exit status for err: exitReached without one, an exitError's code, else exitOther.
func exitCode(err error) int {
	if err == nil {
		return exitReached
	}
	var e *exitError
	if errors.As(err, &e) {
		return e.code
	}
	return exitOther
}

// errorMessage is how taskerctl reports err, as kubectl does: the apiserver's errors with their reason
// (`Error from server (NotFound): tasks.tasker.dev "x" not found`), a refused connection naming the server,
// anything else as "error: ...".
func errorMessage(err error) string {
	// kubectl's messages read the error itself, which the client may have wrapped (its discovery does).
	var status *apierrors.StatusError
	var conn *url.Error
	switch {
	case errors.As(err, &status):
		err = status
	case errors.As(err, &conn):
		err = conn
	}
	if msg, ok := cmdutil.StandardErrorMessage(err); ok {
		return msg
	}
	return "error: " + err.Error()
}
