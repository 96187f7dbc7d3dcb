package dag_test

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/tasker-operator/tasker-operator/internal/dag"
)

// node builds a Node.
func node(name string, deps ...string) dag.Node {
	return dag.Node{Name: name, DependsOn: deps}
}

// chain returns n steps where each depends on the previous one.
func chain(n int) []dag.Node {
	nodes := make([]dag.Node, n)
	for i := range nodes {
		nodes[i].Name = fmt.Sprintf("step-%04d", i)
		if i > 0 {
			nodes[i].DependsOn = []string{nodes[i-1].Name}
		}
	}
	return nodes
}

type wantErr struct {
	field string
	msg   string // substring of the message
}

func TestValidate(t *testing.T) {
	cycle1000 := chain(1000)
	cycle1000[0].DependsOn = []string{"step-0999"}

	tests := []struct {
		name     string
		nodes    []dag.Node
		wantErrs []wantErr
	}{
		{
			name:  "empty graph is valid",
			nodes: nil,
		},
		{
			name:  "single node",
			nodes: []dag.Node{node("a")},
		},
		{
			name:  "linear chain",
			nodes: []dag.Node{node("a"), node("b", "a"), node("c", "b")},
		},
		{
			name:  "dependencies listed after their dependant",
			nodes: []dag.Node{node("c", "b"), node("b", "a"), node("a")},
		},
		{
			name:  "diamond",
			nodes: []dag.Node{node("a"), node("b", "a"), node("c", "a"), node("d", "b", "c")},
		},
		{
			name: "fan-out and fan-in",
			nodes: []dag.Node{
				node("start"), node("x1", "start"), node("x2", "start"), node("x3", "start"),
				node("end", "x1", "x2", "x3"),
			},
		},
		{
			name:  "1000-long chain",
			nodes: chain(1000),
		},
		{
			name:  "self dependency",
			nodes: []dag.Node{node("a"), node("b", "a", "b")},
			wantErrs: []wantErr{
				{"[1].dependsOn[1]", `step "b" depends on itself`},
			},
		},
		{
			name:  "unknown dependency",
			nodes: []dag.Node{node("a", "zz"), node("b", "a")},
			wantErrs: []wantErr{
				{"[0].dependsOn[0]", `step "a" depends on unknown step "zz"`},
			},
		},
		{
			name:  "duplicate names",
			nodes: []dag.Node{node("a"), node("b"), node("a", "b"), node("b")},
			wantErrs: []wantErr{
				{"[2].name", `duplicate step name "a" (first used by step [0])`},
				{"[3].name", `duplicate step name "b" (first used by step [1])`},
			},
		},
		{
			name:  "duplicate dependsOn entries",
			nodes: []dag.Node{node("a"), node("b"), node("c", "a", "b", "a", "a")},
			wantErrs: []wantErr{
				{"[2].dependsOn[2]", `step "c" depends on "a" more than once (first listed at dependsOn[0])`},
				{"[2].dependsOn[3]", `step "c" depends on "a" more than once (first listed at dependsOn[0])`},
			},
		},
		{
			name:  "2-cycle",
			nodes: []dag.Node{node("b", "a"), node("a", "b")},
			wantErrs: []wantErr{
				{"", "dependency cycle: a -> b -> a"},
			},
		},
		{
			name:  "3-cycle",
			nodes: []dag.Node{node("a", "b"), node("b", "c"), node("c", "a")},
			wantErrs: []wantErr{
				{"", "dependency cycle: a -> b -> c -> a"},
			},
		},
		{
			name:  "3-cycle listed from another step starts at the smallest name",
			nodes: []dag.Node{node("c", "a"), node("b", "c"), node("a", "b")},
			wantErrs: []wantErr{
				{"", "dependency cycle: a -> b -> c -> a"},
			},
		},
		{
			name: "cycle not including the first node",
			nodes: []dag.Node{
				node("root"), node("x", "root", "z"), node("y", "x"), node("z", "y"), node("after", "z"),
			},
			wantErrs: []wantErr{
				{"", "dependency cycle: x -> z -> y -> x"},
			},
		},
		{
			name: "two disjoint cycles",
			nodes: []dag.Node{
				node("p", "q"), node("a", "b"), node("q", "p"), node("b", "c"), node("c", "a"),
			},
			wantErrs: []wantErr{
				{"", "dependency cycle: p -> q -> p"},
				{"", "dependency cycle: a -> b -> c -> a"},
			},
		},
		{
			name: "cycles sharing nodes are one component, reported once with a shortest cycle",
			nodes: []dag.Node{
				node("a", "b"), node("b", "c", "a"), node("c", "a"),
			},
			wantErrs: []wantErr{
				{"", "dependency cycle: a -> b -> a"},
			},
		},
		{
			name:  "1000-long cycle",
			nodes: cycle1000,
			wantErrs: []wantErr{
				{"", "dependency cycle: step-0000 -> step-0999 -> step-0998 -> "},
			},
		},
		{
			name: "bad names",
			nodes: []dag.Node{
				node(""), node("A"), node("-a"), node("a-"), node("a_b"), node("a.b"),
				node(strings.Repeat("x", 64)), node(strings.Repeat("x", 63)), node("0"), node("a-0-b"),
			},
			wantErrs: []wantErr{
				{"[0].name", "step name must not be empty"},
				{"[1].name", `invalid step name "A"`},
				{"[2].name", `invalid step name "-a"`},
				{"[3].name", `invalid step name "a-"`},
				{"[4].name", `invalid step name "a_b"`},
				{"[5].name", `invalid step name "a.b"`},
				{"[6].name", "step name must be no more than 63 characters (got 64)"},
			},
		},
		{
			name: "cycles among unique but invalid names are still found, names quoted",
			nodes: []dag.Node{
				node("B", "a"), node("a", "B"),
			},
			wantErrs: []wantErr{
				{"[0].name", `invalid step name "B"`},
				{"", `dependency cycle: "B" -> a -> "B"`},
			},
		},
		{
			name: "no cycle search when a reference is unknown",
			nodes: []dag.Node{
				node("a", "b"), node("b", "a", "nope"),
			},
			wantErrs: []wantErr{
				{"[1].dependsOn[1]", `step "b" depends on unknown step "nope"`},
			},
		},
		{
			name: "no cycle search when names are duplicated",
			nodes: []dag.Node{
				node("a", "b"), node("b", "a"), node("b"),
			},
			wantErrs: []wantErr{
				{"[2].name", `duplicate step name "b" (first used by step [1])`},
			},
		},
		{
			name: "long values are cut short in messages",
			nodes: []dag.Node{
				node("a", strings.Repeat("z", 10000)),
			},
			wantErrs: []wantErr{
				{"[0].dependsOn[0]", `step "a" depends on unknown step "` + strings.Repeat("z", 63) + `"...`},
			},
		},
		{
			name: "errors come in step order, then cycles",
			nodes: []dag.Node{
				node("a", "b", "a"), node("B", "a", "b", "b"), node("b", "a"),
			},
			wantErrs: []wantErr{
				{"[0].dependsOn[1]", `step "a" depends on itself`},
				{"[1].name", `invalid step name "B"`},
				{"[1].dependsOn[2]", `step "B" depends on "b" more than once (first listed at dependsOn[1])`},
				{"", "dependency cycle: a -> b -> a"},
			},
		},
		{
			name:  "too many nodes",
			nodes: chain(dag.MaxSteps + 1),
			wantErrs: []wantErr{
				{"", "too many steps: 1001 (the maximum is 1000)"},
			},
		},
		{
			name:  "MaxSteps nodes are fine",
			nodes: chain(dag.MaxSteps),
		},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			errs := dag.Validate(test.nodes)
			if len(test.wantErrs) == 0 {
				if errs != nil {
					t.Fatalf("Validate() = %v, want nil", errs)
				}
				return
			}
			if len(errs) != len(test.wantErrs) {
				t.Fatalf("Validate() returned %d errors, want %d: %v", len(errs), len(test.wantErrs), errs)
			}
			for i, want := range test.wantErrs {
				if errs[i].Field != want.field || !strings.Contains(errs[i].Message, want.msg) {
					t.Errorf("error %d = {%q, %q}, want {%q, containing %q}",
						i, errs[i].Field, errs[i].Message, want.field, want.msg)
				}
			}
		})
	}
}

