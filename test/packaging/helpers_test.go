package packaging

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// Objects is a rendered install: every object of the chart (CRDs and hooks included) or of a kustomize build.
type Objects []*unstructured.Unstructured

// Find returns the objects of a kind (and, when name is not empty, that name).
func (o Objects) Find(kind, name string) Objects {
	var out Objects
	for _, obj := range o {
		if obj.GetKind() == kind && (name == "" || obj.GetName() == name) {
			out = append(out, obj)
		}
	}
	return out
}

// One returns the only object of a kind and name, failing the test otherwise.
func (o Objects) One(t *testing.T, kind, name string) *unstructured.Unstructured {
	t.Helper()
	found := o.Find(kind, name)
	if len(found) != 1 {
		t.Fatalf("want exactly one %s %q, found %d (objects: %s)", kind, name, len(found), o)
	}
	return found[0]
}

func (o Objects) String() string {
	names := make([]string, len(o))
	for i, obj := range o {
		names[i] = obj.GetKind() + "/" + obj.GetName()
	}
	return strings.Join(names, ", ")
}

const releaseName = "tasker-operator"

// chartDir is the chart under test.
func chartDir() string { return filepath.Join(repoRoot, "charts", "tasker-operator") }

// renderChart renders the chart like `helm template --include-crds` (an install, revision 1) in namespace ns with
// the given values (YAML) and extra API versions in .Capabilities. With cfg, the template function lookup reads
// from that apiserver (as `helm install` does); without it, lookup finds nothing (as `helm template` does).
func renderChart(t *testing.T, ns, values string, cfg *rest.Config, apiVersions ...string) Objects {
	t.Helper()
	chrt, files, err := renderChartFiles(ns, values, cfg, apiVersions...)
	if err != nil {
		t.Fatal(err)
	}
	var objs Objects
	for _, crd := range chrt.CRDObjects() {
		objs = append(objs, parseObjects(t, crd.Filename, crd.File.Data)...)
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if strings.HasSuffix(name, ".yaml") {
			objs = append(objs, parseObjects(t, name, []byte(files[name]))...)
		}
	}
	return objs
}

// renderChartFiles renders the chart's templates (file name -> manifest text).
func renderChartFiles(ns, values string, cfg *rest.Config, apiVersions ...string) (*chart.Chart, map[string]string, error) {
	chrt, err := loader.Load(chartDir())
	if err != nil {
		return nil, nil, fmt.Errorf("load chart: %w", err)
	}
	vals, err := chartutil.ReadValues([]byte(values))
	if err != nil {
		return nil, nil, fmt.Errorf("values: %w", err)
	}
	caps := chartutil.DefaultCapabilities.Copy()
	caps.APIVersions = append(slices.Clone(caps.APIVersions), apiVersions...)
	renderVals, err := chartutil.ToRenderValues(chrt, vals,
		chartutil.ReleaseOptions{Name: releaseName, Namespace: ns, Revision: 1, IsInstall: true}, caps)
	if err != nil {
		return nil, nil, fmt.Errorf("render values: %w", err)
	}
	var files map[string]string
	if cfg != nil {
		files, err = engine.RenderWithClient(chrt, renderVals, cfg)
	} else {
		files, err = engine.Render(chrt, renderVals)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("render chart: %w", err)
	}
	return chrt, files, nil
}

// kustomizeBuild runs `kustomize build` on a folder of the repository.
func kustomizeBuild(t *testing.T, dir string) Objects {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(kustomizeBin, "build", filepath.Join(repoRoot, dir))
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kustomize build %s: %v\n%s", dir, err, stderr.String())
	}
	return parseObjects(t, dir, stdout.Bytes())
}

// parseObjects splits a multi-document YAML stream into objects, skipping empty documents.
func parseObjects(t *testing.T, source string, data []byte) Objects {
	t.Helper()
	var objs Objects
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs
		}
		if err != nil {
			t.Fatalf("%s: %v", source, err)
		}
		var m map[string]any
		if err := yaml.Unmarshal(doc, &m); err != nil {
			t.Fatalf("%s: %v\n%s", source, err, doc)
		}
		if len(m) == 0 {
			continue
		}
		obj := &unstructured.Unstructured{Object: m}
		if obj.GetAPIVersion() == "" || obj.GetKind() == "" || obj.GetName() == "" {
			t.Fatalf("%s: a document without apiVersion, kind or name:\n%s", source, doc)
		}
		objs = append(objs, obj)
	}
}

