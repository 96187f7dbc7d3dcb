package dag_test

import (
	"errors"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/tasker-operator/tasker-operator/internal/dag"
)

// Names a fuzzed step may get instead of its own "s<i>": collisions, invalid names and one too long.
var oddNames = []string{"", "s0", "s1", "s2", "A", "-a", "a-", "a_b", "a -> b", strings.Repeat("x", 64), "a", "b"}

// References a fuzzed dependsOn entry may hold instead of the name of a step.
var oddRefs = []string{"", "missing", "s0", "S0", "a"}

// graphFromBytes builds a small graph: the first byte gives the number of steps, the next one byte per step picks
// its name, and each following pair of bytes adds a dependsOn entry (step, reference).
func graphFromBytes(data []byte) []dag.Node {
	if len(data) == 0 {
		return nil
	}
	n := int(data[0]) % 20
	data = data[1:]
	nodes := make([]dag.Node, n)
	for i := range nodes {
		nodes[i].Name = "s" + strconv.Itoa(i)
		if i < len(data) && int(data[i]) >= 256-len(oddNames) {
			nodes[i].Name = oddNames[int(data[i])-(256-len(oddNames))]
		}
	}
	data = data[min(n, len(data)):]
	for ; n > 0 && len(data) >= 2; data = data[2:] {
		from, to := int(data[0])%n, int(data[1])
		ref := nodes[to%n].Name
		if to >= 256-len(oddRefs) {
			ref = oddRefs[to-(256-len(oddRefs))]
		}
		nodes[from].DependsOn = append(nodes[from].DependsOn, ref)
	}
	return nodes
}

var (
	labelRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	fieldRE = regexp.MustCompile(`^\[(\d+)\]\.(name|dependsOn\[(\d+)\])$`)
)

func FuzzValidate(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0})
	f.Add([]byte{1, 0})
	f.Add([]byte{3, 0, 0, 0, 1, 0, 2, 1})                                  // chain
	f.Add([]byte{3, 0, 0, 0, 0, 1, 1, 2, 2, 0})                            // 3-cycle
	f.Add([]byte{4, 0, 0, 0, 0, 1, 0, 2, 0, 3, 1, 3, 2})                   // diamond
	f.Add([]byte{2, 0, 0, 0, 0})                                           // self dependency
	f.Add([]byte{2, 0, 0, 1, 0, 1, 0})                                     // repeated entry
	f.Add([]byte{2, 0, 0, 1, 255})                                         // unknown reference
	f.Add([]byte{3, 0, 245, 0})                                            // duplicate name
	f.Add([]byte{2, 248, 0, 0, 1, 1, 0})                                   // invalid name in a cycle
	f.Add([]byte{6, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 2, 3, 3, 4, 4, 2, 5, 4}) // two cycles
	f.Fuzz(func(t *testing.T, data []byte) {
		nodes := graphFromBytes(data)
		errs := dag.Validate(nodes)
		if again := dag.Validate(nodes); !reflect.DeepEqual(errs, again) {
			t.Fatalf("Validate() not deterministic: %v, then %v", errs, again)
		}
		order, err := dag.TopologicalOrder(nodes)

		// Every field path points into the graph.
		for _, e := range errs {
			if e.Field == "" {
				continue
			}
			m := fieldRE.FindStringSubmatch(e.Field)
			if m == nil {
				t.Fatalf("bad field %q", e.Field)
			}
			i, _ := strconv.Atoi(m[1])
			if i >= len(nodes) {
				t.Fatalf("field %q: no step %d", e.Field, i)
			}
			if m[3] != "" {
				if k, _ := strconv.Atoi(m[3]); k >= len(nodes[i].DependsOn) {
					t.Fatalf("field %q: no dependsOn entry %d", e.Field, k)
				}
			}
		}

		// TopologicalOrder agrees with Validate.
		if len(errs) == 0 {
			if err != nil {
				t.Fatalf("Validate() = nil but TopologicalOrder() error = %v", err)
			}
			checkOrder(t, nodes, order)
			if want := referenceOrder(nodes); !reflect.DeepEqual(order, want) {
				t.Fatalf("TopologicalOrder() = %v, want %v (lowest ready index first)", order, want)
			}
		} else {
			var first dag.Error
			if err == nil || !errors.As(err, &first) || first != errs[0] {
				t.Fatalf("Validate() = %v but TopologicalOrder() = %v, %v", errs, order, err)
			}
		}

		// An independent oracle: Validate is nil exactly when the graph is valid, and reports cycles exactly when
		// names are unique, references resolve and some cycle exists.
		o := inspect(nodes)
		var cycleMsgs []string
		for _, e := range errs {
			if msg, ok := strings.CutPrefix(e.Message, "dependency cycle: "); ok {
				cycleMsgs = append(cycleMsgs, msg)
			}
		}
		if valid := o.namesValid && o.unique && o.resolved && o.clean && !o.cyclic; valid != (len(errs) == 0) {
			t.Fatalf("oracle %+v, Validate() = %v", o, errs)
		}
		if wantCycles := o.unique && o.resolved && o.cyclic; wantCycles != (len(cycleMsgs) > 0) {
			t.Fatalf("oracle %+v, Validate() = %v", o, errs)
		}
		if o.namesValid {
			for _, msg := range cycleMsgs {
				checkCycle(t, nodes, msg)
			}
		}
	})
}

