package ui

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// orderFulfilment is the demo's graph: validate -> (charge, reserve) -> ship.
var orderFulfilment = [][]int{{}, {0}, {0}, {1, 2}}

func TestLayoutLayersByLongestPath(t *testing.T) {
	l := layoutDAG(orderFulfilment)
	if got, want := l.Layers, []int{0, 1, 1, 2}; !slices.Equal(got, want) {
		t.Fatalf("layers %v, want %v", got, want)
	}
	if l.Crossings != 0 {
		t.Errorf("%d crossings, want 0", l.Crossings)
	}
	if len(l.Edges) != 4 {
		t.Fatalf("%d edges, want 4", len(l.Edges))
	}
	for _, e := range l.Edges {
		from, to := l.Nodes[e.From], l.Nodes[e.To]
		first, last := e.Points[0], e.Points[len(e.Points)-1]
		if first.X != from.X+nodeWidth || first.Y != from.Y+nodeHeight/2 || last.X != to.X || last.Y != to.Y+nodeHeight/2 {
			t.Errorf("edge %d->%d runs %v..%v, not from the right side of %v to the left side of %v", e.From, e.To,
				first, last, from, to)
		}
	}
	// The two middle nodes share a column and do not overlap; the first and last are centred on them.
	a, b := l.Nodes[1], l.Nodes[2]
	if a.X != b.X || abs(a.Y-b.Y) < nodeHeight {
		t.Errorf("middle nodes at %v and %v", a, b)
	}
	if mid := (a.Y + b.Y) / 2; l.Nodes[0].Y != mid || l.Nodes[3].Y != mid {
		t.Errorf("first and last at y %v and %v, want %v", l.Nodes[0].Y, l.Nodes[3].Y, mid)
	}
	if l.Width != l.Nodes[3].X+nodeWidth+margin || l.Height != b.Y+nodeHeight+margin {
		t.Errorf("size %vx%v", l.Width, l.Height)
	}
}

func TestLayoutRoutesLongEdgesThroughEachLayer(t *testing.T) {
	// a -> b -> c and a -> c: the edge a -> c crosses layer 1 in a slot of its own, beside b.
	l := layoutDAG([][]int{{}, {0}, {1, 0}})
	var long *Route
	for i := range l.Edges {
		if l.Edges[i].From == 0 && l.Edges[i].To == 2 {
			long = &l.Edges[i]
		}
	}
	if long == nil || len(long.Points) != 4 {
		t.Fatalf("edge a->c: %+v, want 4 points (out of a, across layer 1, into c)", long)
	}
	across := long.Points[1:3]
	if across[0].X != l.Nodes[1].X || across[1].X != l.Nodes[1].X+nodeWidth || across[0].Y != across[1].Y {
		t.Errorf("a->c crosses layer 1 at %v, b is at %v", across, l.Nodes[1])
	}
	if y := across[0].Y; y > l.Nodes[1].Y-rowGap && y < l.Nodes[1].Y+nodeHeight+rowGap {
		t.Errorf("a->c crosses layer 1 at y %v, through b (%v)", y, l.Nodes[1])
	}
}

func TestLayoutRemovesAnAvoidableCrossing(t *testing.T) {
	// Listed so that the edges cross: c depends on b, d on a.
	l := layoutDAG([][]int{{}, {}, {1}, {0}})
	if l.Crossings != 0 {
		t.Fatalf("%d crossings, want 0", l.Crossings)
	}
	if (l.Nodes[0].Y < l.Nodes[1].Y) != (l.Nodes[3].Y < l.Nodes[2].Y) {
		t.Errorf("d is not on a's side: %v", l.Nodes)
	}
}

func TestLayoutSurvivesBadInput(t *testing.T) {
	// A cycle, a self-dependency, a repeat and an index out of range: every node is still drawn once.
	l := layoutDAG([][]int{{2}, {0, 0, 1}, {1, 7, -1}})
	if len(l.Nodes) != 3 || len(l.Layers) != 3 {
		t.Fatalf("%d nodes", len(l.Nodes))
	}
	if len(l.Edges) != 2 {
		t.Errorf("%d edges kept, want 2 (the cycle's closing edge dropped): %+v", len(l.Edges), l.Edges)
	}
}

func TestLayoutNeverOverlapsBoxes(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	deps := make([][]int, 300)
	for v := range deps {
		for range r.IntN(4) {
			if v > 0 {
				deps[v] = append(deps[v], r.IntN(v))
			}
		}
	}
	l := layoutDAG(deps)
	for v := range deps {
		for _, d := range deps[v] {
			if l.Layers[v] <= l.Layers[d] {
				t.Fatalf("node %d (layer %d) is not right of its dependency %d (layer %d)", v, l.Layers[v], d, l.Layers[d])
			}
		}
		for w := range v {
			p, q := l.Nodes[v], l.Nodes[w]
			if p.X == q.X && abs(p.Y-q.Y) < nodeHeight+rowGap {
				t.Fatalf("nodes %d and %d overlap: %v %v", v, w, p, q)
			}
		}
	}
}

func TestInversionsCountsCrossingPairs(t *testing.T) {
	// Sorted by start: ends 2, 0, 1 give the crossing pairs (2,0) and (2,1).
	if n := inversions([][2]int{{0, 2}, {1, 0}, {2, 1}}); n != 2 {
		t.Errorf("inversions = %d, want 2", n)
	}
	if n := inversions([][2]int{{0, 0}, {0, 1}, {1, 1}}); n != 0 {
		t.Errorf("edges sharing an end or a start: %d inversions, want 0", n)
	}
}

func BenchmarkLayout1000(b *testing.B) {
	deps := wideGraph(1000, 25)
	for b.Loop() {
		layoutDAG(deps)
	}
}

// wideGraph is n nodes in layers of width w, each depending on two nodes of the layer before.
func wideGraph(n, w int) [][]int {
	deps := make([][]int, n)
	for v := w; v < n; v++ {
		base := (v/w - 1) * w
		deps[v] = []int{base + v%w, base + (v*7+3)%w}
	}
	return deps
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}