// dryRunApply applies every object with a server-side dry run (after creating, for real, the namespaces the
// objects live in: a dry-run Namespace is not there for the next object).
func dryRunApply(t *testing.T, objs Objects) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	namespaces := map[string]bool{}
	for _, obj := range objs {
		if obj.GetKind() == "Namespace" {
			namespaces[obj.GetName()] = true
		} else if ns := obj.GetNamespace(); ns != "" {
			namespaces[ns] = true
		}
	}
	for ns := range namespaces {
		ensureNamespace(t, ns)
	}
	for _, obj := range objs {
		err := k8sClient.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj.DeepCopy()),
			client.FieldOwner("tasker-packaging-test"), client.ForceOwnership, client.DryRunAll)
		if err != nil {
			t.Errorf("server-side dry-run apply of %s %s/%s: %v", obj.GetKind(), obj.GetNamespace(), obj.GetName(), err)
		}
	}
}

func ensureNamespace(t *testing.T, name string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := k8sClient.Create(context.Background(), ns); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create namespace %s: %v", name, err)
	}
}

// toTyped converts an object (or a part of one) into a typed API struct.
func toTyped[T any](t *testing.T, m map[string]any) *T {
	t.Helper()
	out := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(m, out, true); err != nil {
		t.Fatalf("convert to %T: %v", out, err)
	}
	return out
}

// podSpecs returns the Pod specs of the workloads among objs, keyed by "Kind/name".
func podSpecs(t *testing.T, objs Objects) map[string]*corev1.PodTemplateSpec {
	t.Helper()
	out := map[string]*corev1.PodTemplateSpec{}
	for _, obj := range objs {
		var path []string
		switch obj.GetKind() {
		case "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job":
			path = []string{"spec", "template"}
		case "CronJob":
			path = []string{"spec", "jobTemplate", "spec", "template"}
		case "Pod":
			out["Pod/"+obj.GetName()] = &corev1.PodTemplateSpec{Spec: toTyped[corev1.Pod](t, obj.Object).Spec}
			continue
		default:
			continue
		}
		tmpl, found, err := unstructured.NestedMap(obj.Object, path...)
		if err != nil || !found {
			t.Fatalf("%s %s has no pod template: %v", obj.GetKind(), obj.GetName(), err)
		}
		out[obj.GetKind()+"/"+obj.GetName()] = toTyped[corev1.PodTemplateSpec](t, tmpl)
	}
	return out
}

// checkPodSecurity asserts the restricted Pod Security Standard and more for every Pod of objs: non-root, a
// read-only root filesystem, no privilege escalation, all capabilities dropped, the runtime's seccomp profile,
// no host namespaces. It returns the Pod specs.
func checkPodSecurity(t *testing.T, objs Objects) map[string]*corev1.PodTemplateSpec {
	t.Helper()
	specs := podSpecs(t, objs)
	if len(specs) == 0 {
		t.Fatal("no workloads rendered")
	}
	for name, tmpl := range specs {
		pod := tmpl.Spec
		psc := pod.SecurityContext
		if psc == nil {
			psc = &corev1.PodSecurityContext{}
		}
		if pod.HostNetwork || pod.HostPID || pod.HostIPC {
			t.Errorf("%s uses a host namespace", name)
		}
		for _, c := range slices.Concat(pod.InitContainers, pod.Containers) {
			where := fmt.Sprintf("%s container %s", name, c.Name)
			sc := c.SecurityContext
			if sc == nil {
				t.Errorf("%s has no securityContext", where)
				continue
			}
			nonRoot := psc.RunAsNonRoot
			if sc.RunAsNonRoot != nil {
				nonRoot = sc.RunAsNonRoot
			}
			if nonRoot == nil || !*nonRoot {
				t.Errorf("%s: runAsNonRoot is not true", where)
			}
			if uid := firstNonNil(sc.RunAsUser, psc.RunAsUser); uid != nil && *uid == 0 {
				t.Errorf("%s runs as UID 0", where)
			}
			if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
				t.Errorf("%s: readOnlyRootFilesystem is not true", where)
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				t.Errorf("%s: allowPrivilegeEscalation is not false", where)
			}
			if sc.Privileged != nil && *sc.Privileged {
				t.Errorf("%s is privileged", where)
			}
			if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
				t.Errorf("%s: capabilities must drop ALL and add none, got %+v", where, sc.Capabilities)
			}
			seccomp := psc.SeccompProfile
			if sc.SeccompProfile != nil {
				seccomp = sc.SeccompProfile
			}
			if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("%s: seccompProfile is not RuntimeDefault", where)
			}
			if c.Resources.Requests == nil || c.Resources.Limits.Memory().IsZero() {
				t.Errorf("%s has no resource requests or memory limit", where)
			}
		}
	}
	return specs
}

