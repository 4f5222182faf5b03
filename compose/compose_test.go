// Package compose_test checks docker-compose.yml without Docker: the
// services exist, the node service scales (no container_name, no host
// port: the gateway publishes node-N on 300N and its routes match its
// published ports), every file it mounts or reads exists in the
// repository, every named volume is declared, dependencies point at real
// services, and images are variables defaulting to the official names
// (the same defaults as the Makefile). When docker-compose or the docker
// compose plugin is on PATH, the file must also pass `config -q`.
package compose_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// repoRoot is where docker-compose.yml lives; tests run in compose/.
const repoRoot = ".."

// wantImages maps each service to the variable naming its image and the
// official image its default must be.
var wantImages = map[string]struct{ variable, repo string }{
	"zookeeper":  {"ZOOKEEPER_IMAGE", "zookeeper"},
	"node":       {"IMAGE", "goblocks"},
	"gateway":    {"IMAGE", "goblocks"},
	"prometheus": {"PROMETHEUS_IMAGE", "prom/prometheus"},
	"grafana":    {"GRAFANA_IMAGE", "grafana/grafana"},
	"jaeger":     {"JAEGER_IMAGE", "jaegertracing/all-in-one"},
}

// offlineServices must start without a registry, so they are in no
// profile; the others exist only on registries and must be in one.
var offlineServices = []string{"zookeeper", "node", "gateway", "prometheus"}

func readCompose(t *testing.T) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestComposeFile(t *testing.T) {
	for _, err := range check(readCompose(t), repoRoot) {
		t.Error(err)
	}
}

