// Package queuescope maps the queue names of Kubernetes objects to the queues of the database.
//
// A queue name in a Task, TaskTemplate or WorkerPool belongs to the object's namespace: Tasks of namespace a feed,
// and WorkerPools of a serve and scale on, the database queue of (a, name), which no object of another namespace
// reaches. That database queue is named Namespaced(a, name): the name (cut to 29 characters) and a 10-character
// base-32 hash of the namespace and the full name, so that it fits the engine's ^[a-z0-9_]{1,40}$.
//
// A cluster administrator may share a queue instead (the manager's --shared-queue flag, the chart's
// sharedQueues): the queue then keeps its own name in the database, and the namespaces it is shared with (all, or
// a list) feed and serve that one queue, as every namespace did before queues were namespaced.
package queuescope

import (
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// maxPrefix is how much of the queue's name a namespaced database queue keeps: 29 + "_" + 10 hash characters = 40.
const (
	maxPrefix = 29
	hashLen   = 10
)

var (
	queueName = regexp.MustCompile(`^[a-z0-9_]{1,40}$`)
	hashEnc   = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)
)

// Namespaced is the database queue of queue in namespace: e.g. "orders" in "shop" → "orders_<10 characters>".
// Deterministic; two (namespace, queue) pairs share a database queue only with a 50-bit hash collision.
func Namespaced(namespace, queue string) string {
	sum := sha256.Sum256([]byte(namespace + "/" + queue))
	prefix := queue
	if len(prefix) > maxPrefix {
		prefix = prefix[:maxPrefix]
	}
	return prefix + "_" + hashEnc.EncodeToString(sum[:])[:hashLen]
}

// Scope says which queues are shared. The zero Scope shares none: every queue is its namespace's own.
type Scope struct {
	shared map[string][]string // queue → namespaces it is shared with (nil: every namespace)
}

// Share shares queue with namespaces (none: with every namespace). spec is a --shared-queue value:
// "NAME" or "NAME=NS1,NS2".
func (s *Scope) Share(spec string) error {
	name, list, hasList := strings.Cut(spec, "=")
	name = strings.TrimSpace(name)
	if !queueName.MatchString(name) {
		return fmt.Errorf("shared queue %q: the name must match ^[a-z0-9_]{1,40}$", name)
	}
	var namespaces []string
	if hasList {
		for _, ns := range strings.Split(list, ",") {
			ns = strings.TrimSpace(ns)
			if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
				return fmt.Errorf("shared queue %s: namespace %q: %s", name, ns, strings.Join(errs, "; "))
			}
			namespaces = append(namespaces, ns)
		}
	}
	if s.shared == nil {
		s.shared = map[string][]string{}
	}
	if prev, ok := s.shared[name]; ok && (prev == nil || namespaces == nil) {
		s.shared[name] = nil // shared with every namespace by one of the flags
		return nil
	}
	s.shared[name] = append(s.shared[name], namespaces...)
	return nil
}

// Shared tells whether queue is shared with namespace.
func (s Scope) Shared(namespace, queue string) bool {
	namespaces, ok := s.shared[queue]
	return ok && (namespaces == nil || slices.Contains(namespaces, namespace))
}

// DatabaseQueue is the database queue that queue names in namespace: the queue itself when it is shared with the
// namespace, else Namespaced(namespace, queue).
func (s Scope) DatabaseQueue(namespace, queue string) string {
	if s.Shared(namespace, queue) {
		return queue
	}
	return Namespaced(namespace, queue)
}

// DatabaseQueues maps each of queues (DatabaseQueue), in order.
func (s Scope) DatabaseQueues(namespace string, queues []string) []string {
	out := make([]string, len(queues))
	for i, q := range queues {
		out[i] = s.DatabaseQueue(namespace, q)
	}
	return out
}

// String lists the shared queues as --shared-queue values, sorted (for logs).
func (s Scope) String() string {
	out := make([]string, 0, len(s.shared))
	for q, namespaces := range s.shared {
		if namespaces == nil {
			out = append(out, q)
		} else {
			out = append(out, q+"="+strings.Join(namespaces, ","))
		}
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}
