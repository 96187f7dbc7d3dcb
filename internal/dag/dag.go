// Package dag validates and orders workflow step graphs.
//
// A graph is a list of steps, each naming the steps it depends on. The admission webhook calls Validate to reject
// bad Task specs with every problem at once (field paths relative to the steps list), and the engine calls
// TopologicalOrder to decide which steps may run. The package is pure Go with no dependencies beyond the standard
// library, and every algorithm is iterative and linear in the size of the graph, so a hostile spec can neither
// blow the stack nor make the webhook slow.
package dag

import (
	"fmt"
	"strconv"
	"strings"
)

// MaxSteps is the maximum number of steps in one graph (1000).
const MaxSteps = 1000

// maxNameLength is the longest allowed step name: step names are RFC 1123 labels, so that they can be used in the
// names and labels of the Kubernetes objects created for a step.
const maxNameLength = 63

// Node is one step: its name and the names of the steps it depends on.
type Node struct {
	Name      string
	DependsOn []string
}

// Error is one problem found in a graph. Field is a path relative to the steps list, such as
// "[3].dependsOn[1]" or "[2].name" or "" for graph-wide problems; the caller prefixes it (e.g. "spec.steps").
type Error struct {
	Field   string
	Message string
}

// Error returns "<field>: <message>", or just the message when Field is empty.
func (e Error) Error() string {
	if e.Field == "" {
		return e.Message
	}
	return e.Field + ": " + e.Message
}

// Validate checks a graph and returns every problem found (nil when valid), so that a user fixes a spec in one go.
//
// The order is deterministic (it never depends on map iteration): problems of each step in step order (its name,
// then its dependsOn entries in order), then dependency cycles. Problems are:
//   - a name that is empty, longer than 63 characters, or not an RFC 1123 label
//     (^[a-z0-9]([-a-z0-9]*[a-z0-9])?$), Field "[i].name";
//   - a name already used by an earlier step, Field "[i].name", `duplicate step name "x" (first used by step [j])`;
//   - a dependsOn entry naming an unknown step, Field "[i].dependsOn[k]", `step "a" depends on unknown step "zz"`;
//   - a dependsOn entry naming the step itself, Field "[i].dependsOn[k]", `step "a" depends on itself`;
//   - a dependsOn entry repeating an earlier entry of the same step, Field "[i].dependsOn[k]";
//   - more than MaxSteps steps, Field "": then this is the only error returned, so that the cost of rejecting an
//     oversized graph does not grow with it;
//   - dependency cycles, Field "", one error per strongly connected component of the graph (so two disjoint cycles
//     give two errors, and a tangle of cycles one), e.g. `dependency cycle: a -> b -> c -> a`, where each arrow
//     points from a step to a step it depends on. The cycle shown is a shortest one through the lexicographically
//     smallest name of the component, and starts at that name, so the message is stable however the steps are
//     listed.
//
// Cycle detection only runs when names are unique and every dependsOn entry names a step (otherwise it would
// report noise); self-dependencies and repeated entries are reported as such, not as cycles. Names and values are
// quoted in messages (and cut short when longer than 63 characters, so that a hostile spec cannot inflate the
// response); valid names appear unquoted in cycle messages.
func Validate(nodes []Node) []Error {
	errs, _ := check(nodes)
	return errs
}

// TopologicalOrder returns node indexes in an order where every node comes after its dependencies. The order is
// stable: Kahn's algorithm taking the lowest ready index first, so steps keep the order they are listed in when
// dependencies allow it, and the same spec always gives the same order. It returns the first Validate error when
// the graph is invalid.
func TopologicalOrder(nodes []Node) ([]int, error) {
	errs, g := check(nodes)
	if len(errs) > 0 {
		return nil, errs[0]
	}
	n := len(nodes)
	if n == 0 {
		return []int{}, nil
	}

	// Reverse adjacency (dependants of each node) in CSR form, and the number of unfinished dependencies of each
	// node.
	buf := make([]int, 4*n+1+len(g.adj))
	pending, rev, fill := buf[:n:n], buf[n:2*n+1:2*n+1], buf[2*n+1:3*n+1:3*n+1]
	heap, dependants := buf[3*n+1:3*n+1:4*n+1], buf[4*n+1:]
	for v := range n {
		pending[v] = g.off[v+1] - g.off[v]
		for _, w := range g.adj[g.off[v]:g.off[v+1]] {
			rev[w+1]++
		}
	}
	for v := range n {
		rev[v+1] += rev[v]
	}
	copy(fill, rev[:n]) // where the next dependant of each node goes
	for v := range n {
		for _, w := range g.adj[g.off[v]:g.off[v+1]] {
			dependants[fill[w]] = v
			fill[w]++
		}
	}

	order := make([]int, 0, n)
	for v := range n {
		if pending[v] == 0 {
			heap = append(heap, v) // ascending, hence already a valid min-heap
		}
	}
	for len(heap) > 0 {
		v := heap[0]
		last := len(heap) - 1
		heap[0] = heap[last]
		heap = heap[:last]
		siftDown(heap, 0)
		order = append(order, v)
		for _, w := range dependants[rev[v]:rev[v+1]] {
			if pending[w]--; pending[w] == 0 {
				heap = append(heap, w)
				siftUp(heap, len(heap)-1)
			}
		}
	}
	return order, nil
}