func TestValidateCycleMessageIsExact(t *testing.T) {
	errs := dag.Validate([]dag.Node{node("a", "b"), node("b", "c"), node("c", "a")})
	want := []dag.Error{{Field: "", Message: "dependency cycle: a -> b -> c -> a"}}
	if !reflect.DeepEqual(errs, want) {
		t.Fatalf("Validate() = %#v, want %#v", errs, want)
	}
}

func TestValidateIsDeterministic(t *testing.T) {
	nodes := []dag.Node{
		node("d", "c"), node("B"), node("x", "y"), node("a", "d"), node("b", "a", "zz", "a"),
		node("c", "b"), node("y", "x", "y"), node("p", "q"), node("q", "p"), node("B"),
	}
	first := dag.Validate(nodes)
	if len(first) == 0 {
		t.Fatal("Validate() found no errors")
	}
	for range 100 {
		if got := dag.Validate(nodes); !reflect.DeepEqual(got, first) {
			t.Fatalf("Validate() = %v, then %v", first, got)
		}
	}

	// The cycles alone (names unique, references resolved): the same messages in every order of the steps.
	cycles := []dag.Node{
		node("d", "c"), node("x", "y"), node("a", "d"), node("b", "a"), node("c", "b"), node("y", "x"),
	}
	want := map[string]bool{"dependency cycle: a -> d -> c -> b -> a": true, "dependency cycle: x -> y -> x": true}
	for shift := range cycles {
		rotated := append(append([]dag.Node{}, cycles[shift:]...), cycles[:shift]...)
		errs := dag.Validate(rotated)
		if len(errs) != len(want) {
			t.Fatalf("shift %d: Validate() = %v", shift, errs)
		}
		for _, err := range errs {
			if !want[err.Message] {
				t.Errorf("shift %d: unexpected error %q", shift, err.Message)
			}
		}
	}
}

