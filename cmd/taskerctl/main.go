// Command taskerctl shows and steers tasker Tasks: get, describe (the DAG as a tree), watch, cancel, retry,
// resolve, complete. Installed as kubectl-tasker it is also the kubectl plugin `kubectl tasker`.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
	"github.com/tasker-operator/tasker-operator/internal/cli"
	"github.com/tasker-operator/tasker-operator/internal/engine"
	"github.com/tasker-operator/tasker-operator/internal/store"
)

// globals are the flags of every command.
type globals struct {
	// config are kubectl's connection flags (--kubeconfig, --context, --namespace, --as, --server,
	// --request-timeout, ...), as cli-runtime defines them.
	config      *genericclioptions.ConfigFlags
	databaseURL string
	// output is describe's and history's -o (get has its own printer flags).
	output string
}

// defaultRequestTimeout is --request-timeout's default (kubectl's is none): every request of watch and wait is
// bounded, so that their own --timeout holds when the apiserver stops answering.
const defaultRequestTimeout = "30s"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, newRoot())
	stop()
	os.Exit(code)
}

// run executes the command tree and reports its error on its error output, as kubectl would: it returns the exit
// status (see exitCode).
func run(ctx context.Context, root *cobra.Command) int {
	err := root.ExecuteContext(ctx)
	if err != nil {
		fmt.Fprintln(root.ErrOrStderr(), errorMessage(err))
	}
	return exitCode(err)
}

func newRoot() *cobra.Command {
	g := &globals{config: genericclioptions.NewConfigFlags(true)}
	*g.config.Timeout = defaultRequestTimeout
	g.config.CacheDir = nil // no --cache-dir: the discovery cache is not used (the client discovers the Task's group)
	name := "taskerctl"
	if strings.HasPrefix(filepath.Base(os.Args[0]), "kubectl-") {
		name = "kubectl tasker"
	}
	root := &cobra.Command{
		Use:           name,
		Short:         "Show and steer tasker Tasks",
		SilenceUsage:  true,
		SilenceErrors: true, // run reports them
	}
	f := root.PersistentFlags()
	g.config.AddFlags(f)
	f.StringVar(&g.databaseURL, "database-url", os.Getenv("TASKER_DATABASE_URL"),
		"PostgreSQL URL of the tasker database (default $TASKER_DATABASE_URL): with it, describe shows every step with results.")

	root.AddCommand(getCmd(g), describeCmd(g), historyCmd(g), watchCmd(g), waitCmd(g), cancelCmd(g),
		actionCmd(g, taskerv1alpha1.ActionRetry), actionCmd(g, taskerv1alpha1.ActionResolve), actionCmd(g, taskerv1alpha1.ActionComplete),
		actionCmd(g, taskerv1alpha1.ActionSignal), uiCmd(g))
	// Shell completion (`taskerctl completion bash|zsh|fish|powershell`, cobra's) of Task and step names.
	for _, c := range root.Commands() {
		switch c.Name() {
		case "get":
			c.ValidArgsFunction = g.completeArgs(true, false)
		case "describe", "watch", "wait", "cancel", "signal":
			c.ValidArgsFunction = g.completeArgs(false, false)
		case "history", "retry", "resolve", "complete":
			c.ValidArgsFunction = g.completeArgs(false, true)
		}
	}
	return root
}

// client connects as the connection flags say; it returns the namespace they select (--namespace, else the
// kubeconfig context's, else "default").
func (g *globals) client() (client.Client, string, error) {
	cfg, err := g.config.ToRESTConfig()
	if err != nil {
		return nil, "", err
	}
	ns, _, err := g.config.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return nil, "", err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	return c, ns, err
}

// scheme knows the Tasks and Kubernetes' own types (built here rather than taken from internal/operator, which
// would link the controllers and the webhook into the kubectl plugin).
var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(taskerv1alpha1.AddToScheme(s))
	return s
}()

