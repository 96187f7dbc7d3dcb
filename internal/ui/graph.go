package ui

import (
	"fmt"
	"html/template"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"
)

// graphNode is one box of a Task's graph: a step, a map step (forEach) standing for its instances, or a child
// workflow step standing for its child's steps — Count > 1 draws the box stacked, with "Done/Count" (the panel has
// the counts by state).
type graphNode struct {
	Name      string
	Handler   string
	State     string // a step state; "" when not known (the status lists only the first 50 steps)
	Attempts  int
	Count     int    // instances or child steps the box stands for; 0 or 1 for a step
	Done      int    // of those, how many have finished
	Child     string // the TaskTemplate a child workflow step runs ("" for other steps)
	DependsOn []string
}

// maxLabel is the number of characters of a step name that fit a box; longer names are cut (the tooltip and
// the panel have them whole).
const maxLabel = 24

// renderGraph draws the nodes as an inline SVG (layoutDAG's layered drawing): boxes coloured by state (CSS
// classes s-<state>), each a link to its step panel (?step=NAME), edges from a dependency to its dependants.
// selected marks one box.
func renderGraph(nodes []graphNode, selected string) template.HTML {
	index := make(map[string]int, len(nodes))
	for i, n := range nodes {
		index[n.Name] = i
	}
	deps := make([][]int, len(nodes))
	for i, n := range nodes {
		for _, d := range n.DependsOn {
			if j, ok := index[d]; ok {
				deps[i] = append(deps[i], j)
			}
		}
	}
	l := layoutDAG(deps)
	var b strings.Builder
	b.Grow(len(nodes)*420 + len(l.Edges)*120)
	fmt.Fprintf(&b, `<svg id="dag" class="dag" xmlns="http://www.w3.org/2000/svg" width="%s" height="%s" viewBox="0 0 %s %s" role="img" aria-label="step graph">`,
		num(l.Width), num(l.Height), num(l.Width), num(l.Height))
	b.WriteString(`<defs><marker id="arrow" viewBox="0 0 8 8" refX="8" refY="4" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0L8,4L0,8z"/></marker></defs><g class="edges">`)
	for _, e := range l.Edges {
		fmt.Fprintf(&b, `<path class="edge" data-from="%s" data-to="%s" d="%s" marker-end="url(#arrow)"/>`,
			esc(nodes[e.From].Name), esc(nodes[e.To].Name), edgePath(e.Points))
	}
	b.WriteString(`</g><g class="nodes">`)
	for i, n := range nodes {
		p := l.Nodes[i]
		state := n.State
		if state == "" {
			state = "unknown"
		}
		class := "node s-" + state
		if n.Count > 1 {
			class += " group"
		}
		if n.Child != "" {
			class += " child"
		}
		if n.Name == selected {
			class += " sel"
		}
		fmt.Fprintf(&b, `<a class="%s" href="?step=%s" data-step="%s" data-state="%s" transform="translate(%s %s)"><title>%s: %s</title>`,
			class, url.QueryEscape(n.Name), esc(n.Name), esc(state), num(p.X), num(p.Y), esc(n.Name), esc(state))
		if n.Count > 1 {
			fmt.Fprintf(&b, `<rect class="stack" x="4" y="-4" width="%d" height="%d" rx="6"/>`, nodeWidth, nodeHeight)
		}
		fmt.Fprintf(&b, `<rect width="%d" height="%d" rx="6"/><text class="name" x="10" y="17">%s</text><text class="sub" x="10" y="33">%s</text></a>`,
			nodeWidth, nodeHeight, esc(cut(n.Name, maxLabel)), esc(cut(nodeSub(n, state), maxLabel+8)))
	}
	b.WriteString(`</g></svg>`)
	return template.HTML(b.String()) //nolint:gosec // every interpolated text is escaped above
}

// nodeSub is a box's second line: state, handler, attempts after the first, instances.
func nodeSub(n graphNode, state string) string {
	parts := []string{state}
	if n.Count > 1 {
		parts = append(parts, strconv.Itoa(n.Done)+"/"+strconv.Itoa(n.Count))
	}
	if n.Handler != "" {
		parts = append(parts, n.Handler)
	}
	if n.Child != "" {
		parts = append(parts, "⤷ "+n.Child)
	}
	if n.Attempts > 1 {
		parts = append(parts, strconv.Itoa(n.Attempts)+" attempts")
	}
	return strings.Join(parts, " · ")
}

// edgePath draws a route: straight across the slots of the layers it crosses, and curves (horizontal at both
// ends) between layers.
func edgePath(pts []Point) string {
	var b strings.Builder
	fmt.Fprintf(&b, "M%s %s", num(pts[0].X), num(pts[0].Y))
	for i := 1; i < len(pts); i++ {
		p, q := pts[i-1], pts[i]
		if i%2 == 0 { // across a layer's slot
			fmt.Fprintf(&b, "H%s", num(q.X))
			continue
		}
		mid := (p.X + q.X) / 2
		fmt.Fprintf(&b, "C%s %s %s %s %s %s", num(mid), num(p.Y), num(mid), num(q.Y), num(q.X), num(q.Y))
	}
	return b.String()
}

func num(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

func esc(s string) string { return template.HTMLEscapeString(s) }

// cut shortens s to n characters, the last one an ellipsis.
func cut(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}
