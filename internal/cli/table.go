package cli

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"k8s.io/apimachinery/pkg/util/duration"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
)

// Table prints Tasks the way `kubectl get tasks` does (NAME, PHASE, STEPS, AGE), with NAMESPACE first when
// withNamespace.
func Table(w io.Writer, items []taskerv1alpha1.Task, withNamespace bool, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	if withNamespace {
		fmt.Fprint(tw, "NAMESPACE\t")
	}
	fmt.Fprintln(tw, "NAME\tPHASE\tSTEPS\tAGE")
	for i := range items {
		tk := &items[i]
		if withNamespace {
			fmt.Fprintf(tw, "%s\t", tk.Namespace)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", tk.Name, tk.Status.Phase, tk.Status.Progress,
			duration.HumanDuration(now.Sub(tk.CreationTimestamp.Time)))
	}
	return tw.Flush()
}