func (g *globals) getTask(ctx context.Context, c client.Client, ns, name string) (*taskerv1alpha1.Task, error) {
	var tk taskerv1alpha1.Task
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &tk); err != nil {
		return nil, err
	}
	return &tk, nil
}

// fetchTask reads one Task of the selected namespace.
func (g *globals) fetchTask(ctx context.Context, name string) (*taskerv1alpha1.Task, error) {
	c, ns, err := g.client()
	if err != nil {
		return nil, err
	}
	return g.getTask(ctx, c, ns, name)
}

// view builds the Task's view, from the database when a URL was given.
func (g *globals) view(ctx context.Context, tk *taskerv1alpha1.Task) (cli.TaskView, error) {
	v, err := g.engineView(ctx, tk)
	if err != nil {
		return v, err
	}
	// The limits of its queues, from the namespace's Queue resources; without the right to list them, none.
	if c, _, err := g.client(); err == nil {
		var queues taskerv1alpha1.QueueList
		if err := c.List(ctx, &queues, client.InNamespace(tk.Namespace)); err == nil {
			cli.AddQueueLimits(&v, tk, queues.Items)
		}
	}
	return v, nil
}

// engineView is the Task's view from the database when a URL was given, else from its status.
func (g *globals) engineView(ctx context.Context, tk *taskerv1alpha1.Task) (cli.TaskView, error) {
	if g.databaseURL == "" || tk.Status.TaskID == 0 {
		return cli.FromStatus(tk), nil
	}
	eng, closeDB, err := g.engine(ctx)
	if err != nil {
		return cli.TaskView{}, err
	}
	defer closeDB()
	st, err := eng.GetTask(ctx, tk.Status.TaskID)
	if err != nil {
		return cli.TaskView{}, err
	}
	if err := cli.CheckOwner(tk, st); err != nil {
		return cli.TaskView{}, err
	}
	return cli.FromEngine(tk, st), nil
}

// engine opens the database of --database-url (one connection) for reads; call closeDB when done.
func (g *globals) engine(ctx context.Context) (eng *engine.Engine, closeDB func(), err error) {
	return g.engineConns(ctx, 1)
}

// engineConns is engine with a pool of conns connections.
func (g *globals) engineConns(ctx context.Context, conns int32) (eng *engine.Engine, closeDB func(), err error) {
	cfg, err := g.config.ToRESTConfig()
	if err != nil {
		return nil, nil, err
	}
	pool, err := store.Open(ctx, g.databaseURL, store.Options{MaxConns: conns, ApplicationName: "taskerctl"})
	if err != nil {
		return nil, nil, err
	}
	// Queries are bounded as requests to the apiserver are (--request-timeout; 0 leaves the engine's default).
	return engine.New(pool, engine.Options{QueryTimeout: cfg.Timeout}), pool.Close, nil
}

func describeCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "describe NAME",
		Short: "Show a Task's DAG as a tree: states, attempts, durations, last errors, results",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tk, err := g.fetchTask(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			v, err := g.view(cmd.Context(), tk)
			if err != nil {
				return err
			}
			if g.output != "" {
				return cli.PrintView(cmd.OutOrStdout(), g.output, v)
			}
			return describe(cmd.OutOrStdout(), v)
		},
	}
	g.addViewOutputFlag(cmd)
	return cmd
}

// addViewOutputFlag adds describe's and history's -o: json or yaml of the view (default: the command's own
// rendering), checked before the command reads anything.
func (g *globals) addViewOutputFlag(cmd *cobra.Command) {
	cmd.PreRunE = func(*cobra.Command, []string) error { return cli.CheckViewFormat(g.output) }
	cmd.Flags().StringVarP(&g.output, "output", "o", "", "Output format. One of: ("+strings.Join(cli.ViewFormats, ", ")+
		"), of the view rather than the Task.")
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(cli.ViewFormats, cobra.ShellCompDirectiveNoFileComp))
}

