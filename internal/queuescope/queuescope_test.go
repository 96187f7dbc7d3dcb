package queuescope

import (
	"regexp"
	"strings"
	"testing"
)

func TestNamespaced(t *testing.T) {
	valid := regexp.MustCompile(`^[a-z0-9_]{1,40}$`)
	long := strings.Repeat("q", 40)
	cases := []struct{ ns, queue string }{
		{"a", "default"}, {"b", "default"}, {"a", "orders"}, {"shop", long}, {"shop", long[:39] + "x"},
		{strings.Repeat("n", 63), "x"}, {"a-b", "c"}, {"a", "b_c"},
	}
	seen := map[string]string{}
	for _, c := range cases {
		got := Namespaced(c.ns, c.queue)
		if !valid.MatchString(got) {
			t.Errorf("Namespaced(%q, %q) = %q: not a valid database queue name", c.ns, c.queue, got)
		}
		if got != Namespaced(c.ns, c.queue) {
			t.Errorf("Namespaced(%q, %q) is not deterministic", c.ns, c.queue)
		}
		want := c.queue
		if len(want) > maxPrefix {
			want = want[:maxPrefix]
		}
		if !strings.HasPrefix(got, want+"_") {
			t.Errorf("Namespaced(%q, %q) = %q: want the prefix %q_", c.ns, c.queue, got, want)
		}
		key := c.ns + "/" + c.queue
		if prev, dup := seen[got]; dup {
			t.Errorf("%s and %s share the database queue %s", prev, key, got)
		}
		seen[got] = key
	}
	// The namespace and the queue are separated: ("a-b", "c") and ("a", "b-c") cannot meet (queues have no '-'),
	// and neither can ("a", "b/c") — the '/' separator cannot appear in either part.
	if Namespaced("ab", "c") == Namespaced("a", "bc") {
		t.Error("the namespace and the queue name run into each other")
	}
}

func TestScope(t *testing.T) {
	var s Scope
	for _, spec := range []string{"gpu", "payments=billing, shop", "payments=audit", "batch=etl", "batch"} {
		if err := s.Share(spec); err != nil {
			t.Fatalf("Share(%q): %v", spec, err)
		}
	}
	cases := []struct {
		ns, queue string
		shared    bool
	}{
		{"anyone", "gpu", true},
		{"billing", "payments", true},
		{"shop", "payments", true},
		{"audit", "payments", true}, // a second flag for the same queue adds namespaces
		{"other", "payments", false},
		{"other", "batch", true}, // once shared with every namespace, a list does not narrow it
		{"billing", "default", false},
	}
	for _, c := range cases {
		if got := s.Shared(c.ns, c.queue); got != c.shared {
			t.Errorf("Shared(%q, %q) = %v, want %v", c.ns, c.queue, got, c.shared)
		}
		want := Namespaced(c.ns, c.queue)
		if c.shared {
			want = c.queue
		}
		if got := s.DatabaseQueue(c.ns, c.queue); got != want {
			t.Errorf("DatabaseQueue(%q, %q) = %q, want %q", c.ns, c.queue, got, want)
		}
	}
	if got, want := s.String(), "batch gpu payments=billing,shop,audit"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got := s.DatabaseQueues("billing", []string{"payments", "default"}); got[0] != "payments" || got[1] != Namespaced("billing", "default") {
		t.Errorf("DatabaseQueues = %v", got)
	}
	var zero Scope
	if zero.Shared("a", "gpu") || zero.DatabaseQueue("a", "gpu") != Namespaced("a", "gpu") {
		t.Error("the zero Scope shares a queue")
	}
}

func TestShareRejects(t *testing.T) {
	for spec, want := range map[string]string{
		"":                                       "the name must match",
		"Orders":                                 "the name must match",
		"orders=":                                `namespace ""`,
		"orders=a,B":                             `namespace "B"`,
		"orders=a,,b":                            `namespace ""`,
		"a-b=ns":                                 "the name must match",
		"orders=a_b":                             `namespace "a_b"`,
		"orders=a b":                             `namespace "a b"`,
		"toolongname_" + strings.Repeat("x", 40): "the name must match",
	} {
		var s Scope
		err := s.Share(spec)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Share(%q) = %v, want an error containing %q", spec, err, want)
		}
	}
}
