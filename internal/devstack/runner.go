package devstack

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Runner stands in for the kubelet and the ReplicaSet controller of a real cluster: for every WorkerPool
// Deployment it keeps as many reference-worker processes running as spec.replicas asks, each mirrored by a Pod
// object (so the operator's drain-aware scale-in sees and annotates them), and on scale-in it stops the Pods with
// the lowest controller.kubernetes.io/pod-deletion-cost first, with SIGTERM (the worker drains) like a kubelet.
type Runner struct {
	Client      client.Client
	WorkerBin   string
	DatabaseURL string
	LogDir      string
	// Extra arguments for every worker.
	WorkerArgs []string

	mu    sync.Mutex
	procs map[string]*workerProc // by Pod name
	// MaxSeen records the highest replica count each Deployment reached (for the demo's summary and e2e).
	MaxSeen map[string]int32
}

type workerProc struct {
	deployment string
	namespace  string
	cmd        *exec.Cmd
	done       chan struct{}
	stopping   bool
}

const deletionCostAnnotation = "controller.kubernetes.io/pod-deletion-cost"

// Run reconciles processes with Deployments every interval until ctx ends, then stops every worker.
func (r *Runner) Run(ctx context.Context, interval time.Duration) {
	r.mu.Lock()
	if r.procs == nil {
		r.procs = map[string]*workerProc{}
	}
	if r.MaxSeen == nil {
		r.MaxSeen = map[string]int32{}
	}
	r.mu.Unlock()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		r.sync(ctx)
		select {
		case <-ctx.Done():
			r.stopAll()
			return
		case <-t.C:
		}
	}
}

// Running returns the number of live worker processes.
func (r *Runner) Running() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, p := range r.procs {
		if !p.stopping {
			n++
		}
	}
	return n
}

// Max returns the highest replica count a Deployment reached.
func (r *Runner) Max(namespace, name string) int32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.MaxSeen[namespace+"/"+name]
}

func (r *Runner) sync(ctx context.Context) {
	var deps appsv1.DeploymentList
	if err := r.Client.List(ctx, &deps, client.HasLabels{"tasker.dev/workerpool"}); err != nil {
		return
	}
	live := map[string]bool{}
	for i := range deps.Items {
		d := &deps.Items[i]
		key := d.Namespace + "/" + d.Name
		live[key] = true
		want := int32(1)
		if d.Spec.Replicas != nil {
			want = *d.Spec.Replicas
		}
		r.mu.Lock()
		if want > r.MaxSeen[key] {
			r.MaxSeen[key] = want
		}
		r.mu.Unlock()
		r.scale(ctx, d, int(want))
	}
	// Deployments that went away take their workers with them.
	r.mu.Lock()
	var orphans []string
	for name, p := range r.procs {
		if !live[p.namespace+"/"+p.deployment] && !p.stopping {
			orphans = append(orphans, name)
		}
	}
	r.mu.Unlock()
	for _, name := range orphans {
		r.stop(ctx, name)
	}
}

func (r *Runner) scale(ctx context.Context, d *appsv1.Deployment, want int) {
	r.mu.Lock()
	var mine []string
	for name, p := range r.procs {
		if p.deployment == d.Name && p.namespace == d.Namespace && !p.stopping {
			mine = append(mine, name)
		}
	}
	r.mu.Unlock()
	for len(mine) < want {
		name, err := r.start(ctx, d)
		if err != nil {
			fmt.Fprintf(os.Stderr, "runner: start worker for %s/%s: %v\n", d.Namespace, d.Name, err)
			break
		}
		mine = append(mine, name)
	}
	if len(mine) > want {
		// Like the ReplicaSet controller: lowest deletion cost goes first.
		costs := map[string]int{}
		for _, name := range mine {
			var pod corev1.Pod
			if err := r.Client.Get(ctx, client.ObjectKey{Namespace: d.Namespace, Name: name}, &pod); err == nil {
				costs[name], _ = strconv.Atoi(pod.Annotations[deletionCostAnnotation])
			}
		}
		sort.Slice(mine, func(i, j int) bool { return costs[mine[i]] < costs[mine[j]] })
		for _, name := range mine[:len(mine)-want] {
			r.stop(ctx, name)
		}
		mine = mine[len(mine)-want:]
	}
	// Report readiness the way the deployment controller would.
	ready := int32(len(mine))
	if d.Status.Replicas != ready || d.Status.ReadyReplicas != ready || d.Status.ObservedGeneration != d.Generation {
		patch := client.MergeFrom(d.DeepCopy())
		d.Status.Replicas, d.Status.ReadyReplicas, d.Status.AvailableReplicas, d.Status.UpdatedReplicas = ready, ready, ready, ready
		d.Status.ObservedGeneration = d.Generation
		_ = r.Client.Status().Patch(ctx, d, patch)
	}
}

