package dag_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/tasker-operator/tasker-operator/internal/dag"
)

// wide returns one root, n-2 steps depending on it and one step depending on all of them.
func wide(n int) []dag.Node {
	nodes := make([]dag.Node, n)
	nodes[0].Name = "root"
	sink := make([]string, 0, n-2)
	for i := 1; i < n-1; i++ {
		nodes[i] = dag.Node{Name: fmt.Sprintf("step-%04d", i), DependsOn: []string{"root"}}
		sink = append(sink, nodes[i].Name)
	}
	nodes[n-1] = dag.Node{Name: "sink", DependsOn: sink}
	return nodes
}

// random returns n steps, each depending on up to 3 distinct earlier steps (fixed seed).
func random(n int) []dag.Node {
	r := rand.New(rand.NewPCG(1, 2))
	nodes := make([]dag.Node, n)
	for i := range nodes {
		nodes[i].Name = fmt.Sprintf("step-%04d", i)
		for _, j := range r.Perm(i)[:min(i, r.IntN(4))] {
			nodes[i].DependsOn = append(nodes[i].DependsOn, nodes[j].Name)
		}
	}
	return nodes
}

func benchmarkValidate(b *testing.B, nodes []dag.Node) {
	if errs := dag.Validate(nodes); errs != nil {
		b.Fatal(errs)
	}
	b.ReportAllocs()
	for b.Loop() {
		dag.Validate(nodes)
	}
}

func BenchmarkValidate1000Chain(b *testing.B)  { benchmarkValidate(b, chain(1000)) }
func BenchmarkValidate1000Wide(b *testing.B)   { benchmarkValidate(b, wide(1000)) }
func BenchmarkValidate1000Random(b *testing.B) { benchmarkValidate(b, random(1000)) }

func BenchmarkTopologicalOrder1000Random(b *testing.B) {
	nodes := random(1000)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := dag.TopologicalOrder(nodes); err != nil {
			b.Fatal(err)
		}
	}
}