type oracle struct {
	namesValid bool // every name is a label of at most 63 characters
	unique     bool // no two steps share a name
	resolved   bool // every dependsOn entry names some step
	clean      bool // no self-dependency, no repeated entry
	cyclic     bool // a cycle of two or more steps exists
}

// inspect works out what is wrong with a graph, the slow and obvious way.
func inspect(nodes []dag.Node) oracle {
	o := oracle{namesValid: true, unique: true, resolved: true, clean: true}
	index := map[string]int{}
	for i, n := range nodes {
		if !labelRE.MatchString(n.Name) || len(n.Name) > 63 {
			o.namesValid = false
		}
		if _, ok := index[n.Name]; ok {
			o.unique = false
		} else {
			index[n.Name] = i
		}
	}
	for _, n := range nodes {
		for k, dep := range n.DependsOn {
			if _, ok := index[dep]; !ok {
				o.resolved = false
			}
			if dep == n.Name {
				o.clean = false
			}
			for _, before := range n.DependsOn[:k] {
				if before == dep {
					o.clean = false
				}
			}
		}
	}
	if !o.unique || !o.resolved {
		return o
	}
	// reach[i][j]: j is reachable from i through one or more dependencies, not counting self-dependencies.
	reach := make([][]bool, len(nodes))
	for i, n := range nodes {
		reach[i] = make([]bool, len(nodes))
		for _, dep := range n.DependsOn {
			if dep != n.Name {
				reach[i][index[dep]] = true
			}
		}
	}
	for k := range nodes {
		for i := range nodes {
			for j := range nodes {
				if reach[i][k] && reach[k][j] {
					reach[i][j] = true
				}
			}
		}
	}
	for i := range nodes {
		if reach[i][i] {
			o.cyclic = true
		}
	}
	return o
}

// checkCycle fails the test unless msg ("a -> b -> a") is a cycle of dependencies starting at its smallest name.
func checkCycle(t *testing.T, nodes []dag.Node, msg string) {
	t.Helper()
	names := strings.Split(msg, " -> ")
	if len(names) < 3 || names[0] != names[len(names)-1] {
		t.Fatalf("cycle %q is not closed", msg)
	}
	deps := map[string][]string{}
	for _, n := range nodes {
		deps[n.Name] = n.DependsOn
	}
	seen := map[string]bool{}
	for i, name := range names[:len(names)-1] {
		if seen[name] {
			t.Fatalf("cycle %q visits %q twice", msg, name)
		}
		seen[name] = true
		if name < names[0] {
			t.Fatalf("cycle %q does not start at its smallest name", msg)
		}
		found := false
		for _, dep := range deps[name] {
			found = found || dep == names[i+1]
		}
		if !found {
			t.Fatalf("cycle %q: %q does not depend on %q", msg, name, names[i+1])
		}
	}
}

// referenceOrder is TopologicalOrder the slow way: repeatedly take the lowest index whose dependencies are done.
func referenceOrder(nodes []dag.Node) []int {
	done := map[string]bool{}
	order := []int{}
	for progress := true; progress; {
		progress = false
		for i, n := range nodes {
			if done[n.Name] {
				continue
			}
			ready := true
			for _, dep := range n.DependsOn {
				ready = ready && done[dep]
			}
			if ready {
				done[n.Name] = true
				order = append(order, i)
				progress = true
				break
			}
		}
	}
	return order
}