func (r *Runner) start(ctx context.Context, d *appsv1.Deployment) (string, error) {
	name := d.Name + "-" + rand.String(5)
	env := containerEnv(d, name)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: d.Namespace, Labels: d.Spec.Template.Labels,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: d.Name, UID: d.UID}}},
		Spec: *d.Spec.Template.Spec.DeepCopy(),
	}
	if err := r.Client.Create(ctx, pod); err != nil {
		return "", err
	}
	pod.Status.Phase = corev1.PodRunning
	pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now()}}
	_ = r.Client.Status().Update(ctx, pod)

	logFile, err := os.OpenFile(filepath.Join(r.LogDir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return "", err
	}
	args := append([]string{
		"--database-url=" + r.DatabaseURL,
		"--queues=" + env["TASKER_QUEUES"],
		"--slots=" + env["TASKER_SLOTS"],
		"--id=" + env["TASKER_WORKER_ID"],
		"--metrics-bind-address=0",
		"--log-format=text",
	}, r.WorkerArgs...)
	cmd := exec.Command(r.WorkerBin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the stack
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return "", err
	}
	p := &workerProc{deployment: d.Name, namespace: d.Namespace, cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		_ = logFile.Close()
		close(p.done)
		r.mu.Lock()
		delete(r.procs, name)
		r.mu.Unlock()
		_ = r.Client.Delete(context.Background(), &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: d.Namespace}})
	}()
	r.mu.Lock()
	r.procs[name] = p
	r.mu.Unlock()
	return name, nil
}

// containerEnv resolves the first container's environment as the kubelet would for a Pod named pod: plain values,
// the Pod's name and namespace from field references, and $(NAME) references to variables listed earlier.
func containerEnv(d *appsv1.Deployment, pod string) map[string]string {
	env := map[string]string{}
	if len(d.Spec.Template.Spec.Containers) == 0 {
		return env
	}
	fields := map[string]string{"metadata.name": pod, "metadata.namespace": d.Namespace}
	for _, e := range d.Spec.Template.Spec.Containers[0].Env {
		switch {
		case e.ValueFrom == nil:
			v := e.Value
			for k, val := range env {
				v = strings.ReplaceAll(v, "$("+k+")", val)
			}
			env[e.Name] = v
		case e.ValueFrom.FieldRef != nil:
			if v, ok := fields[e.ValueFrom.FieldRef.FieldPath]; ok {
				env[e.Name] = v
			}
		}
	}
	return env
}

// stop sends SIGTERM (the worker drains) and lets the process exit on its own; the Pod goes when it does.
func (r *Runner) stop(_ context.Context, name string) {
	r.mu.Lock()
	p := r.procs[name]
	if p == nil || p.stopping {
		r.mu.Unlock()
		return
	}
	p.stopping = true
	r.mu.Unlock()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
}

// stopAll stops every worker and waits for them (up to a grace period, then kills).
func (r *Runner) stopAll() {
	r.mu.Lock()
	procs := make([]*workerProc, 0, len(r.procs))
	for _, p := range r.procs {
		procs = append(procs, p)
	}
	r.mu.Unlock()
	for _, p := range procs {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, p := range procs {
		select {
		case <-p.done:
		case <-time.After(time.Until(deadline)):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
}
