package ui

import (
	"context"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
)

// KubeCluster is the Cluster of an apiserver: a watch (controller-runtime's informer cache) of the Tasks and
// WorkerPools of one namespace, or of all, with the credentials of its rest.Config. Pages read the watch's
// copies, so that viewing costs the apiserver nothing.
type KubeCluster struct {
	cache     cache.Cache
	namespace string
	// pools (cronTasks) is false when the credentials may not list WorkerPools (CronTasks): they are then not
	// watched.
	pools, cronTasks bool
}

// NewKubeCluster checks what the credentials may list (Tasks are required, WorkerPools and CronTasks optional) and prepares
// the watch of namespace ("" for all); Start starts it. cfg should have no Timeout: it would cut the watches.
func NewKubeCluster(ctx context.Context, cfg *rest.Config, scheme *runtime.Scheme, namespace string) (*KubeCluster, error) {
	direct, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, err
	}
	probe := &client.ListOptions{Namespace: namespace, Limit: 1}
	if err := direct.List(ctx, &taskerv1alpha1.TaskList{}, probe); err != nil {
		return nil, fmt.Errorf("cannot list Tasks: %w", err)
	}
	k := &KubeCluster{pools: true, cronTasks: true, namespace: namespace}
	if err := direct.List(ctx, &taskerv1alpha1.WorkerPoolList{}, probe); apierrors.IsForbidden(err) {
		k.pools = false
	} else if err != nil {
		return nil, fmt.Errorf("cannot list WorkerPools: %w", err)
	}
	// CronTasks: not shown when the credentials may not list them, or the cluster has no CronTask CRD (an older
	// install).
	if err := direct.List(ctx, &taskerv1alpha1.CronTaskList{}, probe); apierrors.IsForbidden(err) ||
		apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
		k.cronTasks = false
	} else if err != nil {
		return nil, fmt.Errorf("cannot list CronTasks: %w", err)
	}
	opts := cache.Options{Scheme: scheme}
	if namespace != "" {
		opts.DefaultNamespaces = map[string]cache.Config{namespace: {}}
	}
	if k.cache, err = cache.New(cfg, opts); err != nil {
		return nil, err
	}
	return k, nil
}

// Start starts the watch and returns once it holds every object; the watch stops when ctx is done. observe is
// called with every object added, changed or deleted (Server.Observe), the initial ones included; it must not
// modify them.
func (k *KubeCluster) Start(ctx context.Context, observe func(runtime.Object)) error {
	watched := []client.Object{&taskerv1alpha1.Task{}}
	if k.pools {
		watched = append(watched, &taskerv1alpha1.WorkerPool{})
	}
	if k.cronTasks {
		watched = append(watched, &taskerv1alpha1.CronTask{})
	}
	for _, obj := range watched {
		inf, err := k.cache.GetInformer(ctx, obj)
		if err != nil {
			return err
		}
		if _, err := inf.AddEventHandler(observer(observe)); err != nil {
			return err
		}
	}
	go func() { _ = k.cache.Start(ctx) }()
	if !k.cache.WaitForCacheSync(ctx) {
		return errors.New("the watch of Tasks did not start")
	}
	return nil
}

// observer passes every object an informer reports to observe.
func observer(observe func(runtime.Object)) toolscache.ResourceEventHandler {
	pass := func(obj any) {
		if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		if o, ok := obj.(runtime.Object); ok {
			observe(o)
		}
	}
	return toolscache.ResourceEventHandlerFuncs{AddFunc: pass, UpdateFunc: func(_, obj any) { pass(obj) }, DeleteFunc: pass}
}

// Tasks implements Cluster. The watch's reads never block once it has synced: they take no deadline.
func (k *KubeCluster) Tasks() ([]taskerv1alpha1.Task, error) {
	var l taskerv1alpha1.TaskList
	err := k.cache.List(context.Background(), &l)
	return l.Items, err
}

// Task implements Cluster.
func (k *KubeCluster) Task(namespace, name string) (*taskerv1alpha1.Task, error) {
	if k.namespace != "" && namespace != k.namespace {
		return nil, apierrors.NewNotFound(taskerv1alpha1.GroupVersion.WithResource("tasks").GroupResource(), name)
	}
	var tk taskerv1alpha1.Task
	if err := k.cache.Get(context.Background(), client.ObjectKey{Namespace: namespace, Name: name}, &tk); err != nil {
		return nil, err
	}
	return &tk, nil
}

// WorkerPools implements Cluster.
func (k *KubeCluster) WorkerPools() ([]taskerv1alpha1.WorkerPool, error) {
	if !k.pools {
		return nil, ErrPoolsHidden
	}
	var l taskerv1alpha1.WorkerPoolList
	err := k.cache.List(context.Background(), &l)
	return l.Items, err
}

// CronTasks implements Cluster.
func (k *KubeCluster) CronTasks() ([]taskerv1alpha1.CronTask, error) {
	if !k.cronTasks {
		return nil, ErrCronTasksHidden
	}
	var l taskerv1alpha1.CronTaskList
	err := k.cache.List(context.Background(), &l)
	return l.Items, err
}