func describe(w io.Writer, v cli.TaskView) error {
	if err := cli.Render(w, v, cli.RenderOptions{Width: terminalWidth(), Color: isTerminal(w)}); err != nil {
		return err
	}
	for _, line := range cli.FlowControlLines(v) {
		if _, err := fmt.Fprintln(w, line); err != nil {
			return err
		}
	}
	for _, c := range v.Conditions {
		if c.Status != "True" || c.Type == taskerv1alpha1.TaskConditionFailed {
			if _, err := fmt.Fprintf(w, "%s=%s %s: %s\n", c.Type, c.Status, c.Reason, c.Message); err != nil {
				return err
			}
		}
	}
	return nil
}

func watchCmd(g *globals) *cobra.Command {
	var interval time.Duration
	cmd := &cobra.Command{
		Use:   "watch NAME",
		Short: "Redraw a Task's tree until it finishes (exit 1 when it failed or was cancelled)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ns, err := g.client()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			tty := isTerminal(out)
			for {
				tk, err := g.getTask(cmd.Context(), c, ns, args[0])
				if err != nil {
					return err
				}
				v, err := g.view(cmd.Context(), tk)
				if err != nil {
					return err
				}
				if tty {
					fmt.Fprint(out, "\x1b[H\x1b[2J")
				}
				if err := describe(out, v); err != nil {
					return err
				}
				switch tk.Status.Phase {
				case taskerv1alpha1.TaskSucceeded:
					return nil
				case taskerv1alpha1.TaskFailed, taskerv1alpha1.TaskCancelled:
					// Non-zero, so that a script can tell (the tree above says why).
					return &exitError{code: exitOther, msg: fmt.Sprintf("task %s %s", args[0], strings.ToLower(string(tk.Status.Phase)))}
				}
				if !tty {
					fmt.Fprintln(out)
				}
				select {
				case <-cmd.Context().Done():
					return nil
				case <-time.After(interval):
				}
			}
		},
	}
	cmd.Flags().DurationVar(&interval, "interval", time.Second, "Time between redraws.")
	return cmd
}

func cancelCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "cancel NAME",
		Short: "Cancel a Task (sets spec.cancel; final)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ns, err := g.client()
			if err != nil {
				return err
			}
			tk := &taskerv1alpha1.Task{}
			tk.Namespace, tk.Name = ns, args[0]
			patch := client.RawPatch(types.MergePatchType, []byte(`{"spec":{"cancel":true}}`))
			if err := c.Patch(cmd.Context(), tk, patch); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "task %s/%s cancelled\n", ns, args[0])
			return nil
		},
	}
}