func TestErrorString(t *testing.T) {
	if got, want := (dag.Error{Field: "[1].name", Message: "bad"}).Error(), "[1].name: bad"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if got, want := (dag.Error{Message: "bad"}).Error(), "bad"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestTopologicalOrder(t *testing.T) {
	tests := []struct {
		name  string
		nodes []dag.Node
		want  []int
	}{
		{name: "empty", nodes: nil, want: []int{}},
		{name: "single", nodes: []dag.Node{node("a")}, want: []int{0}},
		{name: "independent steps keep their order", nodes: []dag.Node{node("c"), node("a"), node("b")}, want: []int{0, 1, 2}},
		{name: "reversed chain", nodes: []dag.Node{node("c", "b"), node("b", "a"), node("a")}, want: []int{2, 1, 0}},
		{
			name:  "diamond",
			nodes: []dag.Node{node("d", "b", "c"), node("c", "a"), node("b", "a"), node("a")},
			want:  []int{3, 1, 2, 0},
		},
		{
			name:  "lowest ready index first",
			nodes: []dag.Node{node("a", "e"), node("b"), node("c", "b"), node("d"), node("e")},
			want:  []int{1, 2, 3, 4, 0},
		},
		{name: "1000-long chain", nodes: chain(1000), want: seq(1000)},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			got, err := dag.TopologicalOrder(test.nodes)
			if err != nil {
				t.Fatalf("TopologicalOrder() error = %v", err)
			}
			if !reflect.DeepEqual(got, test.want) {
				t.Errorf("TopologicalOrder() = %v, want %v", got, test.want)
			}
			checkOrder(t, test.nodes, got)
		})
	}
}

func TestTopologicalOrderErrors(t *testing.T) {
	tests := []struct {
		name  string
		nodes []dag.Node
		want  string
	}{
		{name: "cycle", nodes: []dag.Node{node("a", "b"), node("b", "c"), node("c", "a")}, want: "dependency cycle: a -> b -> c -> a"},
		{name: "self dependency", nodes: []dag.Node{node("a", "a")}, want: `[0].dependsOn[0]: step "a" depends on itself`},
		{name: "unknown", nodes: []dag.Node{node("a"), node("b", "c")}, want: `[1].dependsOn[0]: step "b" depends on unknown step "c"`},
		{name: "first error", nodes: []dag.Node{node("A"), node("b", "b")}, want: `[0].name: invalid step name "A"`},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			got, err := dag.TopologicalOrder(test.nodes)
			if err == nil {
				t.Fatalf("TopologicalOrder() = %v, want an error", got)
			}
			if !strings.HasPrefix(err.Error(), test.want) {
				t.Errorf("TopologicalOrder() error = %q, want %q", err, test.want)
			}
			if got != nil {
				t.Errorf("TopologicalOrder() = %v with an error, want nil", got)
			}
		})
	}
}

func TestRoots(t *testing.T) {
	tests := []struct {
		name  string
		nodes []dag.Node
		want  []int
	}{
		{name: "empty", nodes: nil, want: nil},
		{name: "all roots", nodes: []dag.Node{node("a"), node("b")}, want: []int{0, 1}},
		{name: "diamond", nodes: []dag.Node{node("d", "b", "c"), node("b", "a"), node("a"), node("c", "a")}, want: []int{2}},
		{name: "several", nodes: []dag.Node{node("a"), node("b", "a"), node("c"), node("d", "c")}, want: []int{0, 2}},
		{name: "empty dependsOn list", nodes: []dag.Node{{Name: "a", DependsOn: []string{}}}, want: []int{0}},
		{name: "no roots in a cycle", nodes: []dag.Node{node("a", "b"), node("b", "a")}, want: nil},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			if got := dag.Roots(test.nodes); !reflect.DeepEqual(got, test.want) {
				t.Errorf("Roots() = %v, want %v", got, test.want)
			}
		})
	}
}

func seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

// checkOrder fails the test unless order is a permutation of the node indexes with every node after its
// dependencies.
func checkOrder(t testing.TB, nodes []dag.Node, order []int) {
	t.Helper()
	if len(order) != len(nodes) {
		t.Fatalf("order %v has %d entries, want %d", order, len(order), len(nodes))
	}
	pos := make(map[string]int, len(nodes))
	for p, i := range order {
		if i < 0 || i >= len(nodes) {
			t.Fatalf("order %v: index %d out of range", order, i)
		}
		if _, ok := pos[nodes[i].Name]; ok {
			t.Fatalf("order %v: step %d twice", order, i)
		}
		pos[nodes[i].Name] = p
	}
	for i, n := range nodes {
		for _, dep := range n.DependsOn {
			if pos[dep] >= pos[n.Name] {
				t.Fatalf("order %v: step %d (%q) comes before its dependency %q", order, i, n.Name, dep)
			}
		}
	}
}
