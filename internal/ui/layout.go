package ui

import (
	"slices"
	"sort"
)

// Geometry of the drawn graph, in SVG user units (CSS pixels): layers run left to right.
const (
	nodeWidth   = 190 // a node's box
	nodeHeight  = 42
	dummyHeight = 10 // the slot a long edge takes in a layer it crosses
	layerGap    = 60 // horizontal room between two layers, for the edges
	rowGap      = 14 // vertical room between two boxes of a layer
	margin      = 10 // around the drawing
	// sweeps is how many barycenter passes (alternately down and up) the crossing reduction makes.
	sweeps = 8
)

// Point is a position in the drawing.
type Point struct{ X, Y float64 }

// Layout is where the nodes and edges of a graph are drawn: a layered (Sugiyama-style) drawing. Every node is
// in the layer of its longest path from a root, an edge spanning several layers passes through a slot in each
// layer between, and the order of each layer comes from barycenter sweeps, keeping the order with the fewest
// crossings seen.
type Layout struct {
	Width, Height float64
	// Nodes are the boxes' top-left corners, in the order of the input.
	Nodes []Point
	// Layers are the nodes' layers (0: no dependency).
	Layers []int
	// Edges are one per kept dependency, in the order of the input (dependant by dependant).
	Edges []Route
	// Crossings is the number of edge crossings between adjacent layers in the drawn order.
	Crossings int
}

// Route is one edge: from the dependency's right side to the dependant's left side, through the slots of the
// layers it crosses.
type Route struct {
	From, To int
	Points   []Point
}

// layoutDAG lays out n nodes where deps[i] lists the indexes of node i's dependencies. Indexes out of range,
// self-dependencies and repeats are ignored; so are the edges that close a cycle (an admitted Task has none).
// It is linear in the size of the graph apart from the sweeps' sorting and crossing counts.
func layoutDAG(deps [][]int) Layout {
	n := len(deps)
	kept := keptEdges(deps)
	layer := make([]int, n)
	for _, v := range topoOrder(kept) {
		for _, d := range kept[v] {
			layer[v] = max(layer[v], layer[d]+1)
		}
	}
	g := newLayered(n, layer)
	var chains [][]int // per edge: the vertices it passes, dependency first
	var ends [][2]int
	for v := range n {
		for _, d := range kept[v] {
			chain := []int{d}
			for l := layer[d] + 1; l < layer[v]; l++ {
				chain = append(chain, g.addDummy(l))
			}
			chain = append(chain, v)
			for i := 1; i < len(chain); i++ {
				g.link(chain[i-1], chain[i])
			}
			chains = append(chains, chain)
			ends = append(ends, [2]int{d, v})
		}
	}
	crossings := g.reduceCrossings()
	pos := g.coordinates()
	out := Layout{Nodes: pos[:n], Layers: layer, Crossings: crossings}
	for _, p := range pos {
		out.Width = max(out.Width, p.X+nodeWidth+margin)
		out.Height = max(out.Height, p.Y+nodeHeight+margin)
	}
	for i, chain := range chains {
		r := Route{From: ends[i][0], To: ends[i][1]}
		first, last := pos[chain[0]], pos[chain[len(chain)-1]]
		r.Points = append(r.Points, Point{first.X + nodeWidth, first.Y + nodeHeight/2})
		for _, d := range chain[1 : len(chain)-1] {
			y := pos[d].Y + dummyHeight/2
			r.Points = append(r.Points, Point{pos[d].X, y}, Point{pos[d].X + nodeWidth, y})
		}
		r.Points = append(r.Points, Point{last.X, last.Y + nodeHeight/2})
		out.Edges = append(out.Edges, r)
	}
	return out
}

// keptEdges returns each node's dependencies without the invalid ones and without those that close a cycle
// (an edge to a node that comes later in the input and reaches back), so that the rest is acyclic.
func keptEdges(deps [][]int) [][]int {
	n := len(deps)
	kept := make([][]int, n)
	for v, ds := range deps {
		for _, d := range ds {
			if d >= 0 && d < n && d != v && !slices.Contains(kept[v], d) {
				kept[v] = append(kept[v], d)
			}
		}
	}
	// Kahn's algorithm; whatever it cannot order is on or behind a cycle: drop those nodes' edges to nodes that
	// are not ordered before them in the input, and order again (always terminates: input order is acyclic).
	if len(topoOrder(kept)) == n {
		return kept
	}
	ordered := make([]bool, n)
	for _, v := range topoOrder(kept) {
		ordered[v] = true
	}
	for v := range n {
		if !ordered[v] {
			kept[v] = slices.DeleteFunc(kept[v], func(d int) bool { return !ordered[d] && d > v })
		}
	}
	if len(topoOrder(kept)) != n {
		for v := range n {
			kept[v] = slices.DeleteFunc(kept[v], func(d int) bool { return d > v })
		}
	}
	return kept
}

// topoOrder is Kahn's algorithm taking the lowest ready index first; nodes on a cycle are left out.
func topoOrder(deps [][]int) []int {
	n := len(deps)
	indegree := make([]int, n)
	children := make([][]int, n)
	for v, ds := range deps {
		indegree[v] = len(ds)
		for _, d := range ds {
			children[d] = append(children[d], v)
		}
	}
	var ready, order []int
	for v := range n {
		if indegree[v] == 0 {
			ready = append(ready, v)
		}
	}
	for len(ready) > 0 {
		v := ready[0]
		ready = ready[1:]
		order = append(order, v)
		for _, c := range children[v] {
			if indegree[c]--; indegree[c] == 0 {
				ready = append(ready, c)
			}
		}
	}
	return order
}

