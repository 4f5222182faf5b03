// Package k8s_test checks the Kubernetes manifests offline: every document
// decodes strictly into its k8s.io/api type, the objects reference each
// other consistently, the node accepts the configuration they give it, and
// the ConfigMaps that embed prometheus/ and grafana/ files have not drifted
// from them.
//
// Regenerate the embedded ConfigMaps after editing those files:
//
//	go test ./k8s -run TestManifests -update
package k8s_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/goblocks/goblocks/node/config"
	"github.com/goblocks/goblocks/node/replication"
)

var update = flag.Bool("update", false, "rewrite the generated ConfigMaps from prometheus/ and grafana/ before checking")

const (
	namespace = "goblocks"
	// repoRoot is relative to this package's directory, where go test runs.
	repoRoot = ".."
	// nodeStatefulSet is the StatefulSet that runs goblocks nodes.
	nodeStatefulSet = "blockstore"
	// httpDrain is how long the node lets in-flight requests finish after
	// its graceful leave (node/app: server.Shutdown's timeout).
	httpDrain = 10 * time.Second
	// lastAppliedLimit: client-side `kubectl apply` stores the whole object
	// in an annotation, and all annotations of an object must fit 256 KiB.
	lastAppliedLimit = 256*1024 - 6*1024
)

// applyOrder is the original README's `kubectl apply -f` sequence (plus the
// PodDisruptionBudget, the ZooKeeper NetworkPolicy and the Secret): these
// paths must keep working, and no manifest may exist that the sequence
// leaves out. The NetworkPolicy comes before ZooKeeper so that ZooKeeper is
// never reachable unprotected, the Secret before the pods that read it.
var applyOrder = []string{
	"ns.yaml",
	"zookeeper/networkpolicy.yaml",
	"zookeeper/deploy.yaml",
	"zookeeper/service.yaml",
	"store/configmap.yaml",
	"store/secret.yaml",
	"store/service-headless.yaml",
	"store/statefulset.yaml",
	"store/service-external.yaml",
	"store/pdb.yaml",
	"observability/jaeger.yaml",
	"observability/prometheus.yaml",
	"observability/grafana.yaml",
}

// ---------------------------------------------------------------------------
// Decoding

// object is one decoded document.
type object struct {
	file  string // relative to k8s/
	index int    // document number within file, from 0
	kind  string
	meta  *metav1.ObjectMeta
	obj   any // pointer to the typed k8s.io/api object
}

func (o object) String() string {
	if o.meta.Namespace != "" {
		return fmt.Sprintf("%s %s/%s (%s#%d)", o.kind, o.meta.Namespace, o.meta.Name, o.file, o.index)
	}
	return fmt.Sprintf("%s %s (%s#%d)", o.kind, o.meta.Name, o.file, o.index)
}

// kinds maps "apiVersion kind" to a constructor of the typed object; any
// other kind is an error.
var kinds = map[string]func() (any, *metav1.ObjectMeta){
	"v1 Namespace":      func() (any, *metav1.ObjectMeta) { o := &corev1.Namespace{}; return o, &o.ObjectMeta },
	"v1 Service":        func() (any, *metav1.ObjectMeta) { o := &corev1.Service{}; return o, &o.ObjectMeta },
	"v1 ConfigMap":      func() (any, *metav1.ObjectMeta) { o := &corev1.ConfigMap{}; return o, &o.ObjectMeta },
	"v1 Secret":         func() (any, *metav1.ObjectMeta) { o := &corev1.Secret{}; return o, &o.ObjectMeta },
	"v1 ServiceAccount": func() (any, *metav1.ObjectMeta) { o := &corev1.ServiceAccount{}; return o, &o.ObjectMeta },
	"apps/v1 Deployment": func() (any, *metav1.ObjectMeta) {
		o := &appsv1.Deployment{}
		return o, &o.ObjectMeta
	},
	"apps/v1 StatefulSet": func() (any, *metav1.ObjectMeta) {
		o := &appsv1.StatefulSet{}
		return o, &o.ObjectMeta
	},
	"rbac.authorization.k8s.io/v1 ClusterRole": func() (any, *metav1.ObjectMeta) {
		o := &rbacv1.ClusterRole{}
		return o, &o.ObjectMeta
	},
	"rbac.authorization.k8s.io/v1 ClusterRoleBinding": func() (any, *metav1.ObjectMeta) {
		o := &rbacv1.ClusterRoleBinding{}
		return o, &o.ObjectMeta
	},
	"policy/v1 PodDisruptionBudget": func() (any, *metav1.ObjectMeta) {
		o := &policyv1.PodDisruptionBudget{}
		return o, &o.ObjectMeta
	},
	"networking.k8s.io/v1 NetworkPolicy": func() (any, *metav1.ObjectMeta) {
		o := &networkingv1.NetworkPolicy{}
		return o, &o.ObjectMeta
	},
}

var clusterScoped = map[string]bool{"Namespace": true, "ClusterRole": true, "ClusterRoleBinding": true}

// splitDocs splits a multi-document YAML file on `---` lines. Joining the
// result with "---\n" gives the file back (separator lines normalised).
func splitDocs(text string) []string {
	var docs []string
	var cur strings.Builder
	for _, line := range strings.SplitAfter(text, "\n") {
		if strings.TrimRight(line, " \t\r\n") == "---" {
			docs = append(docs, cur.String())
			cur.Reset()
			continue
		}
		cur.WriteString(line)
	}
	return append(docs, cur.String())
}

// isEmptyDoc reports whether a document holds only comments and blank lines.
func isEmptyDoc(doc string) bool {
	for _, line := range strings.Split(doc, "\n") {
		if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
			return false
		}
	}
	return true
}

// decodeDoc strictly decodes one document: an unknown apiVersion/kind, an
// unknown or duplicate field, or a value of the wrong type is an error.
func decodeDoc(doc []byte) (kind string, obj any, meta *metav1.ObjectMeta, err error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return "", nil, nil, fmt.Errorf("reading apiVersion/kind: %w", err)
	}
	newObj, ok := kinds[tm.APIVersion+" "+tm.Kind]
	if !ok {
		return tm.Kind, nil, nil, fmt.Errorf("unknown apiVersion %q kind %q", tm.APIVersion, tm.Kind)
	}
	obj, meta = newObj()
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		return tm.Kind, nil, nil, fmt.Errorf("strict decode of %s: %w", tm.Kind, err)
	}
	// yaml.UnmarshalStrict is not strict enough: encoding/json matches
	// field names case-insensitively (httpGET passes as httpGet), and the
	// YAML is converted guided by the target type (an unquoted 20 becomes
	// the string a ConfigMap needs). kubectl converts without a target and
	// the API server decodes case-sensitively, so decode that way too.
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return tm.Kind, nil, nil, fmt.Errorf("converting %s to JSON: %w", tm.Kind, err)
	}
	fresh, _ := newObj()
	strictErrs, err := kjson.UnmarshalStrict(js, fresh, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err = errors.Join(append([]error{err}, strictErrs...)...); err != nil {
		return tm.Kind, nil, nil, fmt.Errorf("decoding %s as the API server does: %w", tm.Kind, err)
	}
	if meta.Name == "" {
		return tm.Kind, nil, nil, fmt.Errorf("%s without metadata.name", tm.Kind)
	}
	return tm.Kind, obj, meta, nil
}

// manifestFiles lists the YAML files under dir, relative to it, sorted.
func manifestFiles(dir string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		// Links (jeager.yaml, the original's spelling) name a file that
		// is listed under its own name.
		if d.Type()&fs.ModeSymlink == 0 && !d.IsDir() && (strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
			rel, err := filepath.Rel(dir, path)
			if err != nil {
				return err
			}
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	sort.Strings(files)
	return files, err
}

// loadAll decodes every document of every manifest file under k8s/.
func loadAll(t *testing.T) []object {
	t.Helper()
	files, err := manifestFiles(".")
	if err != nil {
		t.Fatal(err)
	}
	var objs []object
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range splitDocs(string(data)) {
			if isEmptyDoc(doc) {
				continue
			}
			kind, obj, meta, err := decodeDoc([]byte(doc))
			if err != nil {
				t.Errorf("%s document %d: %v", f, i, err)
				continue
			}
			objs = append(objs, object{file: f, index: i, kind: kind, meta: meta, obj: obj})
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	return objs
}

// ---------------------------------------------------------------------------
// An index over the decoded objects

// workload is a Deployment or StatefulSet, seen through its pod template.
type workload struct {
	object
	selector *metav1.LabelSelector
	template *corev1.PodTemplateSpec
	claims   []corev1.PersistentVolumeClaim
}

// podName is the name of the workload's first pod.
func (w workload) podName() string {
	if w.kind == "StatefulSet" {
		return w.meta.Name + "-0"
	}
	return w.meta.Name + "-5d8f9c7b6d-x2x7q"
}

type index struct {
	objs       []object
	byKind     map[string]map[string]object // kind -> namespace/name -> object
	workloads  []workload
	configMaps map[string]*corev1.ConfigMap // namespace/name
	secrets    map[string]*corev1.Secret    // namespace/name
	services   []*corev1.Service
}

func newIndex(t *testing.T, objs []object) *index {
	t.Helper()
	ix := &index{objs: objs, byKind: map[string]map[string]object{}, configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{}}
	for _, o := range objs {
		key := o.meta.Namespace + "/" + o.meta.Name
		if ix.byKind[o.kind] == nil {
			ix.byKind[o.kind] = map[string]object{}
		}
		if prev, dup := ix.byKind[o.kind][key]; dup {
			t.Errorf("%v duplicates %v", o, prev)
		}
		ix.byKind[o.kind][key] = o
		switch v := o.obj.(type) {
		case *appsv1.Deployment:
			ix.workloads = append(ix.workloads, workload{object: o, selector: v.Spec.Selector, template: &v.Spec.Template})
		case *appsv1.StatefulSet:
			ix.workloads = append(ix.workloads, workload{object: o, selector: v.Spec.Selector, template: &v.Spec.Template, claims: v.Spec.VolumeClaimTemplates})
		case *corev1.ConfigMap:
			ix.configMaps[key] = v
		case *corev1.Secret:
			ix.secrets[key] = v
		case *corev1.Service:
			ix.services = append(ix.services, v)
		}
	}
	return ix
}

func (ix *index) get(kind, ns, name string) (object, bool) {
	o, ok := ix.byKind[kind][ns+"/"+name]
	return o, ok
}

// ofKind lists the objects of kind in namespace/name order.
func (ix *index) ofKind(kind string) []object {
	keys := make([]string, 0, len(ix.byKind[kind]))
	for k := range ix.byKind[kind] {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	objs := make([]object, len(keys))
	for i, k := range keys {
		objs[i] = ix.byKind[kind][k]
	}
	return objs
}

// secretData is Secret ns/name's data as a pod sees it: stringData, which
// the API server merges over data on write, wins.
func (ix *index) secretData(ns, name string) (map[string]string, error) {
	s, ok := ix.secrets[ns+"/"+name]
	if !ok {
		return nil, fmt.Errorf("Secret %q, which no manifest defines in %s", name, ns)
	}
	data := make(map[string]string, len(s.Data)+len(s.StringData))
	for k, v := range s.Data {
		data[k] = string(v)
	}
	for k, v := range s.StringData {
		data[k] = v
	}
	return data, nil
}

// secretValue is key of Secret ns/name as a pod sees it.
func (ix *index) secretValue(ns, name, key string) (string, error) {
	data, err := ix.secretData(ns, name)
	if err != nil {
		return "", err
	}
	v, ok := data[key]
	if !ok {
		return "", fmt.Errorf("key %q, which Secret %s lacks", key, name)
	}
	return v, nil
}

// secretRef is one reference from a pod spec to a Secret; key "" stands
// for the whole Secret (envFrom, a volume without items).
type secretRef struct {
	what, name, key string
	optional        bool
}

// podSecretRefs lists every Secret reference of spec.
func podSecretRefs(spec *corev1.PodSpec) []secretRef {
	var refs []secretRef
	opt := func(b *bool) bool { return b != nil && *b }
	for _, v := range spec.Volumes {
		if s := v.Secret; s != nil {
			refs = append(refs, secretRef{"volume " + v.Name, s.SecretName, "", opt(s.Optional)})
			for _, it := range s.Items {
				refs = append(refs, secretRef{"volume " + v.Name, s.SecretName, it.Key, opt(s.Optional)})
			}
		}
		if v.Projected != nil {
			for _, src := range v.Projected.Sources {
				if s := src.Secret; s != nil {
					refs = append(refs, secretRef{"projected volume " + v.Name, s.Name, "", opt(s.Optional)})
					for _, it := range s.Items {
						refs = append(refs, secretRef{"projected volume " + v.Name, s.Name, it.Key, opt(s.Optional)})
					}
				}
			}
		}
	}
	for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
		for _, ef := range c.EnvFrom {
			if r := ef.SecretRef; r != nil {
				refs = append(refs, secretRef{"container " + c.Name + " envFrom", r.Name, "", opt(r.Optional)})
			}
		}
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				r := e.ValueFrom.SecretKeyRef
				refs = append(refs, secretRef{"container " + c.Name + " env " + e.Name, r.Name, r.Key, opt(r.Optional)})
			}
		}
	}
	return refs
}