func firstNonNil[T any](ps ...*T) *T {
	for _, p := range ps {
		if p != nil {
			return p
		}
	}
	return nil
}

// generatedRole is config/rbac/role.yaml: what controller-gen derives from the controllers' RBAC markers.
func generatedRole(t *testing.T) *rbacv1.ClusterRole {
	t.Helper()
	objs := parseObjects(t, "config/rbac/role.yaml", readRepoFile(t, "config/rbac/role.yaml"))
	return toTyped[rbacv1.ClusterRole](t, objs.One(t, "ClusterRole", "manager-role").Object)
}

// permissions expands RBAC rules into a sorted set of single grants, so that rules grouped differently but
// granting the same compare equal.
func permissions(rules []rbacv1.PolicyRule) []string {
	set := map[string]bool{}
	for _, r := range rules {
		for _, verb := range r.Verbs {
			for _, url := range r.NonResourceURLs {
				set["nonResourceURL "+url+" "+verb] = true
			}
			for _, g := range r.APIGroups {
				for _, res := range r.Resources {
					names := r.ResourceNames
					if len(names) == 0 {
						names = []string{"*"}
					}
					for _, n := range names {
						set[fmt.Sprintf("%s/%s/%s %s", g, res, n, verb)] = true
					}
				}
			}
		}
	}
	out := make([]string, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// checkManagerRole asserts that the named ClusterRole grants exactly what config/rbac/role.yaml grants and that
// it is bound to the manager's ServiceAccount.
func checkManagerRole(t *testing.T, objs Objects, roleName, saNamespace, saName string) {
	t.Helper()
	role := toTyped[rbacv1.ClusterRole](t, objs.One(t, "ClusterRole", roleName).Object)
	want, got := permissions(generatedRole(t).Rules), permissions(role.Rules)
	if missing, extra := setDiff(want, got), setDiff(got, want); len(missing)+len(extra) > 0 {
		t.Errorf("ClusterRole %s differs from config/rbac/role.yaml (the controllers' markers): missing %v, extra %v",
			roleName, missing, extra)
	}
	bound := false
	for _, obj := range objs.Find("ClusterRoleBinding", "") {
		b := toTyped[rbacv1.ClusterRoleBinding](t, obj.Object)
		if b.RoleRef.Kind != "ClusterRole" || b.RoleRef.Name != roleName {
			continue
		}
		for _, s := range b.Subjects {
			if s.Kind == "ServiceAccount" && s.Name == saName && s.Namespace == saNamespace {
				bound = true
			}
		}
	}
	if !bound {
		t.Errorf("ClusterRole %s is not bound to ServiceAccount %s/%s", roleName, saNamespace, saName)
	}
}

// setDiff returns the elements of a that are not in b.
func setDiff(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

func readRepoFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, path))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// container returns the named container of a Pod template.
func container(t *testing.T, tmpl *corev1.PodTemplateSpec, name string) *corev1.Container {
	t.Helper()
	for i := range tmpl.Spec.Containers {
		if tmpl.Spec.Containers[i].Name == name {
			return &tmpl.Spec.Containers[i]
		}
	}
	t.Fatalf("no container %q", name)
	return nil
}

// envSecretRef returns the Secret reference of an environment variable.
func envSecretRef(t *testing.T, c *corev1.Container, name string) *corev1.SecretKeySelector {
	t.Helper()
	for _, e := range c.Env {
		if e.Name == name {
			if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
				t.Fatalf("container %s: %s is not read from a Secret", c.Name, name)
			}
			return e.ValueFrom.SecretKeyRef
		}
	}
	t.Fatalf("container %s has no %s", c.Name, name)
	return nil
}