// Roots returns the indexes of nodes with no dependencies, in index order: the steps that can start first. It does
// not validate the graph.
func Roots(nodes []Node) []int {
	count := 0
	for i := range nodes {
		if len(nodes[i].DependsOn) == 0 {
			count++
		}
	}
	if count == 0 {
		return nil
	}
	roots := make([]int, 0, count)
	for i := range nodes {
		if len(nodes[i].DependsOn) == 0 {
			roots = append(roots, i)
		}
	}
	return roots
}

// graph is the resolved form of a valid node list: the dependencies of node v are adj[off[v]:off[v+1]], without
// self-references or repeated entries.
type graph struct {
	off []int
	adj []int
}

// check validates nodes and, when they are valid, returns their resolved graph as well.
func check(nodes []Node) ([]Error, *graph) {
	n := len(nodes)
	if n > MaxSteps {
		return []Error{{Message: fmt.Sprintf("too many steps: %d (the maximum is %d)", n, MaxSteps)}}, nil
	}
	if n == 0 {
		return nil, &graph{off: []int{0}}
	}

	index := make(map[string]int, n)
	edges := 0
	for i := range nodes {
		if _, ok := index[nodes[i].Name]; !ok {
			index[nodes[i].Name] = i
		}
		edges += len(nodes[i].DependsOn)
	}

	// One allocation for the per-node scratch space; the slices are reused by the cycle search below.
	buf := make([]int, 7*n+1+edges)
	off, adj := buf[:n+1:n+1], buf[n+1:n+1:n+1+edges]
	seen, seenAt := buf[n+1+edges:2*n+1+edges:2*n+1+edges], buf[2*n+1+edges:3*n+1+edges:3*n+1+edges]
	scratch := buf[3*n+1+edges:]

	var errs []Error
	structural := false // a duplicate name or an unknown reference: skip the cycle search
	for i := range nodes {
		name := nodes[i].Name
		switch {
		case name == "":
			errs = append(errs, Error{nameField(i), "step name must not be empty"})
		case len(name) > maxNameLength:
			errs = append(errs, Error{nameField(i), fmt.Sprintf(
				"step name must be no more than %d characters (got %d)", maxNameLength, len(name))})
		case !isLabel(name):
			errs = append(errs, Error{nameField(i), fmt.Sprintf(
				"invalid step name %s: must consist of lower case alphanumeric characters or '-', "+
					"and must start and end with an alphanumeric character", quote(name))})
		}
		if j := index[name]; j != i {
			structural = true
			errs = append(errs, Error{nameField(i), fmt.Sprintf(
				"duplicate step name %s (first used by step [%d])", quote(name), j)})
		}

		off[i] = len(adj)
		for k, dep := range nodes[i].DependsOn {
			if dep == name {
				errs = append(errs, Error{depField(i, k), fmt.Sprintf("step %s depends on itself", quote(name))})
				continue
			}
			j, ok := index[dep]
			if !ok {
				structural = true
				errs = append(errs, Error{depField(i, k), fmt.Sprintf(
					"step %s depends on unknown step %s", quote(name), quote(dep))})
				continue
			}
			if seen[j] == i+1 {
				errs = append(errs, Error{depField(i, k), fmt.Sprintf(
					"step %s depends on %s more than once (first listed at dependsOn[%d])",
					quote(name), quote(dep), seenAt[j])})
				continue
			}
			seen[j], seenAt[j] = i+1, k
			adj = append(adj, j)
		}
	}
	off[n] = len(adj)
	if structural {
		return errs, nil
	}

	g := &graph{off: off, adj: adj}
	errs = append(errs, findCycles(nodes, g, seen, seenAt, scratch)...)
	if len(errs) > 0 {
		return errs, nil
	}
	return nil, g
}