// selected returns the workloads in ns whose pods carry every label of sel.
func (ix *index) selected(ns string, sel map[string]string) []workload {
	var ws []workload
	for _, w := range ix.workloads {
		if w.meta.Namespace == ns && len(sel) > 0 && labels.SelectorFromSet(sel).Matches(labels.Set(w.template.Labels)) {
			ws = append(ws, w)
		}
	}
	return ws
}

func (ix *index) statefulSet(t *testing.T, name string) (*appsv1.StatefulSet, workload) {
	t.Helper()
	for _, w := range ix.workloads {
		if w.kind == "StatefulSet" && w.meta.Name == name {
			return w.obj.(*appsv1.StatefulSet), w
		}
	}
	t.Fatalf("no StatefulSet %s", name)
	return nil, workload{}
}

// hasPort reports whether c declares port p (by name or number).
func hasPort(c corev1.Container, p intstr.IntOrString) bool {
	for _, cp := range c.Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return true
		}
	}
	return false
}

func podHasPort(spec *corev1.PodSpec, p intstr.IntOrString) bool {
	return slices.ContainsFunc(spec.Containers, func(c corev1.Container) bool { return hasPort(c, p) })
}

// ---------------------------------------------------------------------------
// The test

func TestManifests(t *testing.T) {
	if *update {
		for _, g := range generatedConfigMaps {
			if err := g.regenerate(); err != nil {
				t.Fatalf("-update %s: %v", g.name, err)
			}
		}
	}
	objs := loadAll(t)
	ix := newIndex(t, objs)

	t.Run("Files", func(t *testing.T) { checkFiles(t, objs) })
	t.Run("Namespaces", func(t *testing.T) { checkNamespaces(t, ix) })
	t.Run("Services", func(t *testing.T) { checkServices(t, ix) })
	t.Run("PodSpecs", func(t *testing.T) { checkPodSpecs(t, ix) })
	t.Run("Secrets", func(t *testing.T) { checkSecrets(t, ix) })
	t.Run("StatefulSet", func(t *testing.T) { checkStatefulSet(t, ix) })
	t.Run("NodeConfig", func(t *testing.T) { checkNodeConfig(t, ix) })
	t.Run("PodDisruptionBudget", func(t *testing.T) { checkPDB(t, ix) })
	t.Run("NetworkPolicies", func(t *testing.T) { checkNetworkPolicies(t, ix) })
	t.Run("RBAC", func(t *testing.T) { checkRBAC(t, ix) })
	t.Run("Addresses", func(t *testing.T) { checkAddresses(t, ix) })
	t.Run("Generated", func(t *testing.T) { checkGenerated(t, ix) })
	t.Run("PrometheusDiscovery", func(t *testing.T) { checkPrometheusDiscovery(t, ix) })
	t.Run("Promtool", checkPromtool)
	t.Run("GrafanaProvisioning", func(t *testing.T) { checkGrafanaProvisioning(t, ix) })
	t.Run("ApplySize", func(t *testing.T) { checkApplySize(t, objs) })
}

// TestManifestsRejectInvalid proves the strict decoding is not vacuous: a
// misspelt field, a wrong value type and an unknown kind all fail, for
// Secrets and NetworkPolicies too.
func TestManifestsRejectInvalid(t *testing.T) {
	sts, err := os.ReadFile("store/statefulset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := decodeDoc(sts); err != nil {
		t.Fatalf("the real StatefulSet must decode: %v", err)
	}
	typo := strings.Replace(string(sts), "  replicas: 3\n", "  replica: 3\n", 1)
	if typo == string(sts) {
		t.Fatal("statefulset.yaml has no '  replicas: 3' line to misspell")
	}
	cases := map[string]string{
		"unknown field": typo,
		"nested unknown field": strings.Replace(string(sts), "readinessProbe:\n",
			"readinessProbe:\n            httpGET: {path: /health, port: http}\n", 1),
		"duplicate field":                   "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  name: b\n",
		"unquoted number in ConfigMap data": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  VNodes: 20\n",
		"unknown kind":                      "apiVersion: v1\nkind: Secrets\nmetadata:\n  name: s\n",
		"wrong apiVersion":                  "apiVersion: extensions/v1beta1\nkind: Deployment\nmetadata:\n  name: d\n",
		"Secret field in the wrong case":    "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\nstringdata:\n  ZKAuth: a:b\n",
		"plain text in Secret data":         "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\ndata:\n  ZKAuth: goblocks:secret\n",
		"NetworkPolicy of an old API group": "apiVersion: extensions/v1beta1\nkind: NetworkPolicy\nmetadata:\n  name: n\n",
		"misspelt NetworkPolicy field":      "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: n\nspec:\n  podSelector: {}\n  policyType: [Ingress]\n",
	}
	for name, doc := range cases {
		if _, _, _, err := decodeDoc([]byte(doc)); err == nil {
			t.Errorf("%s: decoded without error", name)
		} else {
			t.Logf("%s: rejected: %v", name, err)
		}
	}
}

func TestSplitDocsRoundTrip(t *testing.T) {
	in := "# a\napiVersion: v1\n---\nkind: X\n---\n\n"
	docs := splitDocs(in)
	if len(docs) != 3 || strings.Join(docs, "---\n") != in {
		t.Fatalf("splitDocs(%q) = %q", in, docs)
	}
}

