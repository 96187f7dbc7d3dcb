package controllers

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"maps"
	"slices"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	taskerv1alpha1 "github.com/tasker-operator/tasker-operator/api/v1alpha1"
)

// Labels, annotations and environment variables of a WorkerPool's Deployment and Pods.
const (
	// LabelWorkerPool carries the pool's name on its Deployment and Pods; the Deployment selects its Pods by it.
	LabelWorkerPool = "tasker.dev/workerpool"
	// AnnotationTemplateHash on the Deployment is a hash of everything the operator sets except replicas: the
	// Deployment is rewritten only when it changes (or replicas do).
	AnnotationTemplateHash = "tasker.dev/template-hash"
	// AnnotationDatabase on the worker Pods names the database they drain.
	AnnotationDatabase = "tasker.dev/database"
	// AnnotationDatabaseSecretHash on the worker Pods is a hash of the database Secret copied for them (roleMode
	// Shared), so that a rotated connection rolls them.
	AnnotationDatabaseSecretHash = "tasker.dev/database-secret-hash"
	// AnnotationPodDeletionCost is Kubernetes' hint to the ReplicaSet controller: on scale-down, Pods with a lower
	// cost are deleted first (beta since 1.22, on by default).
	AnnotationPodDeletionCost = "controller.kubernetes.io/pod-deletion-cost"

	EnvQueues       = "TASKER_QUEUES"
	EnvSlots        = "TASKER_SLOTS"
	EnvDatabaseURL  = "TASKER_DATABASE_URL"
	EnvWorkerID     = "TASKER_WORKER_ID"
	EnvPodNamespace = "POD_NAMESPACE"
	EnvPodName      = "TASKER_POD_NAME"
	// EnvDrainTimeout tells the worker how long it may drain on SIGTERM: the Pod's grace period less a margin,
	// so in-flight steps are finished or released before the kubelet's SIGKILL.
	EnvDrainTimeout = "TASKER_DRAIN_TIMEOUT"

	labelManagedBy = "app.kubernetes.io/managed-by"
	managerName    = "tasker-operator"

	defaultSlots                  = 4
	defaultDatabaseKey            = "url"
	defaultTerminationGracePeriod = 60
)

// injectedEnv is the worker configuration every container gets: queues are the database queues (see
// databaseQueues). TASKER_WORKER_ID is "<namespace>/<Pod name>" (WorkerID): the worker SDK records itself in
// tasker.workers under it, which is how the operator maps worker records to Pods, and ids of two namespaces'
// Pods never collide.
func injectedEnv(pool *taskerv1alpha1.WorkerPool, secret taskerv1alpha1.DatabaseSecretRef, queues []string) []corev1.EnvVar {
	slots := pool.Spec.Slots
	if slots <= 0 {
		slots = defaultSlots
	}
	key := secret.Key
	if key == "" {
		key = defaultDatabaseKey
	}
	grace := pool.Spec.TerminationGracePeriodSeconds
	if grace <= 0 {
		grace = defaultTerminationGracePeriod
	}
	fieldRef := func(path string) *corev1.EnvVarSource {
		return &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: path}}
	}
	return []corev1.EnvVar{
		{Name: EnvQueues, Value: strings.Join(queues, ",")},
		{Name: EnvSlots, Value: strconv.Itoa(int(slots))},
		{Name: EnvDatabaseURL, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: secret.SecretName},
			Key:                  key,
		}}},
		{Name: EnvPodNamespace, ValueFrom: fieldRef("metadata.namespace")},
		{Name: EnvPodName, ValueFrom: fieldRef("metadata.name")},
		// Dependent variables refer to variables listed before them.
		{Name: EnvWorkerID, Value: WorkerID("$("+EnvPodNamespace+")", "$("+EnvPodName+")")},
		{Name: EnvDrainTimeout, Value: strconv.FormatInt(drainSeconds(grace), 10) + "s"},
	}
}

// WorkerID is the worker id of the workers of a pool's Pod: "<namespace>/<Pod name>".
func WorkerID(namespace, pod string) string { return namespace + "/" + pod }