// findCycles reports one cycle per strongly connected component of more than one node, in the order of the lowest
// index of each component. It runs Tarjan's algorithm with an explicit stack, then a breadth-first search inside
// each cyclic component, so it is O(V+E) overall and recursion-free. a, b and scratch are working space of n, n and
// 4n ints.
func findCycles(nodes []Node, g *graph, a, b, scratch []int) []Error {
	n := len(nodes)
	order, low, comp := a, b, scratch[:n]
	cursor, stack, calls := scratch[n:2*n], scratch[2*n:2*n:3*n], scratch[3*n:3*n:4*n]
	for v := range n {
		order[v] = -1 // unvisited
		comp[v] = -1  // no component yet: while visited, the node is on the Tarjan stack
	}

	visited, comps, cyclic := 0, 0, false
	for s := range n {
		if order[s] >= 0 {
			continue
		}
		order[s], low[s], cursor[s] = visited, visited, g.off[s]
		visited++
		stack, calls = append(stack, s), append(calls, s)
		for len(calls) > 0 {
			v := calls[len(calls)-1]
			if e := cursor[v]; e < g.off[v+1] {
				cursor[v]++
				w := g.adj[e]
				switch {
				case order[w] < 0:
					order[w], low[w], cursor[w] = visited, visited, g.off[w]
					visited++
					stack, calls = append(stack, w), append(calls, w)
				case comp[w] < 0:
					low[v] = min(low[v], order[w])
				}
				continue
			}
			calls = calls[:len(calls)-1]
			if len(calls) > 0 {
				p := calls[len(calls)-1]
				low[p] = min(low[p], low[v])
			}
			if low[v] == order[v] {
				size := 0
				for {
					w := stack[len(stack)-1]
					stack = stack[:len(stack)-1]
					comp[w] = comps
					size++
					if w == v {
						break
					}
				}
				comps++
				cyclic = cyclic || size > 1
			}
		}
	}
	if !cyclic {
		return nil
	}

	// Per component: its size and the node with the smallest name (names are unique here).
	size, smallest := scratch[n:n+comps], scratch[2*n:2*n+comps]
	for c := range comps {
		size[c], smallest[c] = 0, -1
	}
	for v := range n {
		c := comp[v]
		size[c]++
		if smallest[c] < 0 || nodes[v].Name < nodes[smallest[c]].Name {
			smallest[c] = v
		}
	}

	parent, queue := a, b[:0]
	for v := range n {
		parent[v] = -1
	}
	var errs []Error
	for v := range n {
		c := comp[v]
		if size[c] < 2 {
			continue
		}
		size[c] = 0 // reported
		errs = append(errs, Error{Message: "dependency cycle: " + shortestCycle(nodes, g, comp, smallest[c], parent, queue)})
	}
	return errs
}

// shortestCycle returns a shortest cycle through r inside r's component, formatted "r -> x -> ... -> r". parent
// must be -1 for the nodes of the component; queue is working space of n ints.
func shortestCycle(nodes []Node, g *graph, comp []int, r int, parent, queue []int) string {
	c := comp[r]
	parent[r] = r
	queue = append(queue, r)
	last := -1
	for head := 0; last < 0; head++ { // r is in a component of 2+ nodes: some path leads back to it
		v := queue[head]
		for _, w := range g.adj[g.off[v]:g.off[v+1]] {
			if w == r {
				last = v
				break
			}
			if comp[w] == c && parent[w] < 0 {
				parent[w] = v
				queue = append(queue, w)
			}
		}
	}

	// Walk back from the last node to r, then write the path forwards.
	path := queue[:0]
	for v := last; v != r; v = parent[v] {
		path = append(path, v)
	}
	var sb strings.Builder
	sb.WriteString(displayName(nodes[r].Name))
	for i := len(path) - 1; i >= 0; i-- {
		sb.WriteString(" -> ")
		sb.WriteString(displayName(nodes[path[i]].Name))
	}
	sb.WriteString(" -> ")
	sb.WriteString(displayName(nodes[r].Name))
	return sb.String()
}

// isLabel reports whether s is a lower case RFC 1123 label: ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$, at most 63
// characters.
func isLabel(s string) bool {
	if s == "" || len(s) > maxNameLength || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

// quote quotes s for a message, cutting it short when longer than a valid name could be.
func quote(s string) string {
	if len(s) > maxNameLength {
		return strconv.Quote(s[:maxNameLength]) + "..."
	}
	return strconv.Quote(s)
}

// displayName returns a valid name as is and quotes any other, so that a cycle message stays unambiguous.
func displayName(s string) string {
	if isLabel(s) {
		return s
	}
	return quote(s)
}

func nameField(i int) string { return "[" + strconv.Itoa(i) + "].name" }

func depField(i, k int) string {
	return "[" + strconv.Itoa(i) + "].dependsOn[" + strconv.Itoa(k) + "]"
}

func siftUp(h []int, i int) {
	for i > 0 {
		p := (i - 1) / 2
		if h[p] <= h[i] {
			return
		}
		h[p], h[i] = h[i], h[p]
		i = p
	}
}

func siftDown(h []int, i int) {
	for {
		l := 2*i + 1
		if l >= len(h) {
			return
		}
		m := l
		if r := l + 1; r < len(h) && h[r] < h[l] {
			m = r
		}
		if h[i] <= h[m] {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}