// TestSecretReferences: a pod sees stringData over data, and a reference
// to a missing Secret or key is an error, on the real StatefulSet too.
func TestSecretReferences(t *testing.T) {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	doc := "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n  namespace: goblocks\n" +
		"data:\n  A: " + b64("from-data") + "\n  B: " + b64("old") + "\nstringData:\n  B: new\n"
	kind, obj, meta, err := decodeDoc([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	ix := newIndex(t, []object{{file: "inline", kind: kind, meta: meta, obj: obj}})
	for _, c := range []struct{ name, key, want, err string }{
		{"s", "A", "from-data", ""},
		{"s", "B", "new", ""},
		{"s", "C", "", `key "C", which Secret s lacks`},
		{"t", "A", "", `Secret "t", which no manifest defines`},
	} {
		got, err := ix.secretValue(namespace, c.name, c.key)
		if got != c.want || (err == nil) != (c.err == "") || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("secretValue(%s, %s) = %q, %v; want %q, error %q", c.name, c.key, got, err, c.want, c.err)
		}
	}

	manifests := newIndex(t, loadAll(t))
	_, w := manifests.statefulSet(t, nodeStatefulSet)
	refs := podSecretRefs(&w.template.Spec)
	if len(refs) == 0 {
		t.Fatalf("%v references no Secret: where does ZKAuth come from?", w.object)
	}
	for _, r := range refs {
		if r.key == "" {
			continue
		}
		if _, err := manifests.secretValue(namespace, r.name, r.key); err != nil {
			t.Errorf("%s: %v", r.what, err)
		}
		if _, err := manifests.secretValue(namespace, r.name, strings.ToLower(r.key)); err == nil {
			t.Errorf("%s: the misspelt key %q resolves", r.what, strings.ToLower(r.key))
		}
	}
}

// TestNetworkPolicyProblems proves networkProblems is not vacuous: each
// plausible mistake in the ZooKeeper policy is reported.
func TestNetworkPolicyProblems(t *testing.T) {
	objs := loadAll(t)
	// problems checks the manifests with every NetworkPolicy replaced by
	// a mutated copy; mutate returning false drops the policy.
	problems := func(t *testing.T, mutate func(*networkingv1.NetworkPolicy) bool) []string {
		t.Helper()
		var out []object
		for _, o := range objs {
			if p, ok := o.obj.(*networkingv1.NetworkPolicy); ok {
				c := p.DeepCopy()
				if !mutate(c) {
					continue
				}
				o.obj, o.meta = c, &c.ObjectMeta
			}
			out = append(out, o)
		}
		ix := newIndex(t, out)
		_, w := ix.statefulSet(t, nodeStatefulSet)
		cfg, err := loadNodeConfig(t, ix, w, w.podName())
		if err != nil {
			t.Fatal(err)
		}
		return networkProblems(ix, w, cfg, grafanaDatasourceURLs(t))
	}
	if probs := problems(t, func(*networkingv1.NetworkPolicy) bool { return true }); len(probs) > 0 {
		t.Fatalf("the real manifests have problems: %q", probs)
	}
	port := func(n int32) *intstr.IntOrString { p := intstr.FromInt32(n); return &p }
	cases := []struct {
		name   string
		mutate func(*networkingv1.NetworkPolicy) bool
		want   []string // regular expressions, each matching a problem
	}{
		{"no policy", func(*networkingv1.NetworkPolicy) bool { return false },
			[]string{`^Deployment goblocks/prometheus \(.*\) can connect to ZooKeeper`, `^a client pod in namespace default can connect to ZooKeeper`}},
		{"misspelt podSelector", func(p *networkingv1.NetworkPolicy) bool {
			p.Spec.PodSelector.MatchLabels = map[string]string{"app": "zookeepr"}
			return true
		}, []string{"selects no Deployment or StatefulSet pods", "can connect to ZooKeeper"}},
		{"misspelt peer", func(p *networkingv1.NetworkPolicy) bool {
			p.Spec.Ingress[0].From[0].PodSelector.MatchLabels = map[string]string{"app": "blockstor"}
			return true
		}, []string{"admits pods app=blockstor, which no Deployment or StatefulSet runs", "ZKAddress: a NetworkPolicy keeps StatefulSet goblocks/blockstore"}},
		{"wrong port", func(p *networkingv1.NetworkPolicy) bool {
			p.Spec.Ingress[0].Ports[0].Port = port(2182)
			return true
		}, []string{"port 2182 is not a containerPort", "ZKAddress: a NetworkPolicy keeps"}},
		{"UDP", func(p *networkingv1.NetworkPolicy) bool {
			udp := corev1.ProtocolUDP
			p.Spec.Ingress[0].Ports[0].Protocol = &udp
			return true
		}, []string{"ZKAddress: a NetworkPolicy keeps"}},
		{"any source", func(p *networkingv1.NetworkPolicy) bool {
			p.Spec.Ingress[0].From = nil
			return true
		}, []string{"can connect to ZooKeeper"}},
		{"every pod of the namespace", func(p *networkingv1.NetworkPolicy) bool {
			p.Spec.Ingress[0].From[0].PodSelector = &metav1.LabelSelector{}
			return true
		}, []string{`^Deployment goblocks/grafana \(.*\) can connect to ZooKeeper`}},
		{"on the nodes instead", func(p *networkingv1.NetworkPolicy) bool {
			p.Spec.PodSelector.MatchLabels = map[string]string{"app": "blockstore"}
			p.Spec.Ingress[0].Ports[0].Port = port(3000)
			return true
		}, []string{"can connect to ZooKeeper", "Prometheus' scrape: a NetworkPolicy keeps", "NodePort Service blockstore: a NetworkPolicy keeps a client pod"}},
		{"egress", func(p *networkingv1.NetworkPolicy) bool {
			p.Spec.PolicyTypes = append(p.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
			return true
		}, []string{"egress rules are not simulated"}},
	}
	for _, c := range cases {
		probs := problems(t, c.mutate)
		t.Logf("%s: %q", c.name, probs)
		for _, want := range c.want {
			re := regexp.MustCompile(want)
			if !slices.ContainsFunc(probs, re.MatchString) {
				t.Errorf("%s: no problem matches %q; got %q", c.name, want, probs)
			}
		}
	}
}

// TestDataDirProblems proves dataDirProblems is not vacuous.
func TestDataDirProblems(t *testing.T) {
	ix := newIndex(t, loadAll(t))
	_, w := ix.statefulSet(t, nodeStatefulSet)
	cfg, err := loadNodeConfig(t, ix, w, w.podName())
	if err != nil {
		t.Fatal(err)
	}
	c := w.template.Spec.Containers[0]
	if probs := dataDirProblems(c, w.claims, cfg); len(probs) > 0 {
		t.Fatalf("the real manifests have problems: %q", probs)
	}
	small := make([]corev1.PersistentVolumeClaim, len(w.claims))
	for i, cl := range w.claims {
		cl.DeepCopyInto(&small[i])
		small[i].Spec.Resources.Requests[corev1.ResourceStorage] = resource.MustParse("1Gi")
	}
	with := func(f func(*config.Config)) config.Config { changed := cfg; f(&changed); return changed }
	cases := []struct {
		name   string
		claims []corev1.PersistentVolumeClaim
		cfg    config.Config
		want   string // "" for no problem
	}{
		{"store at the mount point", w.claims, with(func(c *config.Config) { c.DataDir = "/data" }), "RebuildCorruptStore could not move it aside"},
		{"at the mount point, never moved", w.claims, with(func(c *config.Config) { c.DataDir, c.RebuildCorruptStore = "/data", false }), ""},
		{"off the volume", w.claims, with(func(c *config.Config) { c.DataDir = "/tmp/store" }), "not on a volumeClaimTemplate"},
		{"name sharing the mount's prefix", w.claims, with(func(c *config.Config) { c.DataDir = "/database" }), "not on a volumeClaimTemplate"},
		{"1Gi claim", small, cfg, "keeps more than half the 1Gi volume"},
		{"no floor", w.claims, with(func(c *config.Config) { c.MinFreeBytes = 0 }), "without a floor"},
	}
	for _, tc := range cases {
		probs := dataDirProblems(c, tc.claims, tc.cfg)
		switch {
		case tc.want == "" && len(probs) > 0:
			t.Errorf("%s: unexpected problems %q", tc.name, probs)
		case tc.want != "" && !slices.ContainsFunc(probs, func(p string) bool { return strings.Contains(p, tc.want) }):
			t.Errorf("%s: no problem mentions %q; got %q", tc.name, tc.want, probs)
		}
	}
}

// checkFiles: the original's paths exist, nothing else does, and ns.yaml
// (applied first) creates the namespace.
func checkFiles(t *testing.T, objs []object) {
	files, err := manifestFiles(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range applyOrder {
		if !slices.Contains(files, f) {
			t.Errorf("%s is missing: the README applies it", f)
		}
	}
	for _, f := range files {
		if !slices.Contains(applyOrder, f) {
			t.Errorf("%s is not in the README's apply sequence (applyOrder)", f)
		}
	}
	for _, o := range objs {
		if (o.file == "ns.yaml") != (o.kind == "Namespace") {
			t.Errorf("%v: ns.yaml must hold exactly the Namespace", o)
		}
	}
}

func checkNamespaces(t *testing.T, ix *index) {
	if _, ok := ix.get("Namespace", "", namespace); !ok {
		t.Errorf("no Namespace %s", namespace)
	}
	for _, o := range ix.objs {
		switch {
		case clusterScoped[o.kind] && o.meta.Namespace != "":
			t.Errorf("%v: cluster-scoped object with a namespace", o)
		case !clusterScoped[o.kind] && o.meta.Namespace != namespace:
			t.Errorf("%v: namespace %q, want %q", o, o.meta.Namespace, namespace)
		}
	}
}

// checkServices: every selector matches some pods, and every target port
// exists on all of them.
func checkServices(t *testing.T, ix *index) {
	for _, svc := range ix.services {
		ws := ix.selected(svc.Namespace, svc.Spec.Selector)
		if len(ws) == 0 {
			t.Errorf("Service %s: selector %v matches no Deployment or StatefulSet pods", svc.Name, svc.Spec.Selector)
			continue
		}
		for _, p := range svc.Spec.Ports {
			target := p.TargetPort
			if target.Type == intstr.Int && target.IntVal == 0 {
				target = intstr.FromInt32(p.Port) // the API's default
			}
			for _, w := range ws {
				if !podHasPort(&w.template.Spec, target) {
					t.Errorf("Service %s port %d: targetPort %s is not a containerPort of %v", svc.Name, p.Port, target.String(), w.object)
				}
			}
		}
	}
}

// checkPodSpecs: selectors match their templates, every referenced
// ConfigMap, Secret, key, volume and probe port exists, $(VAR) references
// resolve, and no volume is declared without being mounted.
func checkPodSpecs(t *testing.T, ix *index) {
	for _, w := range ix.workloads {
		ns := w.meta.Namespace
		sel, err := metav1.LabelSelectorAsSelector(w.selector)
		if err != nil || sel.Empty() || !sel.Matches(labels.Set(w.template.Labels)) {
			t.Errorf("%v: selector %v does not match its pod template labels %v (%v)", w.object, w.selector, w.template.Labels, err)
		}
		spec := &w.template.Spec
		cmExists := func(what, name, key string, optional *bool) {
			if optional != nil && *optional {
				return
			}
			cm, ok := ix.configMaps[ns+"/"+name]
			if !ok {
				t.Errorf("%v: %s references ConfigMap %q, which no manifest defines in %s", w.object, what, name, ns)
				return
			}
			if _, ok := cm.Data[key]; key != "" && !ok {
				t.Errorf("%v: %s references key %q missing from ConfigMap %s", w.object, what, key, name)
			}
		}
		volumes := map[string]bool{}
		for _, v := range spec.Volumes {
			volumes[v.Name] = true
			if v.ConfigMap != nil {
				cmExists("volume "+v.Name, v.ConfigMap.Name, "", v.ConfigMap.Optional)
				for _, it := range v.ConfigMap.Items {
					cmExists("volume "+v.Name, v.ConfigMap.Name, it.Key, v.ConfigMap.Optional)
				}
			}
			if v.Projected != nil {
				for _, s := range v.Projected.Sources {
					if s.ConfigMap != nil {
						cmExists("projected volume "+v.Name, s.ConfigMap.Name, "", s.ConfigMap.Optional)
					}
				}
			}
		}
		for _, r := range podSecretRefs(spec) {
			if r.optional {
				continue
			}
			var err error
			if r.key == "" {
				_, err = ix.secretData(ns, r.name)
			} else {
				_, err = ix.secretValue(ns, r.name, r.key)
			}
			if err != nil {
				t.Errorf("%v: %s references %v", w.object, r.what, err)
			}
		}
		for _, c := range w.claims {
			volumes[c.Name] = true
		}
		mounted := map[string]bool{}
		for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
			where := fmt.Sprintf("container %s", c.Name)
			defined := map[string]bool{}
			for _, ef := range c.EnvFrom {
				if ef.ConfigMapRef != nil {
					cmExists(where+" envFrom", ef.ConfigMapRef.Name, "", ef.ConfigMapRef.Optional)
					if cm, ok := ix.configMaps[ns+"/"+ef.ConfigMapRef.Name]; ok {
						for k := range cm.Data {
							defined[ef.Prefix+k] = true
						}
					}
				}
				if ef.SecretRef != nil {
					data, _ := ix.secretData(ns, ef.SecretRef.Name) // a missing Secret is reported above
					for k := range data {
						defined[ef.Prefix+k] = true
					}
				}
			}
			for _, e := range c.Env {
				for _, ref := range varRefs(e.Value) {
					if !defined[ref] {
						t.Errorf("%v: %s env %s uses $(%s), which is not defined before it (Kubernetes leaves it unexpanded)", w.object, where, e.Name, ref)
					}
				}
				defined[e.Name] = true
				if e.ValueFrom == nil {
					continue
				}
				if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
					cmExists(where+" env "+e.Name, r.Name, r.Key, r.Optional)
				}
			}
			for _, m := range c.VolumeMounts {
				mounted[m.Name] = true
				if !volumes[m.Name] {
					t.Errorf("%v: %s mounts %q, which is neither a volume nor a volumeClaimTemplate", w.object, where, m.Name)
				}
			}
			for _, p := range []struct {
				name  string
				probe *corev1.Probe
			}{{"readinessProbe", c.ReadinessProbe}, {"livenessProbe", c.LivenessProbe}, {"startupProbe", c.StartupProbe}} {
				if p.probe == nil {
					continue
				}
				var port *intstr.IntOrString
				switch h := p.probe.ProbeHandler; {
				case h.HTTPGet != nil:
					port = &h.HTTPGet.Port
				case h.TCPSocket != nil:
					port = &h.TCPSocket.Port
				case h.GRPC != nil:
					port = &intstr.IntOrString{Type: intstr.Int, IntVal: h.GRPC.Port}
				}
				if port != nil && !hasPort(c, *port) {
					t.Errorf("%v: %s %s probes port %s, which the container does not declare", w.object, where, p.name, port.String())
				}
			}
			if c.Image == "" {
				t.Errorf("%v: %s has no image", w.object, where)
			}
		}
		for name := range volumes {
			if !mounted[name] {
				t.Errorf("%v: volume %q is never mounted", w.object, name)
			}
		}
		if sa := spec.ServiceAccountName; sa != "" {
			if _, ok := ix.get("ServiceAccount", ns, sa); !ok {
				t.Errorf("%v: serviceAccountName %s is not defined", w.object, sa)
			}
		}
	}
}

// checkSecrets: every Secret is read by some pod (one that is not is a
// setting nobody gets), and no key is in both data and stringData (the
// API server keeps stringData's; the other is a stale value left in the
// file).
func checkSecrets(t *testing.T, ix *index) {
	used := map[string]bool{}
	for _, w := range ix.workloads {
		for _, r := range podSecretRefs(&w.template.Spec) {
			used[w.meta.Namespace+"/"+r.name] = true
		}
	}
	for _, o := range ix.ofKind("Secret") {
		s := o.obj.(*corev1.Secret)
		if !used[o.meta.Namespace+"/"+o.meta.Name] {
			t.Errorf("%v: no Deployment or StatefulSet reads it", o)
		}
		for k := range s.StringData {
			if _, dup := s.Data[k]; dup {
				t.Errorf("%v: key %s is in both data and stringData", o, k)
			}
		}
	}
}

var varRefRE = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)`)

// varRefs lists the $(VAR) references Kubernetes expands in an env value.
func varRefs(s string) []string {
	var refs []string
	for _, m := range varRefRE.FindAllStringSubmatch(strings.ReplaceAll(s, "$$", ""), -1) {
		refs = append(refs, m[1])
	}
	return refs
}

// checkStatefulSet: its governing Service is headless, selects its pods and
// publishes them before they are ready (peers dial a joining node).
func checkStatefulSet(t *testing.T, ix *index) {
	for _, w := range ix.workloads {
		if w.kind != "StatefulSet" {
			continue
		}
		sts := w.obj.(*appsv1.StatefulSet)
		o, ok := ix.get("Service", w.meta.Namespace, sts.Spec.ServiceName)
		if !ok {
			t.Errorf("%v: serviceName %q is not a Service", w.object, sts.Spec.ServiceName)
			continue
		}
		svc := o.obj.(*corev1.Service)
		if svc.Spec.ClusterIP != corev1.ClusterIPNone {
			t.Errorf("Service %s (serviceName of %v) is not headless (clusterIP: None)", svc.Name, w.object)
		}
		if !svc.Spec.PublishNotReadyAddresses {
			t.Errorf("Service %s: publishNotReadyAddresses must be true so peers resolve joining and leaving nodes", svc.Name)
		}
		if !slices.ContainsFunc(ix.selected(svc.Namespace, svc.Spec.Selector), func(x workload) bool { return x.object.meta == w.meta }) {
			t.Errorf("Service %s does not select the pods of %v", svc.Name, w.object)
		}
	}
}

// nodeEnvNames returns every environment variable node/config reads, as
// its flag usage lists them ("(env NAME").
func nodeEnvNames(t *testing.T) map[string]bool {
	t.Helper()
	var usage bytes.Buffer
	_, err := config.Load([]string{"-help"}, func(string) string { return "" }, &usage)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("config.Load(-help) = %v, want flag.ErrHelp", err)
	}
	names := map[string]bool{}
	for _, m := range regexp.MustCompile(`\(env ([A-Za-z_][A-Za-z0-9_]*)`).FindAllStringSubmatch(usage.String(), -1) {
		names[m[1]] = true
	}
	if !names["ZKAddress"] || !names["ReplicaName"] || !names["LeaveTimeout"] {
		t.Fatalf("node/config usage lists no (env ...) names the test recognises:\n%s", usage.String())
	}
	return names
}

// goRuntimeEnv are variables the Go runtime, not node/config, reads.
var goRuntimeEnv = map[string]bool{"GOMEMLIMIT": true, "GOMAXPROCS": true, "GOGC": true, "GODEBUG": true}

// nodeEnv resolves the blockstore container's environment for pod podName
// as the kubelet would.
func nodeEnv(t *testing.T, ix *index, w workload, c corev1.Container, podName string) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, ef := range c.EnvFrom {
		if ef.ConfigMapRef != nil {
			if cm, ok := ix.configMaps[w.meta.Namespace+"/"+ef.ConfigMapRef.Name]; ok {
				for k, v := range cm.Data {
					env[ef.Prefix+k] = v
				}
			}
		}
		if ef.SecretRef != nil {
			data, _ := ix.secretData(w.meta.Namespace, ef.SecretRef.Name) // missing: reported by PodSpecs
			for k, v := range data {
				env[ef.Prefix+k] = v
			}
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = varRefRE.ReplaceAllStringFunc(e.Value, func(ref string) string {
				if v, ok := env[ref[2:len(ref)-1]]; ok {
					return v
				}
				return ref
			})
		case e.ValueFrom.FieldRef != nil:
			switch e.ValueFrom.FieldRef.FieldPath {
			case "metadata.name":
				env[e.Name] = podName
			case "metadata.namespace":
				env[e.Name] = w.meta.Namespace
			default:
				env[e.Name] = "10.0.0.7"
			}
		case e.ValueFrom.ResourceFieldRef != nil:
			res := e.ValueFrom.ResourceFieldRef.Resource
			list := c.Resources.Limits
			if r, ok := strings.CutPrefix(res, "requests."); ok {
				res, list = r, c.Resources.Requests
			}
			q, ok := list[corev1.ResourceName(strings.TrimPrefix(res, "limits."))]
			if !ok {
				t.Errorf("container %s env %s: resourceFieldRef %s is not set in resources", c.Name, e.Name, e.ValueFrom.ResourceFieldRef.Resource)
			}
			env[e.Name] = strconv.FormatInt(q.Value(), 10)
		case e.ValueFrom.ConfigMapKeyRef != nil:
			r := e.ValueFrom.ConfigMapKeyRef
			env[e.Name] = ix.configMaps[w.meta.Namespace+"/"+r.Name].Data[r.Key]
		case e.ValueFrom.SecretKeyRef != nil:
			r := e.ValueFrom.SecretKeyRef
			if v, err := ix.secretValue(w.meta.Namespace, r.Name, r.Key); err == nil { // else reported by PodSpecs
				env[e.Name] = v
			}
		}
	}
	return env
}

// loadNodeConfig is the configuration the node of pod podName runs with:
// its args and resolved environment through node/config.
func loadNodeConfig(t *testing.T, ix *index, w workload, podName string) (config.Config, error) {
	t.Helper()
	c := w.template.Spec.Containers[0]
	args := c.Args
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		if args[0] != "node" {
			return config.Config{}, fmt.Errorf("container %s runs subcommand %q, want node", c.Name, args[0])
		}
		args = args[1:]
	}
	env := nodeEnv(t, ix, w, c, podName)
	var stderr bytes.Buffer
	cfg, err := config.Load(args, func(k string) string { return env[k] }, &stderr)
	if err != nil {
		return cfg, fmt.Errorf("the node rejects its configuration: %w\n%s", err, stderr.String())
	}
	return cfg, nil
}

// secretSettings are the node settings that must come from a Secret: a
// ConfigMap's or a literal env value is shown by `kubectl describe` to
// everyone who may read ConfigMaps or pods (RBAC grants Secrets
// separately), and only Secrets can be encrypted at rest.
var secretSettings = []string{"ClusterToken", "ZKAuth", "AdminToken"}

// checkNodeConfig: every variable given to the node is one it reads, the
// node accepts the resulting configuration, and the pod fits it (port,
// persistent DataDir, grace period, security, replicas >= RF).
func checkNodeConfig(t *testing.T, ix *index) {
	sts, w := ix.statefulSet(t, nodeStatefulSet)
	if len(w.template.Spec.Containers) != 1 {
		t.Fatalf("%v: want exactly one container, the node", w.object)
	}
	c := w.template.Spec.Containers[0]
	known := nodeEnvNames(t)
	knownOrOTEL := func(k string) bool { return known[k] || strings.HasPrefix(k, "OTEL_") }

	for _, ef := range c.EnvFrom {
		var keys []string
		var from string
		switch {
		case ef.ConfigMapRef != nil:
			cm := ix.configMaps[w.meta.Namespace+"/"+ef.ConfigMapRef.Name]
			if cm == nil {
				continue // reported by PodSpecs
			}
			for k := range cm.Data {
				keys = append(keys, k)
				if slices.Contains(secretSettings, ef.Prefix+k) {
					t.Errorf("ConfigMap %s holds %s: secrets belong in a Secret", cm.Name, ef.Prefix+k)
				}
			}
			from = "ConfigMap " + cm.Name
		case ef.SecretRef != nil:
			data, err := ix.secretData(w.meta.Namespace, ef.SecretRef.Name)
			if err != nil {
				continue // reported by PodSpecs
			}
			for k := range data {
				keys = append(keys, k)
			}
			from = "Secret " + ef.SecretRef.Name
		}
		for _, k := range keys {
			if !knownOrOTEL(ef.Prefix + k) {
				t.Errorf("%s key %q is not a setting the node reads (node/config) nor OTEL_*", from, k)
			}
		}
	}
	var referenced []string
	for _, e := range c.Env {
		referenced = append(referenced, varRefs(e.Value)...)
	}
	for _, e := range c.Env {
		if !knownOrOTEL(e.Name) && !goRuntimeEnv[e.Name] && !slices.Contains(referenced, e.Name) {
			t.Errorf("container %s env %s is not a setting the node reads, a Go runtime variable, nor used by another variable", c.Name, e.Name)
		}
		if slices.Contains(secretSettings, e.Name) && (e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil) {
			t.Errorf("container %s env %s is not taken from a Secret (secretKeyRef)", c.Name, e.Name)
		}
	}

	if c.Command != nil {
		t.Errorf("container %s overrides the image's entrypoint /goblocks: use args", c.Name)
	}
	for i := range min(int(*sts.Spec.Replicas), 4) {
		pod := fmt.Sprintf("%s-%d", w.meta.Name, i)
		cfg, err := loadNodeConfig(t, ix, w, pod)
		if err != nil {
			t.Fatalf("pod %s: %v", pod, err)
		}
		if cfg.ReplicaName != pod {
			t.Errorf("pod %s: ReplicaName %q, want the pod name", pod, cfg.ReplicaName)
		}
		wantAddr := fmt.Sprintf("%s.%s.%s.svc.cluster.local:%d", pod, sts.Spec.ServiceName, w.meta.Namespace, cfg.Port)
		if got := cfg.AdvertiseAddress(); got != wantAddr {
			t.Errorf("pod %s advertises %q, want %q (its DNS name through the headless Service)", pod, got, wantAddr)
		}
		if i > 0 {
			continue
		}
		if !hasPort(c, intstr.FromInt32(int32(cfg.Port))) {
			t.Errorf("the node listens on %d, which is not a containerPort", cfg.Port)
		}
		if cfg.Storage == "pebble" {
			for _, p := range dataDirProblems(c, w.claims, cfg) {
				t.Error(p)
			}
		}
		grace := w.template.Spec.TerminationGracePeriodSeconds
		if grace == nil || time.Duration(*grace)*time.Second <= cfg.LeaveTimeout+httpDrain {
			t.Errorf("terminationGracePeriodSeconds %v must exceed LeaveTimeout %v + the %v HTTP drain, or the graceful leave is cut short by SIGKILL", ptrString(grace), cfg.LeaveTimeout, httpDrain)
		}
		if n := int(*sts.Spec.Replicas); n < cfg.ReplicationFactor {
			t.Errorf("%d replicas < ReplicationFactor %d: blocks cannot get RF distinct owners", n, cfg.ReplicationFactor)
		}
	}

	psc, csc := w.template.Spec.SecurityContext, c.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 || psc.FSGroup == nil {
		t.Errorf("pod securityContext must set runAsNonRoot, a non-zero runAsUser and fsGroup (the volume must be writable): %+v", psc)
	}
	if csc == nil || csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem ||
		csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation ||
		csc.Capabilities == nil || !slices.Contains(csc.Capabilities.Drop, "ALL") {
		t.Errorf("container securityContext must set readOnlyRootFilesystem, allowPrivilegeEscalation: false and drop ALL: %+v", csc)
	}
	if c.ReadinessProbe == nil || c.LivenessProbe == nil {
		t.Errorf("container %s needs readiness and liveness probes", c.Name)
	} else if lp := c.LivenessProbe; lp.HTTPGet != nil && time.Duration(lp.PeriodSeconds*max(lp.FailureThreshold, 1))*time.Second < time.Minute {
		t.Errorf("livenessProbe on /health restarts a node after %ds without ZooKeeper: be lenient (>= 1m)", lp.PeriodSeconds*lp.FailureThreshold)
	}
	if ann := w.template.Annotations; ann["prometheus.io/scrape"] != "true" {
		t.Errorf("pod template lacks the prometheus.io/scrape: \"true\" annotation")
	}
}

// dataDirProblems: DataDir lies on a volumeClaimTemplate, below its mount
// point when RebuildCorruptStore may rename it, and the free-space floor
// leaves most of that volume for blocks.
func dataDirProblems(c corev1.Container, claims []corev1.PersistentVolumeClaim, cfg config.Config) []string {
	var probs []string
	add := func(format string, args ...any) { probs = append(probs, fmt.Sprintf(format, args...)) }
	dataDir := path.Clean(cfg.DataDir)
	var claim *corev1.PersistentVolumeClaim
	var mount string
	for _, m := range c.VolumeMounts {
		mp := path.Clean(m.MountPath)
		if dataDir != mp && !strings.HasPrefix(dataDir, strings.TrimSuffix(mp, "/")+"/") {
			continue
		}
		if i := slices.IndexFunc(claims, func(p corev1.PersistentVolumeClaim) bool { return p.Name == m.Name }); i >= 0 && len(mp) > len(mount) {
			claim, mount = &claims[i], mp
		}
	}
	if claim == nil {
		add("DataDir %s is not on a volumeClaimTemplate's mountPath: blocks would not survive a restart", cfg.DataDir)
		return probs
	}
	// node/app moves an unreadable store to the sibling <DataDir>.corrupt-<time>:
	// a mount point cannot be renamed, and beside it is the read-only root.
	if cfg.RebuildCorruptStore && dataDir == mount {
		add("DataDir %s is the mount point of volume %s: RebuildCorruptStore could not move it aside; use a directory below it", cfg.DataDir, claim.Name)
	}
	size, ok := claim.Spec.Resources.Requests[corev1.ResourceStorage]
	switch {
	case !ok:
		add("volumeClaimTemplate %s requests no storage", claim.Name)
	case cfg.MinFreeBytes <= 0:
		add("MinFreeBytes %d: without a floor a full volume fails pebble mid-write instead of refusing writes (507)", cfg.MinFreeBytes)
	case cfg.MinFreeBytes*2 > size.Value():
		add("MinFreeBytes %d keeps more than half the %s volume %s free: the node refuses writes early (or always); grow the claim", cfg.MinFreeBytes, size.String(), claim.Name)
	}
	return probs
}

func ptrString[T any](p *T) string {
	if p == nil {
		return "<unset>"
	}
	return fmt.Sprint(*p)
}

// checkPDB: the budget selects the node pods and never allows more of them
// down than a quorum survives.
func checkPDB(t *testing.T, ix *index) {
	sts, w := ix.statefulSet(t, nodeStatefulSet)
	found := false
	for _, o := range ix.byKind["PodDisruptionBudget"] {
		pdb := o.obj.(*policyv1.PodDisruptionBudget)
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err != nil || sel.Empty() {
			t.Errorf("%v: bad selector: %v", o, err)
			continue
		}
		if o.meta.Namespace != w.meta.Namespace || !sel.Matches(labels.Set(w.template.Labels)) {
			t.Errorf("%v selects no StatefulSet pods", o)
			continue
		}
		found = true
		rf, err := strconv.Atoi(nodeEnv(t, ix, w, w.template.Spec.Containers[0], "x")["ReplicationFactor"])
		if err != nil {
			rf = config.Default().ReplicationFactor
		}
		tolerable := rf - replication.Quorum.Required(rf)
		mu := pdb.Spec.MaxUnavailable
		switch {
		case mu == nil:
			t.Errorf("%v: want maxUnavailable (scales with the StatefulSet)", o)
		case mu.Type != intstr.Int || int(mu.IntVal) > tolerable || mu.IntVal < 1:
			t.Errorf("%v: maxUnavailable %s; RF %d with quorum tolerates %d down", o, mu.String(), rf, tolerable)
		}
	}
	if !found {
		t.Errorf("no PodDisruptionBudget selects StatefulSet %s", sts.Name)
	}
}

// ---------------------------------------------------------------------------
// NetworkPolicy

// netPeer is the source of a connection: the pods of a workload, or a
// client pod in another namespace.
type netPeer struct {
	name   string
	ns     string
	labels map[string]string
}

// outsideClient stands for the clients of NodePort Services and anything
// else outside the namespace.
var outsideClient = netPeer{name: "a client pod in namespace default", ns: "default"}

func workloadPeer(w workload) netPeer {
	return netPeer{name: w.object.String(), ns: w.meta.Namespace, labels: w.template.Labels}
}

// podPort is a container port of a workload's pods.
type podPort struct {
	w    workload
	port corev1.ContainerPort
}

func (p podPort) String() string {
	return fmt.Sprintf("%v port %d", p.w.object, p.port.ContainerPort)
}

// containerPort finds port p (by name or number) among spec's containers.
func containerPort(spec *corev1.PodSpec, p intstr.IntOrString) (corev1.ContainerPort, bool) {
	for _, c := range spec.Containers {
		for _, cp := range c.Ports {
			if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
				return cp, true
			}
		}
	}
	return corev1.ContainerPort{}, false
}

// serviceTargets lists the pod ports a connection to svc's port reaches.
func (ix *index) serviceTargets(svc *corev1.Service, port int32) []podPort {
	var targets []podPort
	for _, sp := range svc.Spec.Ports {
		if sp.Port != port {
			continue
		}
		target := sp.TargetPort
		if target.Type == intstr.Int && target.IntVal == 0 {
			target = intstr.FromInt32(sp.Port)
		}
		for _, w := range ix.selected(svc.Namespace, svc.Spec.Selector) {
			if cp, ok := containerPort(&w.template.Spec, target); ok {
				targets = append(targets, podPort{w, cp})
			}
		}
	}
	return targets
}

// nsLabels are the labels of namespace ns, including the one the API
// server sets on every namespace.
func (ix *index) nsLabels(ns string) labels.Set {
	set := labels.Set{}
	if o, ok := ix.get("Namespace", "", ns); ok {
		for k, v := range o.meta.Labels {
			set[k] = v
		}
	}
	set["kubernetes.io/metadata.name"] = ns
	return set
}

// policyTypes is spec.policyTypes with the API server's default.
func policyTypes(p *networkingv1.NetworkPolicy) []networkingv1.PolicyType {
	if len(p.Spec.PolicyTypes) > 0 {
		return p.Spec.PolicyTypes
	}
	types := []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	if len(p.Spec.Egress) > 0 {
		types = append(types, networkingv1.PolicyTypeEgress)
	}
	return types
}

func selectorMatches(sel *metav1.LabelSelector, set labels.Set) (bool, error) {
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return false, err
	}
	return s.Matches(set), nil
}

// peerAdmits reports whether a rule's peer of a policy in policyNS
// admits src.
func (ix *index) peerAdmits(policyNS string, p networkingv1.NetworkPolicyPeer, src netPeer) (bool, error) {
	if p.IPBlock != nil {
		return false, errors.New("ipBlock peers are not simulated by this test")
	}
	if p.NamespaceSelector == nil {
		if src.ns != policyNS {
			return false, nil
		}
	} else if ok, err := selectorMatches(p.NamespaceSelector, ix.nsLabels(src.ns)); err != nil || !ok {
		return false, err
	}
	if p.PodSelector == nil {
		return true, nil
	}
	return selectorMatches(p.PodSelector, labels.Set(src.labels))
}

// portAdmits reports whether a rule's ports admit container port cp.
func portAdmits(ports []networkingv1.NetworkPolicyPort, cp corev1.ContainerPort) bool {
	if len(ports) == 0 {
		return true
	}
	proto := cmpOr(string(cp.Protocol), string(corev1.ProtocolTCP))
	for _, p := range ports {
		if cmpOr(string(ptrOr(p.Protocol, "")), string(corev1.ProtocolTCP)) != proto {
			continue
		}
		switch {
		case p.Port == nil:
			return true
		case p.Port.Type == intstr.String:
			if p.Port.StrVal == cp.Name {
				return true
			}
		case p.EndPort != nil:
			if p.Port.IntVal <= cp.ContainerPort && cp.ContainerPort <= *p.EndPort {
				return true
			}
		case p.Port.IntVal == cp.ContainerPort:
			return true
		}
	}
	return false
}

func ptrOr[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

// ingressAllowed reports whether src may connect to dst as NetworkPolicy
// defines it: yes unless a policy selecting dst's pods isolates them for
// ingress, and then only if a rule of such a policy admits src on that port.
func (ix *index) ingressAllowed(dst podPort, src netPeer) (bool, error) {
	isolated := false
	for _, o := range ix.ofKind("NetworkPolicy") {
		p := o.obj.(*networkingv1.NetworkPolicy)
		if o.meta.Namespace != dst.w.meta.Namespace || !slices.Contains(policyTypes(p), networkingv1.PolicyTypeIngress) {
			continue
		}
		if ok, err := selectorMatches(&p.Spec.PodSelector, labels.Set(dst.w.template.Labels)); err != nil {
			return false, fmt.Errorf("%v: podSelector: %w", o, err)
		} else if !ok {
			continue
		}
		isolated = true
		for _, r := range p.Spec.Ingress {
			if !portAdmits(r.Ports, dst.port) {
				continue
			}
			if len(r.From) == 0 {
				return true, nil
			}
			for _, peer := range r.From {
				ok, err := ix.peerAdmits(o.meta.Namespace, peer, src)
				if err != nil {
					return false, fmt.Errorf("%v: %w", o, err)
				}
				if ok {
					return true, nil
				}
			}
		}
	}
	return !isolated, nil
}

// workloadNamed finds the Deployment or StatefulSet kind/name in namespace.
func (ix *index) workloadNamed(kind, name string) (workload, bool) {
	for _, w := range ix.workloads {
		if w.kind == kind && w.meta.Name == name && w.meta.Namespace == namespace {
			return w, true
		}
	}
	return workload{}, false
}

// networkProblems checks the NetworkPolicies against the objects and the
// node's configuration cfg (node is its StatefulSet): every selector and
// port of a policy names existing pods and ports; every connection the
// system needs (nodes to ZooKeeper, Jaeger and each other, Prometheus to
// the nodes, Grafana to its datasources, clients to NodePort Services) is
// allowed; and ZooKeeper's client port admits the nodes only.
func networkProblems(ix *index, node workload, cfg config.Config, grafanaURLs []string) []string {
	var probs []string
	add := func(format string, args ...any) { probs = append(probs, fmt.Sprintf(format, args...)) }

	for _, o := range ix.ofKind("NetworkPolicy") {
		p := o.obj.(*networkingv1.NetworkPolicy)
		sel, err := metav1.LabelSelectorAsSelector(&p.Spec.PodSelector)
		if err != nil {
			add("%v: podSelector: %v", o, err)
			continue
		}
		var selected []workload
		for _, w := range ix.workloads {
			if w.meta.Namespace == o.meta.Namespace && sel.Matches(labels.Set(w.template.Labels)) {
				selected = append(selected, w)
			}
		}
		if len(selected) == 0 {
			add("%v: podSelector %q selects no Deployment or StatefulSet pods", o, sel)
		}
		if slices.Contains(policyTypes(p), networkingv1.PolicyTypeEgress) {
			add("%v: egress rules are not simulated by this test (extend networkProblems, and remember DNS)", o)
		}
		for i, r := range p.Spec.Ingress {
			for _, peer := range r.From {
				if peer.IPBlock != nil {
					add("%v: ingress rule %d: ipBlock peers are not simulated by this test", o, i)
					continue
				}
				if peer.PodSelector == nil {
					continue
				}
				matched, inNamespace := false, false
				for _, w := range ix.workloads {
					src := workloadPeer(w)
					if peer.NamespaceSelector == nil && src.ns != o.meta.Namespace {
						continue
					}
					if peer.NamespaceSelector != nil {
						if ok, _ := selectorMatches(peer.NamespaceSelector, ix.nsLabels(src.ns)); !ok {
							continue
						}
					}
					inNamespace = true
					if ok, _ := ix.peerAdmits(o.meta.Namespace, peer, src); ok {
						matched = true
					}
				}
				// Pods in namespaces these manifests do not create cannot be checked.
				if inNamespace && !matched {
					add("%v: ingress rule %d admits pods %v, which no Deployment or StatefulSet runs", o, i, metav1.FormatLabelSelector(peer.PodSelector))
				}
			}
			for _, pp := range r.Ports {
				if pp.Port == nil || pp.EndPort != nil {
					continue
				}
				for _, w := range selected {
					if _, ok := containerPort(&w.template.Spec, *pp.Port); !ok {
						add("%v: ingress rule %d port %s is not a containerPort of %v", o, i, pp.Port.String(), w.object)
					}
				}
			}
		}
	}

	type flow struct {
		why     string
		from    netPeer
		targets []podPort
	}
	var flows []flow
	toAddr := func(why string, from netPeer, addr string) []podPort {
		svc, port, err := ix.resolveServiceAddr(addr)
		if err != nil {
			add("%s %v", why, err)
			return nil
		}
		targets := ix.serviceTargets(svc, port)
		flows = append(flows, flow{why, from, targets})
		return targets
	}
	nodePeer := workloadPeer(node)
	var zkTargets []podPort
	for _, hp := range strings.Split(cfg.ZKAddress, ",") {
		zkTargets = append(zkTargets, toAddr("ZKAddress", nodePeer, strings.TrimSpace(hp))...)
	}
	if u := cfg.TracesURL(); u != "" {
		toAddr("the trace exporter", nodePeer, u)
	}
	toAddr("the peers' ReplicaAddress", nodePeer, cfg.AdvertiseAddress())
	if prom, ok := ix.workloadNamed("Deployment", "prometheus"); ok {
		if n, err := strconv.Atoi(node.template.Annotations["prometheus.io/port"]); err == nil {
			if cp, ok := containerPort(&node.template.Spec, intstr.FromInt32(int32(n))); ok {
				flows = append(flows, flow{"Prometheus' scrape", workloadPeer(prom), []podPort{{node, cp}}})
			}
		}
	}
	if grafana, ok := ix.workloadNamed("Deployment", "grafana"); ok {
		for _, u := range grafanaURLs {
			toAddr("the Grafana datasource", workloadPeer(grafana), u)
		}
	}
	for _, svc := range ix.services {
		if svc.Spec.Type == corev1.ServiceTypeNodePort || svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
			for _, sp := range svc.Spec.Ports {
				flows = append(flows, flow{fmt.Sprintf("%s Service %s", svc.Spec.Type, svc.Name), outsideClient, ix.serviceTargets(svc, sp.Port)})
			}
		}
	}
	for _, f := range flows {
		for _, dst := range f.targets {
			ok, err := ix.ingressAllowed(dst, f.from)
			switch {
			case err != nil:
				add("%v", err)
			case !ok:
				add("%s: a NetworkPolicy keeps %s from connecting to %v", f.why, f.from.name, dst)
			}
		}
	}

	// The protection the ZooKeeper policy exists for.
	if len(zkTargets) == 0 {
		add("ZKAddress %q reaches no pods", cfg.ZKAddress)
	}
	for _, dst := range zkTargets {
		others := []netPeer{outsideClient}
		for _, w := range ix.workloads {
			// ZooKeeper itself is left out: a pod cannot block access to itself.
			if w.meta != node.meta && w.meta != dst.w.meta {
				others = append(others, workloadPeer(w))
			}
		}
		for _, src := range others {
			if ok, err := ix.ingressAllowed(dst, src); err == nil && ok {
				add("%s can connect to ZooKeeper (%v): only the nodes may, it holds the ring and the cluster token", src.name, dst)
			}
		}
	}
	return probs
}

// checkNetworkPolicies reports networkProblems for the manifests.
func checkNetworkPolicies(t *testing.T, ix *index) {
	_, w := ix.statefulSet(t, nodeStatefulSet)
	cfg, err := loadNodeConfig(t, ix, w, w.podName())
	if err != nil {
		t.Fatal(err) // the details are NodeConfig's
	}
	for _, p := range networkProblems(ix, w, cfg, grafanaDatasourceURLs(t)) {
		t.Error(p)
	}
}

// checkRBAC: the binding ties an existing ClusterRole to an existing
// ServiceAccount that Prometheus runs as, and the role lets pod discovery
// list and watch pods.
func checkRBAC(t *testing.T, ix *index) {
	var boundSAs []string
	for _, o := range ix.byKind["ClusterRoleBinding"] {
		b := o.obj.(*rbacv1.ClusterRoleBinding)
		ro, ok := ix.get("ClusterRole", "", b.RoleRef.Name)
		if b.RoleRef.Kind != "ClusterRole" || b.RoleRef.APIGroup != rbacv1.GroupName || !ok {
			t.Errorf("%v: roleRef %+v is not a ClusterRole defined here", o, b.RoleRef)
			continue
		}
		role := ro.obj.(*rbacv1.ClusterRole)
		for _, s := range b.Subjects {
			if _, ok := ix.get("ServiceAccount", s.Namespace, s.Name); s.Kind != "ServiceAccount" || !ok {
				t.Errorf("%v: subject %+v is not a ServiceAccount defined here", o, s)
				continue
			}
			boundSAs = append(boundSAs, s.Namespace+"/"+s.Name)
		}
		for _, res := range []string{"pods", "endpoints", "services", "nodes"} {
			for _, verb := range []string{"get", "list", "watch"} {
				if !slices.ContainsFunc(role.Rules, func(r rbacv1.PolicyRule) bool {
					return slices.Contains(r.APIGroups, "") && slices.Contains(r.Resources, res) && slices.Contains(r.Verbs, verb)
				}) {
					t.Errorf("ClusterRole %s does not allow %s on %s", role.Name, verb, res)
				}
			}
		}
	}
	prom, ok := ix.get("Deployment", namespace, "prometheus")
	if !ok {
		t.Fatal("no Deployment prometheus")
	}
	sa := prom.obj.(*appsv1.Deployment).Spec.Template.Spec.ServiceAccountName
	if !slices.Contains(boundSAs, namespace+"/"+sa) {
		t.Errorf("Deployment prometheus runs as ServiceAccount %q, which no ClusterRoleBinding binds (bound: %v)", sa, boundSAs)
	}
}

// checkAddresses: the in-cluster addresses in the configuration name a
// Service defined here, on one of its ports.
func checkAddresses(t *testing.T, ix *index) {
	_, w := ix.statefulSet(t, nodeStatefulSet)
	env := nodeEnv(t, ix, w, w.template.Spec.Containers[0], w.podName())
	for _, hp := range strings.Split(env["ZKAddress"], ",") {
		checkServiceAddr(t, ix, "ZKAddress", strings.TrimSpace(hp))
	}
	if ep := env["OTEL_EXPORTER_OTLP_ENDPOINT"]; ep != "" {
		svc, port := checkServiceAddr(t, ix, "OTEL_EXPORTER_OTLP_ENDPOINT", ep)
		proto := env["OTEL_EXPORTER_OTLP_PROTOCOL"]
		if svc != nil && (proto == "grpc") != (port == 4317) {
			t.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL %q with port %d: OTLP/gRPC is 4317, OTLP/HTTP 4318", proto, port)
		}
	}
	for _, ds := range grafanaDatasourceURLs(t) {
		checkServiceAddr(t, ix, "Grafana datasource URL", ds)
	}
}

// checkServiceAddr resolves host:port like cluster DNS does from a pod in
// namespace and checks the Service has that port.
func checkServiceAddr(t *testing.T, ix *index, what, hostport string) (*corev1.Service, int32) {
	t.Helper()
	svc, port, err := ix.resolveServiceAddr(hostport)
	if err != nil {
		t.Errorf("%s %v", what, err)
	}
	return svc, port
}

// resolveServiceAddr resolves [scheme://]host:port[/path] like cluster DNS
// does from a pod in namespace: host is a Service, or a pod's name under a
// headless Service. The Service must have that port.
func (ix *index) resolveServiceAddr(addr string) (*corev1.Service, int32, error) {
	hostport := addr
	if _, rest, ok := strings.Cut(hostport, "://"); ok {
		hostport = rest
	}
	hostport, _, _ = strings.Cut(hostport, "/")
	host, portStr, ok := strings.Cut(hostport, ":")
	port, err := strconv.Atoi(portStr)
	if !ok || err != nil {
		return nil, 0, fmt.Errorf("%q: want host:port", addr)
	}
	inNamespace := func(rest string) bool {
		return rest == "" || rest == namespace || rest == namespace+".svc" || rest == namespace+".svc.cluster.local"
	}
	name, rest, _ := strings.Cut(host, ".")
	headlessPod := false
	if !inNamespace(rest) {
		// <pod>.<headless Service>.<namespace>...
		name, rest, _ = strings.Cut(rest, ".")
		if rest == "" || !inNamespace(rest) {
			return nil, 0, fmt.Errorf("%q: not a Service in namespace %s", addr, namespace)
		}
		headlessPod = true
	}
	o, found := ix.get("Service", namespace, name)
	if !found {
		return nil, 0, fmt.Errorf("%q: no Service %s", addr, name)
	}
	svc := o.obj.(*corev1.Service)
	if headlessPod && svc.Spec.ClusterIP != corev1.ClusterIPNone {
		return nil, 0, fmt.Errorf("%q: Service %s is not headless: it gives pods no DNS names", addr, name)
	}
	if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return int(p.Port) == port }) {
		return nil, 0, fmt.Errorf("%q: Service %s has no port %d", addr, name, port)
	}
	return svc, int32(port), nil
}

func checkApplySize(t *testing.T, objs []object) {
	for _, o := range objs {
		b, err := json.Marshal(o.obj)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > lastAppliedLimit {
			t.Errorf("%v is %d bytes: client-side `kubectl apply` cannot store it in its last-applied annotation (256 KiB); split it", o, len(b))
		}
	}
}

// ---------------------------------------------------------------------------
// Generated ConfigMaps

// generatedConfigMap is a ConfigMap whose data are copies of repository
// files, rewritten by -update and compared by the Generated check.
type generatedConfigMap struct {
	file    string // manifest under k8s/
	name    string // ConfigMap name
	app     string // app label
	sources string // description for the header comment
	// data reads the files as the ConfigMap must hold them.
	data func() (map[string]string, error)
}

var generatedConfigMaps = []generatedConfigMap{
	{"observability/prometheus.yaml", "prometheus-config", "prometheus", "prometheus/prometheus-k8s.yml",
		func() (map[string]string, error) {
			b, err := os.ReadFile(filepath.Join(repoRoot, "prometheus", "prometheus-k8s.yml"))
			return map[string]string{"prometheus.yml": string(b)}, err
		}},
	{"observability/prometheus.yaml", "prometheus-rules", "prometheus", "prometheus/rules/*.yml",
		globData(nil, "prometheus/rules/*.yml")},
	{"observability/grafana.yaml", "grafana-datasources", "grafana", "grafana/provisioning/datasources/",
		globData(k8sDatasource, "grafana/provisioning/datasources/*.yml", "grafana/provisioning/datasources/*.yaml")},
	{"observability/grafana.yaml", "grafana-dashboard-providers", "grafana", "grafana/provisioning/dashboards/",
		globData(nil, "grafana/provisioning/dashboards/*.yml", "grafana/provisioning/dashboards/*.yaml")},
	{"observability/grafana.yaml", "grafana-dashboards", "grafana", "grafana/dashboards/*.json",
		globData(nil, "grafana/dashboards/*.json")},
}

// globData reads the files matching the patterns (relative to the
// repository root) into a map keyed by base name, through transform.
func globData(transform func(string) string, patterns ...string) func() (map[string]string, error) {
	return func() (map[string]string, error) {
		data := map[string]string{}
		for _, p := range patterns {
			files, err := filepath.Glob(filepath.Join(repoRoot, filepath.FromSlash(p)))
			if err != nil {
				return nil, err
			}
			for _, f := range files {
				b, err := os.ReadFile(f)
				if err != nil {
					return nil, err
				}
				key := filepath.Base(f)
				if _, dup := data[key]; dup {
					return nil, fmt.Errorf("two files named %s", key)
				}
				s := string(b)
				if transform != nil {
					s = transform(s)
				}
				data[key] = s
			}
		}
		return data, nil
	}
}

var promURLRE = regexp.MustCompile(`http://([A-Za-z0-9.-]+):9090`)

// k8sDatasource points a datasource file at the in-namespace Prometheus
// Service. The docker-compose name prometheus:9090 resolves in the
// namespace too, so usually the file is copied unchanged.
func k8sDatasource(s string) string {
	return promURLRE.ReplaceAllStringFunc(s, func(u string) string {
		host := promURLRE.FindStringSubmatch(u)[1]
		if host == "prometheus" || strings.HasPrefix(host, "prometheus."+namespace) {
			return u
		}
		return "http://prometheus:9090"
	})
}

// render writes the ConfigMap document, data as YAML literal blocks.
func (g generatedConfigMap) render(data map[string]string) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "# Generated from %s by `go test ./k8s -run TestManifests -update`.\n# Do not edit: edit the files and regenerate.\n", g.sources)
	fmt.Fprintf(&b, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\n  namespace: %s\n  labels:\n    app: %s\n    app.kubernetes.io/part-of: goblocks\n", g.name, namespace, g.app)
	if len(data) == 0 {
		b.WriteString("data: {}\n")
		return b.String(), nil
	}
	b.WriteString("data:\n")
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		key := k
		if !plainKeyRE.MatchString(k) {
			q, _ := json.Marshal(k)
			key = string(q)
		}
		fmt.Fprintf(&b, "  %s: %s\n", key, yamlScalar(data[k], "    "))
	}
	// The rendering must decode back to exactly the files.
	doc := b.String()
	var cm corev1.ConfigMap
	if err := yaml.UnmarshalStrict([]byte(doc), &cm); err != nil {
		return "", fmt.Errorf("rendered ConfigMap does not decode: %w", err)
	}
	for k, v := range data {
		if cm.Data[k] != v {
			return "", fmt.Errorf("rendered key %s does not round-trip", k)
		}
	}
	return doc, nil
}