// argValue returns the value of --name=value among args ("" and false when absent; "true" for a bare --name).
func argValue(args []string, name string) (string, bool) {
	for _, a := range args {
		if a == "--"+name {
			return "true", true
		}
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// checkServicesSelectManager asserts that every Service selects the manager's Pods (and not the migration Job's)
// and targets ports the manager container declares.
func checkServicesSelectManager(t *testing.T, objs Objects, manager, job *corev1.PodTemplateSpec) {
	t.Helper()
	for _, obj := range objs.Find("Service", "") {
		svc := toTyped[corev1.Service](t, obj.Object)
		if len(svc.Spec.Selector) == 0 {
			t.Errorf("Service %s has no selector", svc.Name)
			continue
		}
		if !selects(svc.Spec.Selector, manager.Labels) {
			t.Errorf("Service %s (selector %v) does not select the manager Pods (labels %v)", svc.Name, svc.Spec.Selector, manager.Labels)
		}
		if job != nil && selects(svc.Spec.Selector, job.Labels) {
			t.Errorf("Service %s also selects the migration Job's Pods", svc.Name)
		}
		for _, p := range svc.Spec.Ports {
			if !declaresPort(manager.Spec.Containers, p.TargetPort.String(), p.TargetPort.IntValue()) {
				t.Errorf("Service %s port %s targets %s, which the manager does not declare", svc.Name, p.Name, p.TargetPort.String())
			}
		}
	}
}

func selects(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func declaresPort(cs []corev1.Container, name string, number int) bool {
	for _, c := range cs {
		for _, p := range c.Ports {
			if p.Name == name || (number != 0 && int(p.ContainerPort) == number) {
				return true
			}
		}
	}
	return false
}

// equalIgnoringHeader compares a synced copy (which starts with a "# Generated by" line) with its source.
func equalIgnoringHeader(copyData, source []byte) bool {
	first, rest, _ := bytes.Cut(copyData, []byte("\n"))
	return bytes.HasPrefix(first, []byte("# Generated by")) && bytes.Equal(rest, source)
}

// checkScraper asserts that the ServiceMonitor sm scrapes with the token of ServiceAccount sa (the deprecated
// bearerTokenFile gone): its authorization names sa's token Secret, which exists for sa, and sa is bound to the
// metrics-reader ClusterRole reader.
func checkScraper(t *testing.T, objs Objects, sm *unstructured.Unstructured, sa, reader string) {
	t.Helper()
	eps, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
	if len(eps) != 1 {
		t.Fatalf("ServiceMonitor endpoints %v", eps)
	}
	ep := eps[0].(map[string]any)
	if _, ok := ep["bearerTokenFile"]; ok {
		t.Error("ServiceMonitor uses the deprecated bearerTokenFile")
	}
	secretName, _, _ := unstructured.NestedString(ep, "authorization", "credentials", "name")
	key, _, _ := unstructured.NestedString(ep, "authorization", "credentials", "key")
	if typ, _, _ := unstructured.NestedString(ep, "authorization", "type"); typ != "Bearer" || secretName != sa+"-token" || key != "token" {
		t.Errorf("ServiceMonitor authorization %v, want Bearer from %s-token/token", ep["authorization"], sa)
	}
	secret := toTyped[corev1.Secret](t, objs.One(t, "Secret", secretName).Object)
	if secret.Type != corev1.SecretTypeServiceAccountToken || secret.Annotations[corev1.ServiceAccountNameKey] != sa {
		t.Errorf("token Secret %s: type %s, for %q", secretName, secret.Type, secret.Annotations[corev1.ServiceAccountNameKey])
	}
	objs.One(t, "ServiceAccount", sa)
	b := toTyped[rbacv1.ClusterRoleBinding](t, objs.One(t, "ClusterRoleBinding", sa).Object)
	if b.RoleRef.Name != reader || len(b.Subjects) != 1 || b.Subjects[0].Name != sa {
		t.Errorf("scraper binding %+v, want %s bound to %s", b, sa, reader)
	}
}

// checkRulesFromSource: a rendered PrometheusRule holds the groups of config/prometheus/rules.yaml, unchanged.
func checkRulesFromSource(t *testing.T, rule *unstructured.Unstructured) {
	t.Helper()
	const path = "config/prometheus/rules.yaml"
	source := parseObjects(t, path, readRepoFile(t, path)).One(t, "PrometheusRule", "alerts")
	want, _, _ := unstructured.NestedSlice(source.Object, "spec", "groups")
	got, _, _ := unstructured.NestedSlice(rule.Object, "spec", "groups")
	if len(want) == 0 || !reflect.DeepEqual(got, want) {
		t.Errorf("PrometheusRule %s/%s: its groups differ from those of %s", rule.GetNamespace(), rule.GetName(), path)
	}
}

// checkDashboardFromSource: a dashboard ConfigMap's data is config/prometheus/grafana-dashboard.json alone, under
// the file name Grafana's sidecar writes it to.
func checkDashboardFromSource(t *testing.T, data map[string]string) {
	t.Helper()
	const path = "config/prometheus/grafana-dashboard.json"
	want := strings.TrimRight(string(readRepoFile(t, path)), "\n")
	if len(data) != 1 || strings.TrimRight(data["tasker-operator.json"], "\n") != want {
		t.Errorf("dashboard ConfigMap: keys %v, want tasker-operator.json holding %s", slices.Sorted(maps.Keys(data)), path)
	}
}