// TestComposeFileBroken proves the checks bite: each fault injected into a
// copy of the real file must be reported.
func TestComposeFileBroken(t *testing.T) {
	faults := []struct {
		name   string
		mutate func(f map[string]any)
		want   string
	}{
		{"missing env file", func(f map[string]any) {
			service(f, "node")["env_file"] = "compose/missing.env"
		}, "compose/missing.env"},
		{"missing bind mount", func(f map[string]any) {
			service(f, "prometheus")["volumes"] = []any{"./prometheus/nope.yml:/etc/prometheus/prometheus.yml:ro"}
		}, "prometheus/nope.yml"},
		{"container_name", func(f map[string]any) {
			service(f, "node")["container_name"] = "node"
		}, "container_name"},
		{"node port published", func(f map[string]any) {
			service(f, "node")["ports"] = []any{"3001-3009:3000"}
		}, "publishes host ports"},
		{"gateway ports not the routes", func(f map[string]any) {
			service(f, "gateway")["ports"] = []any{"3001-3009:3000"}
		}, "GatewayRoutes"},
		{"undeclared volume", func(f map[string]any) {
			service(f, "node")["volumes"] = []any{"other-data:/data"}
		}, `volume "other-data"`},
		{"unknown dependency", func(f map[string]any) {
			service(f, "node")["depends_on"] = []any{"zookeper"}
		}, `"zookeper"`},
		{"hard-coded image", func(f map[string]any) {
			service(f, "zookeeper")["image"] = "zookeeper:3.8"
		}, "ZOOKEEPER_IMAGE"},
		{"wrong default image", func(f map[string]any) {
			service(f, "jaeger")["image"] = "${JAEGER_IMAGE:-example/jaeger:1}"
		}, "jaegertracing/all-in-one"},
		{"missing service", func(f map[string]any) {
			delete(f["services"].(map[string]any), "grafana")
		}, `service "grafana" missing`},
		{"offline service in a profile", func(f map[string]any) {
			service(f, "prometheus")["profiles"] = []any{"observability"}
		}, "profile"},
		{"tracing on by default", func(f map[string]any) {
			service(f, "node")["environment"] = map[string]any{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4317"}
		}, "OTEL_EXPORTER_OTLP_ENDPOINT"},
	}
	for _, tc := range faults {
		t.Run(tc.name, func(t *testing.T) {
			var f map[string]any
			if err := yaml.Unmarshal(readCompose(t), &f); err != nil {
				t.Fatal(err)
			}
			tc.mutate(f)
			data, err := yaml.Marshal(f)
			if err != nil {
				t.Fatal(err)
			}
			errs := check(data, repoRoot)
			if !slices.ContainsFunc(errs, func(err error) bool { return strings.Contains(err.Error(), tc.want) }) {
				t.Errorf("no error mentioning %q; got %v", tc.want, errs)
			}
		})
	}
}

// TestComposeConfig runs `config -q` of whichever Compose the machine has.
// A copy of the file referencing a missing env file must be rejected, so a
// pass means something.
func TestComposeConfig(t *testing.T) {
	compose := composeCommand()
	if compose == nil {
		t.Skip("neither docker-compose nor the docker compose plugin is installed")
	}
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	run := func(file string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		args := append(compose[1:], "--project-directory", root, "-p", "composetest", "-f", file, "config", "-q")
		cmd := exec.CommandContext(ctx, compose[0], args...)
		cmd.Dir = root
		// Only the file's defaults: no variables from the caller's shell.
		cmd.Env = cleanEnv()
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run(filepath.Join(root, "docker-compose.yml")); err != nil {
		t.Fatalf("%s config -q: %v\n%s", strings.Join(compose, " "), err, out)
	}

	broken := bytes.Replace(readCompose(t), []byte("env_file: compose/node.env"), []byte("env_file: compose/missing.env"), 1)
	if bytes.Equal(broken, readCompose(t)) {
		t.Fatal("docker-compose.yml has no `env_file: compose/node.env` line to break")
	}
	file := filepath.Join(t.TempDir(), "docker-compose.yml")
	if err := os.WriteFile(file, broken, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := run(file); err == nil {
		t.Errorf("config -q accepted a file referencing a missing env file:\n%s", out)
	}
}

// TestMakefileDefaults keeps the Makefile's image variables equal to the
// compose file's defaults, so `make images` builds what compose runs.
func TestMakefileDefaults(t *testing.T) {
	mk, err := os.ReadFile(filepath.Join(repoRoot, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	var f composeFile
	if err := yaml.Unmarshal(readCompose(t), &f); err != nil {
		t.Fatal(err)
	}
	for name, want := range wantImages {
		m := regexp.MustCompile(`(?m)^` + want.variable + `\s*\?=\s*(\S+)`).FindSubmatch(mk)
		if m == nil {
			t.Errorf("Makefile does not set %s ?= ...", want.variable)
			continue
		}
		_, def, _ := imageVariable(f.Services[name].Image)
		if string(m[1]) != def {
			t.Errorf("Makefile %s = %s, docker-compose.yml default %s", want.variable, m[1], def)
		}
	}
}

// composeFile is the part of the Compose Specification the checks read.
type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image         string    `yaml:"image"`
	ContainerName string    `yaml:"container_name"`
	Ports         []string  `yaml:"ports"`
	Volumes       []string  `yaml:"volumes"`
	EnvFile       stringSet `yaml:"env_file"`
	DependsOn     stringSet `yaml:"depends_on"`
	Profiles      []string  `yaml:"profiles"`
	Environment   yaml.Node `yaml:"environment"`
}

// stringSet reads the Compose forms "x", [x, y] and {x: {...}, y: {...}}
// (depends_on with conditions) as a list of names.
type stringSet []string

func (s *stringSet) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		*s = []string{n.Value}
	case yaml.SequenceNode:
		return n.Decode((*[]string)(s))
	case yaml.MappingNode:
		for i := 0; i < len(n.Content); i += 2 {
			*s = append(*s, n.Content[i].Value)
		}
	default:
		return fmt.Errorf("line %d: want a string, list or map", n.Line)
	}
	return nil
}

// check returns every problem of the compose file data, resolving relative
// paths against dir.
func check(data []byte, dir string) []error {
	var f composeFile
	if err := yaml.Unmarshal(data, &f); err != nil {
		return []error{err}
	}
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	for _, name := range []string{"zookeeper", "node", "gateway", "prometheus", "grafana", "jaeger"} {
		if _, ok := f.Services[name]; !ok {
			add("service %q missing", name)
		}
	}
	for name, s := range f.Services {
		if want, ok := wantImages[name]; ok {
			variable, def, ok := imageVariable(s.Image)
			switch {
			case !ok || variable != want.variable:
				add("%s: image %q is not ${%s:-...}", name, s.Image, want.variable)
			case !strings.HasPrefix(def, want.repo+":"):
				add("%s: image default %q is not %s:<tag>", name, def, want.repo)
			}
		}
		inProfile := len(s.Profiles) > 0
		if offline := slices.Contains(offlineServices, name); offline && inProfile {
			add("%s: in profile %v, but the default `up` must start it (it works offline)", name, s.Profiles)
		} else if !offline && !inProfile && wantImages[name].repo != "" {
			add("%s: needs a registry, so it must be in a profile", name)
		}
		for _, file := range s.EnvFile {
			if !exists(dir, expand(file)) {
				add("%s: env_file %s does not exist", name, file)
			}
		}
		for _, v := range s.Volumes {
			source, _, _ := strings.Cut(expand(v), ":")
			if strings.HasPrefix(source, ".") || strings.HasPrefix(source, "/") {
				if !exists(dir, source) {
					add("%s: bind mount source %s does not exist", name, source)
				}
			} else if _, ok := f.Volumes[source]; !ok {
				add("%s: volume %q is not declared under volumes:", name, source)
			}
		}
		for _, dep := range s.DependsOn {
			if _, ok := f.Services[dep]; !ok {
				add("%s: depends_on %q, which is no service", name, dep)
			}
		}
	}

	if node, ok := f.Services["node"]; ok {
		if node.ContainerName != "" {
			add("node: container_name %q stops it from scaling", node.ContainerName)
		}
		if len(node.Ports) > 0 {
			add("node: publishes host ports %q: Docker would hand them out in start order, so node-2 could land on 3003; the gateway publishes the nodes", node.Ports)
		}
		if endpoint := environment(node.Environment)["OTEL_EXPORTER_OTLP_ENDPOINT"]; expand(endpoint) != "" {
			add("node: OTEL_EXPORTER_OTLP_ENDPOINT defaults to %q; tracing must be off without the observability profile", endpoint)
		}
	}
	if gw, ok := f.Services["gateway"]; ok {
		errs = append(errs, checkGateway(gw)...)
	}
	return errs
}

// checkGateway: each route's listening ports must be the container side
// of a published range of the same size, or a node's port would go
// nowhere.
func checkGateway(gw composeService) []error {
	var errs []error
	routes := environment(gw.Environment)["GatewayRoutes"]
	if routes == "" {
		return []error{errors.New("gateway: no GatewayRoutes in its environment")}
	}
	published := map[string]bool{}
	for _, p := range gw.Ports {
		spec, _, _ := strings.Cut(expand(p), "/")
		parts := strings.Split(spec, ":")
		host, container := parts[0], parts[len(parts)-1]
		if len(parts) < 2 || rangeLen(host) != rangeLen(container) || rangeLen(host) == 0 {
			errs = append(errs, fmt.Errorf("gateway: port %q: want HOSTRANGE:CONTAINERRANGE of the same size", p))
			continue
		}
		published[container] = true
	}
	for _, r := range strings.Split(routes, ",") {
		listen, _, _ := strings.Cut(strings.TrimSpace(r), ":")
		if !published[listen] {
			errs = append(errs, fmt.Errorf("gateway: GatewayRoutes listens on %s, which no ports entry publishes (%q)", listen, gw.Ports))
		}
	}
	return errs
}

// rangeLen is the number of ports of "A-B" or "A"; 0 when malformed.
func rangeLen(s string) int {
	a, b, ranged := strings.Cut(s, "-")
	if !ranged {
		b = a
	}
	x, err1 := strconv.Atoi(a)
	y, err2 := strconv.Atoi(b)
	if err1 != nil || err2 != nil || y < x {
		return 0
	}
	return y - x + 1
}

// imageVariable splits "${VAR:-default}" into VAR and default.
func imageVariable(image string) (variable, def string, ok bool) {
	m := regexp.MustCompile(`^\$\{([A-Za-z_][A-Za-z0-9_]*):-([^}]+)\}$`).FindStringSubmatch(image)
	if m == nil {
		return "", "", false
	}
	return m[1], m[2], true
}

var interpolation = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(:?-([^}]*))?\}`)

// expand interpolates like Compose with an empty environment: ${VAR:-x}
// and ${VAR-x} become x, ${VAR} becomes "", $$ becomes $.
func expand(s string) string {
	return interpolation.ReplaceAllStringFunc(s, func(m string) string {
		if m == "$$" {
			return "$"
		}
		return interpolation.FindStringSubmatch(m)[3]
	})
}

// environment reads a service's environment in list or map form.
func environment(n yaml.Node) map[string]string {
	env := map[string]string{}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			env[n.Content[i].Value] = n.Content[i+1].Value
		}
	case yaml.SequenceNode:
		for _, item := range n.Content {
			k, v, _ := strings.Cut(item.Value, "=")
			env[k] = v
		}
	}
	return env
}

func exists(dir, path string) bool {
	if !filepath.IsAbs(path) {
		path = filepath.Join(dir, path)
	}
	_, err := os.Stat(path)
	return err == nil
}

// service returns a service of a generically decoded compose file.
func service(f map[string]any, name string) map[string]any {
	return f["services"].(map[string]any)[name].(map[string]any)
}

// composeCommand is the docker compose v2 plugin if present, else
// docker-compose v1, else nil.
func composeCommand() []string {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := exec.LookPath("docker"); err == nil {
		if exec.CommandContext(ctx, "docker", "compose", "version").Run() == nil {
			return []string{"docker", "compose"}
		}
	}
	if _, err := exec.LookPath("docker-compose"); err == nil {
		return []string{"docker-compose"}
	}
	return nil
}

// cleanEnv is the environment minus the variables the compose file reads,
// so the check sees the file's own defaults.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasSuffix(k, "_IMAGE") || k == "IMAGE" || strings.HasPrefix(k, "COMPOSE_") ||
			strings.HasPrefix(k, "GOBLOCKS_") || strings.HasSuffix(k, "_PORT") || k == "NODE_PORT_PREFIX" {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// check-images.sh passes for an image the machine has and, for one it
// cannot find or pull, fails with the paragraph that says what to do.
func TestCheckImagesExplainsMissingImages(t *testing.T) {
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("docker is not installed")
	}
	if err := exec.Command("docker", "info").Run(); err != nil {
		t.Skip("the docker engine does not answer")
	}
	run := func(images ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "./check-images.sh", images...).CombinedOutput()
		return string(out), err
	}
	if out, err := run(); err != nil {
		t.Fatalf("no image to check: %v\n%s", err, out)
	}
	// A name no registry serves (.invalid never resolves).
	const missing = "registry.invalid/goblocks/no-such-image:1"
	out, err := run(missing)
	if err == nil {
		t.Fatalf("a missing image passed:\n%s", out)
	}
	for _, want := range []string{missing, "could not be pulled", "make up", "docker load"} {
		if !strings.Contains(out, want) {
			t.Errorf("the explanation lacks %q:\n%s", want, out)
		}
	}
}