// plainKeyRE matches file names that YAML reads as plain strings (never as
// a number, boolean or null), so they need no quotes.
var plainKeyRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*\.[A-Za-z]+$`)

// yamlScalar renders s as a literal block scalar indented by indent, or as
// a JSON (double-quoted YAML) string when a literal block cannot hold it.
func yamlScalar(s, indent string) string {
	quoted, _ := json.Marshal(s)
	if s == "" || strings.ContainsAny(s, "\r\t\x00") || !isPrintable(s) {
		return string(quoted)
	}
	header := "|"
	if s[0] == ' ' || s[0] == '\n' {
		header += strconv.Itoa(len(indent)) // explicit indentation
	}
	switch {
	case !strings.HasSuffix(s, "\n"):
		header += "-"
	case strings.HasSuffix(s, "\n\n"):
		header += "+"
	}
	body := strings.TrimSuffix(s, "\n")
	var b strings.Builder
	b.WriteString(header)
	for _, line := range strings.Split(body, "\n") {
		b.WriteString("\n")
		if line != "" {
			b.WriteString(indent + line)
		}
	}
	return b.String()
}

func isPrintable(s string) bool {
	for _, r := range s {
		if r != '\n' && (r < 0x20 || r == 0x7f || r == 0xfeff) {
			return false
		}
	}
	return true
}

// regenerate replaces the ConfigMap's document in its manifest file.
func (g generatedConfigMap) regenerate() error {
	data, err := g.data()
	if err != nil {
		return err
	}
	doc, err := g.render(data)
	if err != nil {
		return err
	}
	text, err := os.ReadFile(g.file)
	if err != nil {
		return err
	}
	docs := splitDocs(string(text))
	replaced := false
	for i, d := range docs {
		if isEmptyDoc(d) {
			continue
		}
		kind, _, meta, err := decodeDoc([]byte(d))
		if err == nil && kind == "ConfigMap" && meta.Name == g.name {
			docs[i] = doc
			replaced = true
		}
	}
	if !replaced {
		return fmt.Errorf("%s has no ConfigMap %s to replace", g.file, g.name)
	}
	out := strings.Join(docs, "---\n")
	if out == string(text) {
		return nil
	}
	return os.WriteFile(g.file, []byte(out), 0o644)
}

// checkGenerated: every embedded ConfigMap holds exactly the current files.
func checkGenerated(t *testing.T, ix *index) {
	for _, g := range generatedConfigMaps {
		want, err := g.data()
		if err != nil {
			t.Errorf("%s: %v", g.name, err)
			continue
		}
		cm, ok := ix.configMaps[namespace+"/"+g.name]
		if !ok {
			t.Errorf("no ConfigMap %s in %s", g.name, g.file)
			continue
		}
		for k, v := range want {
			if got, ok := cm.Data[k]; !ok {
				t.Errorf("ConfigMap %s lacks %s (from %s): run `go test ./k8s -run TestManifests -update`", g.name, k, g.sources)
			} else if got != v {
				t.Errorf("ConfigMap %s key %s differs from %s: run `go test ./k8s -run TestManifests -update`", g.name, k, g.sources)
			}
		}
		for k := range cm.Data {
			if _, ok := want[k]; !ok {
				t.Errorf("ConfigMap %s key %s has no source file in %s any more: run `go test ./k8s -run TestManifests -update`", g.name, k, g.sources)
			}
		}
		if len(want) == 0 {
			t.Logf("ConfigMap %s: no files match %s yet", g.name, g.sources)
		}
	}
}

// ---------------------------------------------------------------------------
// Prometheus

type relabelConfig struct {
	SourceLabels []string `json:"source_labels"`
	Separator    *string  `json:"separator"`
	Regex        *string  `json:"regex"`
	TargetLabel  string   `json:"target_label"`
	Replacement  *string  `json:"replacement"`
	Action       string   `json:"action"`
}

type promConfig struct {
	Global struct {
		ScrapeInterval string `json:"scrape_interval"`
	} `json:"global"`
	RuleFiles     []string `json:"rule_files"`
	ScrapeConfigs []struct {
		JobName             string `json:"job_name"`
		MetricsPath         string `json:"metrics_path"`
		KubernetesSDConfigs []struct {
			Role       string `json:"role"`
			Namespaces struct {
				Names []string `json:"names"`
			} `json:"namespaces"`
		} `json:"kubernetes_sd_configs"`
		RelabelConfigs []relabelConfig `json:"relabel_configs"`
	} `json:"scrape_configs"`
}

// relabel applies Prometheus' relabelling to a target's labels; nil means
// the target is dropped.
func relabel(t *testing.T, lset map[string]string, rcs []relabelConfig) map[string]string {
	t.Helper()
	out := maps(lset)
	for _, rc := range rcs {
		sep, regex, repl := ";", "(.*)", "$1"
		if rc.Separator != nil {
			sep = *rc.Separator
		}
		if rc.Regex != nil {
			regex = *rc.Regex
		}
		if rc.Replacement != nil {
			repl = *rc.Replacement
		}
		re, err := regexp.Compile("^(?:" + regex + ")$")
		if err != nil {
			t.Fatalf("relabel regex %q: %v", regex, err)
		}
		vals := make([]string, len(rc.SourceLabels))
		for i, l := range rc.SourceLabels {
			vals[i] = out[l]
		}
		val := strings.Join(vals, sep)
		switch action := cmpOr(rc.Action, "replace"); action {
		case "keep":
			if !re.MatchString(val) {
				return nil
			}
		case "drop":
			if re.MatchString(val) {
				return nil
			}
		case "replace":
			m := re.FindStringSubmatchIndex(val)
			if m == nil {
				continue
			}
			if res := string(re.ExpandString(nil, repl, val, m)); res == "" {
				delete(out, rc.TargetLabel)
			} else {
				out[rc.TargetLabel] = res
			}
		case "labelmap":
			for k, v := range maps(out) {
				if m := re.FindStringSubmatchIndex(k); m != nil {
					out[string(re.ExpandString(nil, repl, k, m))] = v
				}
			}
		default:
			t.Fatalf("relabel action %q: not simulated by this test", action)
		}
	}
	return out
}

func maps(m map[string]string) map[string]string {
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

var labelNameRE = regexp.MustCompile(`[^a-zA-Z0-9_]`)

// podTargets lists the targets Prometheus' pod discovery makes of the
// workloads' first pods: one per declared container port.
func podTargets(ix *index) []map[string]string {
	var targets []map[string]string
	for _, w := range ix.workloads {
		for _, c := range w.template.Spec.Containers {
			for _, p := range c.Ports {
				l := map[string]string{
					"__address__":                                 fmt.Sprintf("10.0.0.7:%d", p.ContainerPort),
					"__metrics_path__":                            "/metrics",
					"__meta_kubernetes_namespace":                 w.meta.Namespace,
					"__meta_kubernetes_pod_name":                  w.podName(),
					"__meta_kubernetes_pod_container_name":        c.Name,
					"__meta_kubernetes_pod_container_port_name":   p.Name,
					"__meta_kubernetes_pod_container_port_number": strconv.Itoa(int(p.ContainerPort)),
				}
				for k, v := range w.template.Labels {
					l["__meta_kubernetes_pod_label_"+labelNameRE.ReplaceAllString(k, "_")] = v
				}
				for k, v := range w.template.Annotations {
					l["__meta_kubernetes_pod_annotation_"+labelNameRE.ReplaceAllString(k, "_")] = v
				}
				targets = append(targets, l)
			}
		}
	}
	return targets
}

func readPromConfig(t *testing.T) promConfig {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "prometheus", "prometheus-k8s.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var pc promConfig
	if err := yaml.Unmarshal(b, &pc); err != nil {
		t.Fatalf("prometheus-k8s.yml: %v", err)
	}
	return pc
}

// checkPrometheusDiscovery runs the goblocks job's relabelling over the
// pods these manifests create: exactly the blockstore http ports are
// scraped, labelled with instance = pod = the pod name and the namespace,
// and the rule files are where the rules ConfigMap is mounted.
func checkPrometheusDiscovery(t *testing.T, ix *index) {
	pc := readPromConfig(t)
	sts, w := ix.statefulSet(t, nodeStatefulSet)
	var job = -1
	for i, sc := range pc.ScrapeConfigs {
		if sc.JobName == "goblocks" {
			job = i
		}
	}
	if job < 0 {
		t.Fatal("prometheus-k8s.yml has no job goblocks (the rules select job=\"goblocks\")")
	}
	sc := pc.ScrapeConfigs[job]
	if len(sc.KubernetesSDConfigs) != 1 || sc.KubernetesSDConfigs[0].Role != "pod" ||
		!slices.Equal(sc.KubernetesSDConfigs[0].Namespaces.Names, []string{namespace}) {
		t.Errorf("job goblocks: want one kubernetes_sd_config with role pod and namespaces [%s]", namespace)
	}
	var kept []map[string]string
	for _, target := range podTargets(ix) {
		if l := relabel(t, target, sc.RelabelConfigs); l != nil {
			kept = append(kept, l)
		}
	}
	if len(kept) != 1 {
		t.Fatalf("job goblocks keeps %d targets per pod set, want 1 (the blockstore http port): %v", len(kept), kept)
	}
	got := kept[0]
	pod := w.podName()
	for k, v := range map[string]string{
		"instance":  pod,
		"pod":       pod,
		"namespace": namespace,
		"__meta_kubernetes_pod_container_port_name":   "http",
		"__meta_kubernetes_pod_container_port_number": w.template.Annotations["prometheus.io/port"],
		"__meta_kubernetes_pod_label_app":             sts.Spec.Template.Labels["app"],
	} {
		if got[k] != v {
			t.Errorf("job goblocks target label %s = %q, want %q", k, got[k], v)
		}
	}
	if path := cmpOr(sc.MetricsPath, "/metrics"); path != w.template.Annotations["prometheus.io/path"] {
		t.Errorf("job goblocks scrapes %s but the pods announce prometheus.io/path %q", path, w.template.Annotations["prometheus.io/path"])
	}

	// The rule files must be where the Deployment mounts prometheus-rules.
	dep, ok := ix.get("Deployment", namespace, "prometheus")
	if !ok {
		t.Fatal("no Deployment prometheus")
	}
	spec := dep.obj.(*appsv1.Deployment).Spec.Template.Spec
	mountOf := func(cm string) string {
		for _, v := range spec.Volumes {
			if v.ConfigMap != nil && v.ConfigMap.Name == cm {
				for _, m := range spec.Containers[0].VolumeMounts {
					if m.Name == v.Name {
						return m.MountPath
					}
				}
			}
		}
		return ""
	}
	rules := mountOf("prometheus-rules")
	if len(pc.RuleFiles) == 0 {
		t.Error("prometheus-k8s.yml lists no rule_files")
	}
	for _, rf := range pc.RuleFiles {
		if rules == "" || filepath.Dir(rf) != rules {
			t.Errorf("rule_files %s is not in the prometheus-rules mount %q", rf, rules)
		}
	}
	cfgFile := mountOf("prometheus-config") + "/prometheus.yml"
	if !slices.Contains(spec.Containers[0].Args, "--config.file="+cfgFile) {
		t.Errorf("Prometheus is not started with --config.file=%s (args %v)", cfgFile, spec.Containers[0].Args)
	}
}

// checkPromtool runs `promtool check config` (which also checks the rule
// files) on a copy of prometheus-k8s.yml whose rule_files point at the
// repository's prometheus/rules. Debian's promtool is built without
// Kubernetes discovery; then the copy uses static targets instead (the
// discovery part is what PrometheusDiscovery checks).
func checkPromtool(t *testing.T) {
	const promtool = "/usr/bin/promtool"
	if _, err := os.Stat(promtool); err != nil {
		t.Skipf("%s not installed (make deps)", promtool)
	}
	dir := t.TempDir()
	probe := filepath.Join(dir, "probe.yml")
	if err := os.WriteFile(probe, []byte("scrape_configs:\n  - job_name: x\n    kubernetes_sd_configs:\n      - role: pod\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	k8sSD := exec.Command(promtool, "check", "config", probe).Run() == nil

	b, err := os.ReadFile(filepath.Join(repoRoot, "prometheus", "prometheus-k8s.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	rulesDir, err := filepath.Abs(filepath.Join(repoRoot, "prometheus", "rules"))
	if err != nil {
		t.Fatal(err)
	}
	if rfs, ok := cfg["rule_files"].([]any); ok {
		for i, rf := range rfs {
			rfs[i] = filepath.Join(rulesDir, filepath.Base(fmt.Sprint(rf)))
		}
	}
	if !k8sSD {
		t.Logf("%s lacks kubernetes_sd_configs: checking with static targets in its place", promtool)
		scs, _ := cfg["scrape_configs"].([]any)
		for _, sc := range scs {
			if m, ok := sc.(map[string]any); ok && m["kubernetes_sd_configs"] != nil {
				delete(m, "kubernetes_sd_configs")
				m["static_configs"] = []any{map[string]any{"targets": []any{"blockstore-0:3000"}}}
			}
		}
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	copyPath := filepath.Join(dir, "prometheus-k8s.yml")
	if err := os.WriteFile(copyPath, out, 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := exec.Command(promtool, "check", "config", copyPath).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check config: %v\n%s", err, res)
	}
	t.Logf("promtool check config:\n%s", res)
}

// ---------------------------------------------------------------------------
// Grafana

type grafanaDatasource struct {
	Name     string `json:"name"`
	Type     string `json:"type"`
	URL      string `json:"url"`
	JSONData struct {
		TimeInterval string `json:"timeInterval"`
	} `json:"jsonData"`
}

// grafanaDatasources lists the provisioned datasources as the Kubernetes
// ConfigMap holds them.
func grafanaDatasources(t *testing.T) []grafanaDatasource {
	t.Helper()
	data, err := generatedByName("grafana-datasources").data()
	if err != nil {
		t.Fatal(err)
	}
	var all []grafanaDatasource
	for name, s := range data {
		var f struct {
			Datasources []grafanaDatasource `json:"datasources"`
		}
		if err := yaml.Unmarshal([]byte(s), &f); err != nil {
			t.Errorf("datasource file %s: %v", name, err)
		}
		all = append(all, f.Datasources...)
	}
	return all
}

func grafanaDatasourceURLs(t *testing.T) []string {
	t.Helper()
	var urls []string
	for _, d := range grafanaDatasources(t) {
		if d.URL != "" {
			urls = append(urls, d.URL)
		}
	}
	return urls
}

func generatedByName(name string) generatedConfigMap {
	for _, g := range generatedConfigMaps {
		if g.name == name {
			return g
		}
	}
	panic("no generated ConfigMap " + name)
}

// checkGrafanaProvisioning: the Deployment mounts the provisioning
// ConfigMaps where Grafana reads them, and the dashboards where the
// dashboard providers look.
func checkGrafanaProvisioning(t *testing.T, ix *index) {
	dep, ok := ix.get("Deployment", namespace, "grafana")
	if !ok {
		t.Fatal("no Deployment grafana")
	}
	spec := dep.obj.(*appsv1.Deployment).Spec.Template.Spec
	mounts := map[string]string{} // ConfigMap -> mountPath
	for _, v := range spec.Volumes {
		if v.ConfigMap == nil {
			continue
		}
		for _, m := range spec.Containers[0].VolumeMounts {
			if m.Name == v.Name {
				mounts[v.ConfigMap.Name] = m.MountPath
			}
		}
	}
	for cm, want := range map[string]string{
		"grafana-datasources":         "/etc/grafana/provisioning/datasources",
		"grafana-dashboard-providers": "/etc/grafana/provisioning/dashboards",
	} {
		if mounts[cm] != want {
			t.Errorf("ConfigMap %s is mounted at %q, want %s", cm, mounts[cm], want)
		}
	}
	providers, err := generatedByName("grafana-dashboard-providers").data()
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range providers {
		var f struct {
			Providers []struct {
				Name    string `json:"name"`
				Options struct {
					Path string `json:"path"`
				} `json:"options"`
			} `json:"providers"`
		}
		if err := yaml.Unmarshal([]byte(s), &f); err != nil {
			t.Errorf("dashboard provider file %s: %v", name, err)
			continue
		}
		for _, p := range f.Providers {
			if p.Options.Path != mounts["grafana-dashboards"] {
				t.Errorf("dashboard provider %q (%s) reads %q but grafana-dashboards is mounted at %q", p.Name, name, p.Options.Path, mounts["grafana-dashboards"])
			}
		}
	}
	// $__rate_interval and step alignment assume the datasource's
	// timeInterval is the scrape interval.
	scrape := readPromConfig(t).Global.ScrapeInterval
	for _, d := range grafanaDatasources(t) {
		if d.Type == "prometheus" && d.JSONData.TimeInterval != "" && d.JSONData.TimeInterval != scrape {
			t.Errorf("Grafana datasource %s has timeInterval %s but prometheus-k8s.yml scrapes every %s", d.Name, d.JSONData.TimeInterval, scrape)
		}
	}
	env := map[string]string{}
	for _, e := range spec.Containers[0].Env {
		env[e.Name] = e.Value
	}
	if env["GF_SECURITY_ADMIN_USER"] != "admin" || env["GF_SECURITY_ADMIN_PASSWORD"] != "admin" {
		t.Errorf("Grafana's credentials are not the README's admin/admin")
	}
}

// The original README applies k8s/observability/jeager.yaml; that name
// stays as a link to the correctly spelled file.
func TestOriginalJaegerSpellingStillApplies(t *testing.T) {
	target, err := os.Readlink("observability/jeager.yaml")
	if err != nil || target != "jaeger.yaml" {
		t.Fatalf("observability/jeager.yaml: link to %q, %v; want a link to jaeger.yaml", target, err)
	}
}
