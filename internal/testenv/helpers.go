package testenv

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// CacheDir is the folder hack/ scripts provision into: TASKER_CACHE, else $XDG_CACHE_HOME/tasker-operator, else
// ~/.cache/tasker-operator.
func CacheDir() (string, error) {
	if cache := os.Getenv("TASKER_CACHE"); cache != "" {
		return cache, nil
	}
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", err
		}
		base = filepath.Join(home, ".cache")
	}
	return filepath.Join(base, "tasker-operator"), nil
}

// NewNamespace gives a test its own namespace (named prefix-xxxxx), so tests share one control plane without
// seeing each other. envtest runs no namespace controller, so the namespace's objects outlive it: tests that
// need them gone delete them themselves.
func (e *Env) NewNamespace(t testing.TB, prefix string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"}}
	if err := e.Client.Create(context.Background(), ns); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	return ns.Name
}

// WaitFor polls cond every 50 ms until it holds, failing the test after d with what and cond's last error.
func WaitFor(t testing.TB, d time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, err := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s (last: %v)", d, what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// CreateConcurrently creates the n objects build(0) … build(n-1) through c from `workers` goroutines (load for
// benchmarks) and returns the first error; the workers stop at their next object after an error.
func CreateConcurrently(ctx context.Context, c client.Client, n, workers int, build func(i int) client.Object) error {
	next := make(chan int)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := c.Create(ctx, build(i)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	func() {
		for i := range n {
			select {
			case next <- i:
			case err := <-errs:
				errs <- err // keep it for the caller
				return
			}
		}
	}()
	close(next)
	wg.Wait()
	close(errs)
	return <-errs
}