// actionCmd builds retry, resolve and complete: each adds a spec.actions entry with a fresh id.
func actionCmd(g *globals, typ taskerv1alpha1.TaskActionType) *cobra.Command {
	var id, reason, result, inputs string
	var wait bool
	verb := strings.ToLower(string(typ))
	short := map[taskerv1alpha1.TaskActionType]string{
		taskerv1alpha1.ActionRetry:    "Run a failed step again (optionally with new --inputs); the Task resumes",
		taskerv1alpha1.ActionResolve:  "Mark a step resolved by hand: its dependants proceed",
		taskerv1alpha1.ActionComplete: "Complete a step with a given --result, as its handler would",
		taskerv1alpha1.ActionSignal:   "Send a signal (with a --payload) to the steps that wait for it: they continue",
	}[typ]
	target := "STEP"
	if typ == taskerv1alpha1.ActionSignal {
		target = "SIGNAL"
	}
	cmd := &cobra.Command{
		Use:   verb + " NAME " + target,
		Short: short,
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ns, err := g.client()
			if err != nil {
				return err
			}
			action := taskerv1alpha1.TaskAction{ID: id, Type: typ, Step: args[1], Reason: reason}
			what := fmt.Sprintf("%s of step %q", verb, args[1])
			if typ == taskerv1alpha1.ActionSignal {
				action.Step, action.Signal = "", args[1]
				what = fmt.Sprintf("signal %q", args[1])
			}
			if action.ID == "" {
				action.ID = fmt.Sprintf("%s-%s", verb, strconv.FormatInt(time.Now().UnixMilli(), 36))
			}
			resultFlag := "--result"
			if typ == taskerv1alpha1.ActionSignal {
				resultFlag = "--payload"
			}
			for flag, raw := range map[string]string{resultFlag: result, "--inputs": inputs} {
				if raw == "" {
					continue
				}
				if !json.Valid([]byte(raw)) {
					return fmt.Errorf("%s is not valid JSON", flag)
				}
				if flag == resultFlag {
					action.Result = &apiextensionsv1.JSON{Raw: []byte(raw)}
				} else {
					action.Inputs = &apiextensionsv1.JSON{Raw: []byte(raw)}
				}
			}
			key := types.NamespacedName{Namespace: ns, Name: args[0]}
			if err := addAction(cmd.Context(), c, key, action); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s requested on task %s (action %s)\n", what, key, action.ID)
			if !wait {
				return nil
			}
			return waitAction(cmd.Context(), c, key, action.ID, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&id, "id", "", "Action id (default: generated). Re-using an id does nothing: each id acts once.")
	cmd.Flags().StringVar(&reason, "reason", "", "Why, recorded in the step's history.")
	cmd.Flags().BoolVar(&wait, "wait", true, "Wait until the operator has carried the action out.")
	switch typ {
	case taskerv1alpha1.ActionComplete:
		cmd.Flags().StringVar(&result, "result", "", "The step's result (JSON).")
	case taskerv1alpha1.ActionSignal:
		cmd.Flags().StringVar(&result, "payload", "", "The signal's payload (JSON): the waiting steps' result.")
	case taskerv1alpha1.ActionRetry:
		cmd.Flags().StringVar(&inputs, "inputs", "", "New inputs for the step (JSON), replacing the ones that made it fail.")
	}
	return cmd
}

// maxActions is the API's limit on spec.actions.
const maxActions = 32

func addAction(ctx context.Context, c client.Client, key types.NamespacedName, action taskerv1alpha1.TaskAction) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var tk taskerv1alpha1.Task
		if err := c.Get(ctx, key, &tk); err != nil {
			return err
		}
		if len(tk.Spec.Actions) >= maxActions {
			// Drop the oldest actions already carried out, to make room.
			done := map[string]bool{}
			for _, a := range tk.Status.Actions {
				done[a.ID] = true
			}
			kept := tk.Spec.Actions[:0]
			for i, a := range tk.Spec.Actions {
				if done[a.ID] && len(tk.Spec.Actions)-i > maxActions-1-len(kept) {
					continue
				}
				kept = append(kept, a)
			}
			tk.Spec.Actions = kept
			if len(tk.Spec.Actions) >= maxActions {
				return errors.New("the Task has 32 pending actions; wait for the operator to carry them out")
			}
		}
		tk.Spec.Actions = append(tk.Spec.Actions, action)
		return c.Update(ctx, &tk)
	})
}

func waitAction(ctx context.Context, c client.Client, key types.NamespacedName, id string, out io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		var tk taskerv1alpha1.Task
		if err := c.Get(ctx, key, &tk); err != nil {
			return err
		}
		for _, a := range tk.Status.Actions {
			if a.ID == id {
				if a.Outcome != "Done" {
					return fmt.Errorf("action %s %s: %s", id, strings.ToLower(a.Outcome), a.Message)
				}
				fmt.Fprintf(out, "done: %s\n", a.Message)
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the operator has not carried out action %s yet: %w", id, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func terminalWidth() int {
	if n, err := strconv.Atoi(os.Getenv("COLUMNS")); err == nil && n > 20 {
		return n
	}
	return 120
}