// drainSeconds leaves the worker a margin inside the grace period to release what it could not finish: 5 s, or a
// fifth of short grace periods.
func drainSeconds(grace int64) int64 {
	margin := min(int64(5), max(grace/5, 1))
	return max(grace-margin, 1)
}

// withEnv puts the injected variables first (so the template's own variables may refer to them as $(NAME)) and
// drops any the template set under the same names: the pool's spec is the one source of the worker's
// configuration.
func withEnv(own []corev1.EnvVar, injected []corev1.EnvVar) []corev1.EnvVar {
	out := slices.Clone(injected)
	for _, e := range own {
		if !slices.ContainsFunc(injected, func(i corev1.EnvVar) bool { return i.Name == e.Name }) {
			out = append(out, e)
		}
	}
	return out
}

// workerConnection is how the pool's workers reach their database.
type workerConnection struct {
	Secret taskerv1alpha1.DatabaseSecretRef
	// Database is the database's name ("" in unit tests without one); SecretHash the copied Secret's.
	Database, SecretHash string
}

// podLabels are the selector labels of a pool's Pods.
func podLabels(pool *taskerv1alpha1.WorkerPool) map[string]string {
	return map[string]string{LabelWorkerPool: pool.Name}
}

// desiredDeployment builds the pool's Deployment with the given replicas, and returns the hash of everything in
// it but the replicas. The owner reference is set by the caller.
func desiredDeployment(pool *taskerv1alpha1.WorkerPool, conn workerConnection, queues []string,
	replicas int32) (*appsv1.Deployment, string) {
	tmpl := pool.Spec.Template.DeepCopy()
	tmpl.Labels = mergeMaps(tmpl.Labels, podLabels(pool))
	if conn.Database != "" {
		// The workers read their connection at start: a change of database (a namespace moved) or of a copied
		// Secret's content (a rotated password) rolls them.
		tmpl.Annotations = mergeMaps(tmpl.Annotations, map[string]string{AnnotationDatabase: conn.Database})
		if conn.SecretHash != "" {
			tmpl.Annotations[AnnotationDatabaseSecretHash] = conn.SecretHash
		}
	}
	secret := conn.Secret
	grace := pool.Spec.TerminationGracePeriodSeconds
	if grace <= 0 {
		grace = defaultTerminationGracePeriod
	}
	tmpl.Spec.TerminationGracePeriodSeconds = &grace
	env := injectedEnv(pool, secret, queues)
	for i := range tmpl.Spec.InitContainers {
		tmpl.Spec.InitContainers[i].Env = withEnv(tmpl.Spec.InitContainers[i].Env, env)
	}
	for i := range tmpl.Spec.Containers {
		tmpl.Spec.Containers[i].Env = withEnv(tmpl.Spec.Containers[i].Env, env)
	}

	labels := mergeMaps(podLabels(pool), map[string]string{labelManagedBy: managerName})
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: pool.Name, Namespace: pool.Namespace, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: podLabels(pool)},
			Template: *tmpl,
		},
	}
	hash := templateHash(labels, tmpl)
	dep.Annotations = map[string]string{AnnotationTemplateHash: hash}
	return dep, hash
}

func templateHash(labels map[string]string, tmpl *corev1.PodTemplateSpec) string {
	b, err := json.Marshal(struct {
		Labels   map[string]string       `json:"labels"`
		Template *corev1.PodTemplateSpec `json:"template"`
	}{labels, tmpl})
	if err != nil { // a PodTemplateSpec always marshals; never hash nothing
		panic(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// applyTo copies what the operator owns from want into the live Deployment: labels it sets, the hash, the template
// and replicas. The selector is immutable and has been the same since creation. Fields the apiserver defaulted
// (strategy, revisionHistoryLimit, ...) are kept.
func applyTo(live, want *appsv1.Deployment) {
	live.Labels = mergeMaps(live.Labels, want.Labels)
	live.Annotations = mergeMaps(live.Annotations, want.Annotations)
	live.Spec.Template = want.Spec.Template
	live.Spec.Replicas = want.Spec.Replicas
}

// mergeMaps returns base with over's entries added (over wins), as a new map.
func mergeMaps(base, over map[string]string) map[string]string {
	out := make(map[string]string, len(base)+len(over))
	maps.Copy(out, base)
	maps.Copy(out, over)
	return out
}
