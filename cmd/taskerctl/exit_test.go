package main

import (
	"errors"
	"fmt"
	"net/url"
	"syscall"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func TestErrorMessage(t *testing.T) {
	notFound := apierrors.NewNotFound(schema.GroupResource{Group: "tasker.dev", Resource: "tasks"}, "x")
	refused := &url.Error{Op: "Get", URL: "https://10.0.0.1:6443/api", Err: syscall.ECONNREFUSED}
	for err, want := range map[error]string{
		notFound:                            `Error from server (NotFound): tasks.tasker.dev "x" not found`,
		fmt.Errorf("reading: %w", notFound): `Error from server (NotFound): tasks.tasker.dev "x" not found`,
		fmt.Errorf("failed to get server groups: %w", refused): "The connection to the server 10.0.0.1:6443 was refused - " +
			"did you specify the right host or port?",
		errors.New("--result is not valid JSON"): "error: --result is not valid JSON",
	} {
		if got := errorMessage(err); got != want {
			t.Errorf("errorMessage(%v) = %q, want %q", err, got, want)
		}
	}
}