// layered is the graph with dummy vertices, each vertex in a layer and only edges between adjacent layers.
type layered struct {
	layerOf      []int
	real         []bool
	preds, succs [][]int
	layers       [][]int // vertex ids in drawing order
	pos          []int   // index of each vertex in its layer
}

func newLayered(n int, layer []int) *layered {
	g := &layered{}
	for v := range n {
		g.add(layer[v], true)
	}
	return g
}

func (g *layered) add(l int, real bool) int {
	v := len(g.layerOf)
	g.layerOf = append(g.layerOf, l)
	g.real = append(g.real, real)
	g.preds, g.succs = append(g.preds, nil), append(g.succs, nil)
	for len(g.layers) <= l {
		g.layers = append(g.layers, nil)
	}
	g.pos = append(g.pos, len(g.layers[l]))
	g.layers[l] = append(g.layers[l], v)
	return v
}

func (g *layered) addDummy(l int) int { return g.add(l, false) }

func (g *layered) link(u, v int) {
	g.succs[u] = append(g.succs[u], v)
	g.preds[v] = append(g.preds[v], u)
}

// reduceCrossings reorders the layers by barycenter sweeps and keeps the best order seen; it returns its
// number of crossings.
func (g *layered) reduceCrossings() int {
	best := g.crossings()
	bestLayers := g.snapshot()
	for s := 0; s < sweeps && best > 0; s++ {
		if s%2 == 0 {
			for l := 1; l < len(g.layers); l++ {
				g.sortLayer(l, g.preds)
			}
		} else {
			for l := len(g.layers) - 2; l >= 0; l-- {
				g.sortLayer(l, g.succs)
			}
		}
		if c := g.crossings(); c < best {
			best, bestLayers = c, g.snapshot()
		}
	}
	g.layers = bestLayers
	for _, layer := range g.layers {
		for i, v := range layer {
			g.pos[v] = i
		}
	}
	return best
}

func (g *layered) snapshot() [][]int {
	out := make([][]int, len(g.layers))
	for l, layer := range g.layers {
		out[l] = slices.Clone(layer)
	}
	return out
}

// sortLayer orders layer l by the mean position of each vertex's neighbours (in the adjacent layer); a vertex
// without neighbours there keeps its position.
func (g *layered) sortLayer(l int, neighbours [][]int) {
	layer := g.layers[l]
	key := make(map[int]float64, len(layer))
	for i, v := range layer {
		key[v] = float64(i)
		if ns := neighbours[v]; len(ns) > 0 {
			sum := 0
			for _, u := range ns {
				sum += g.pos[u]
			}
			key[v] = float64(sum) / float64(len(ns))
		}
	}
	sort.SliceStable(layer, func(i, j int) bool { return key[layer[i]] < key[layer[j]] })
	for i, v := range layer {
		g.pos[v] = i
	}
}

// crossings counts the pairs of edges that cross between adjacent layers.
func (g *layered) crossings() int {
	total := 0
	for l := 0; l+1 < len(g.layers); l++ {
		var edges [][2]int
		for _, u := range g.layers[l] {
			for _, v := range g.succs[u] {
				edges = append(edges, [2]int{g.pos[u], g.pos[v]})
			}
		}
		slices.SortFunc(edges, func(a, b [2]int) int {
			if a[0] != b[0] {
				return a[0] - b[0]
			}
			return a[1] - b[1]
		})
		total += inversions(edges)
	}
	return total
}

// inversions counts the pairs i < j with edges[i] ending strictly after edges[j] (edges sorted by start), with a
// Fenwick tree over the end positions.
func inversions(edges [][2]int) int {
	size := 0
	for _, e := range edges {
		size = max(size, e[1]+1)
	}
	tree := make([]int, size+1)
	count, seen := 0, 0
	for _, e := range edges {
		notAfter := 0 // edges seen so far ending at or before e's end
		for i := e[1] + 1; i > 0; i -= i & -i {
			notAfter += tree[i]
		}
		count += seen - notAfter
		for i := e[1] + 1; i <= size; i += i & -i {
			tree[i]++
		}
		seen++
	}
	return count
}

// coordinates places each vertex: x by layer, y stacking the layer's slots, each layer centred on the tallest.
func (g *layered) coordinates() []Point {
	pos := make([]Point, len(g.layerOf))
	heights := make([]float64, len(g.layers))
	tallest := 0.0
	for l, layer := range g.layers {
		for i, v := range layer {
			if i > 0 {
				heights[l] += rowGap
			}
			heights[l] += g.slot(v)
		}
		tallest = max(tallest, heights[l])
	}
	for l, layer := range g.layers {
		y := margin + (tallest-heights[l])/2
		for _, v := range layer {
			pos[v] = Point{X: margin + float64(l)*(nodeWidth+layerGap), Y: y}
			y += g.slot(v) + rowGap
		}
	}
	return pos
}

func (g *layered) slot(v int) float64 {
	if g.real[v] {
		return nodeHeight
	}
	return dummyHeight
}
