// Command tasker-dev runs tasker's local stack with the demo workflows (what `make demo` runs): PostgreSQL, etcd
// and kube-apiserver, the operator and worker processes, all on loopback. It is its own binary so that taskerctl,
// which doubles as the kubectl plugin users install, does not link the local-stack machinery (envtest, the
// PostgreSQL cluster harness).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/tasker-operator/tasker-operator/internal/devstack"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := devCmd().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "tasker-dev:", err)
		os.Exit(1)
	}
}

func devCmd() *cobra.Command {
	cfg := devstack.Config{}
	var live string
	cmd := &cobra.Command{
		Use:   "tasker-dev",
		Short: "Run the local stack (PostgreSQL, kube-apiserver, operator, workers) with the demo workflows",
		Long: `dev starts, all on loopback: a PostgreSQL cluster (data under --dir, kept across runs), etcd and
kube-apiserver from the hack/ cache, the CRDs and webhooks, the operator, and a runner that keeps as many
reference-worker processes alive as each WorkerPool's Deployment asks for (it stands in for kubelet), and the web UI
(its URL is printed beside the kubeconfig). It applies
config/samples and a burst of small Tasks, shows their progress, and stops everything it started when the demo is
done (or on Ctrl-C). 'make demo' builds what is missing and runs it.`,
		SilenceUsage: true, SilenceErrors: true,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.AssetsDir == "" {
				out, err := exec.Command(filepath.Join(cfg.RepoDir, "hack", "envtest-assets.sh")).Output()
				if err != nil {
					return fmt.Errorf("control-plane binaries: run hack/envtest-assets.sh (or make demo): %w", err)
				}
				cfg.AssetsDir = strings.TrimSpace(string(out))
			}
			for _, bin := range []string{cfg.ManagerBin, cfg.WorkerBin} {
				if _, err := os.Stat(bin); err != nil {
					return fmt.Errorf("%s missing: run make demo (it builds bin/manager and bin/worker)", bin)
				}
			}
			switch live {
			case "auto":
				cfg.Live = isTerminal(os.Stdout)
			case "true", "false":
				cfg.Live = live == "true"
			default:
				return errors.New("--live takes auto, true or false")
			}
			// Stopping must not depend on stdout: with 'make demo | tee demo.log', Ctrl-C ends tee first, and the
			// first write of the stop sequence would kill this process by SIGPIPE before it stopped etcd,
			// kube-apiserver and PostgreSQL. Ignored, such a write fails (and is dropped) instead.
			signal.Ignore(syscall.SIGPIPE)
			cfg.Out = cmd.OutOrStdout()
			res, err := devstack.Run(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			fmt.Fprintf(cfg.Out, "demo finished in %s: %d Tasks succeeded; the pool went up to %d replicas and back to %d\n",
				res.Elapsed.Round(1e9), res.Succeeded, res.MaxReplicas, res.ReplicasAfter)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Dir, "dir", ".demo", "Folder of the stack's state (PostgreSQL data, logs, kubeconfig).")
	f.StringVar(&cfg.RepoDir, "repo", ".", "The repository (config/crd, config/webhook and config/samples are read from it).")
	f.StringVar(&cfg.AssetsDir, "assets", os.Getenv("KUBEBUILDER_ASSETS"), "Folder with etcd and kube-apiserver (default: hack/envtest-assets.sh's).")
	f.StringVar(&cfg.ManagerBin, "manager-bin", "bin/manager", "The operator binary.")
	f.StringVar(&cfg.WorkerBin, "worker-bin", "bin/worker", "The reference worker binary.")
	f.IntVar(&cfg.Burst, "burst", 200, "Small Tasks applied after the samples, to make the pool scale up and down.")
	f.BoolVar(&cfg.Keep, "keep", false, "Keep the stack up after the demo finished, until Ctrl-C.")
	f.StringVar(&cfg.UIAddress, "ui-address", "127.0.0.1:0", "Address of the web UI while the stack runs (port 0: a free one; the URL is printed).")
	f.StringVar(&live, "live", "auto", "Redraw the progress in place: auto (when stdout is a terminal), true or false.")
	return cmd
}

// isTerminal reports whether w is a terminal (the progress is then redrawn in place).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
