//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	goblocks "github.com/goblocks/goblocks/client"
)

// The lab under test gets its own project name and host ports, so a lab
// a developer runs (project goblocks, ports 3001-3009, 9090) is untouched.
const (
	labProject    = "goblocks-e2e-lab"
	labPortPrefix = "410"  // node-N on 410N
	labNBDPrefix  = "4180" // node-N's NBD server on 4180N
	labPromPort   = "19090"
)

// lab runs the repository's docker-compose.yml with whichever Compose the
// machine has, as a user would (no make): plain `up --scale`.
type lab struct {
	t       *testing.T
	compose []string
	root    string
}

func newLab(t *testing.T) *lab {
	t.Helper()
	var compose []string
	if exec.Command("docker", "compose", "version").Run() == nil {
		compose = []string{"docker", "compose"}
	} else if _, err := exec.LookPath("docker-compose"); err == nil {
		compose = []string{"docker-compose"}
	} else {
		t.Fatal("neither the docker compose plugin nor docker-compose is installed")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	l := &lab{t: t, compose: compose, root: root}
	for _, img := range []string{nodeImage, zookeeperImage, envOr("PROMETHEUS_IMAGE", "prom/prometheus:v2.42.0")} {
		if exec.Command("docker", "image", "inspect", img).Run() != nil {
			t.Fatalf("image %s is missing: run make images image", img)
		}
	}
	l.down()                              // leftovers of a run that died
	resources.addDown(labProject, l.down) // a signal or -timeout removes it too
	t.Cleanup(func() {
		defer resources.dropDown(labProject)
		if t.Failed() {
			out, _ := l.run("logs", "--no-color", "--tail", "200")
			dir := filepath.Join(os.TempDir(), "goblocks-e2e-lab-logs")
			_ = os.MkdirAll(dir, 0o755)
			_ = os.WriteFile(filepath.Join(dir, "compose.log"), []byte(out), 0o644)
			t.Logf("compose logs in %s", dir)
		}
		l.down()
	})
	return l
}

func (l *lab) run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	full := append(append(slices.Clone(l.compose[1:]), "-p", labProject, "-f", filepath.Join(l.root, "docker-compose.yml")), args...)
	cmd := exec.CommandContext(ctx, l.compose[0], full...)
	cmd.Dir = l.root
	cmd.Env = append(os.Environ(),
		"IMAGE="+nodeImage, "ZOOKEEPER_IMAGE="+zookeeperImage,
		"NODE_PORT_PREFIX="+labPortPrefix, "NBD_PORT_PREFIX="+labNBDPrefix, "PROMETHEUS_PORT="+labPromPort)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (l *lab) must(args ...string) string {
	l.t.Helper()
	out, err := l.run(args...)
	if err != nil {
		l.t.Fatalf("compose %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (l *lab) down() { _, _ = l.run("down", "-v", "--remove-orphans", "-t", "10") }

// waitNodes runs the lab's own wait script: node-i answers on 410i, and
// every node reports a settled ring of n members.
func (l *lab) waitNodes(n int) {
	l.t.Helper()
	cmd := exec.Command(filepath.Join(l.root, "compose", "wait-nodes.sh"), strconv.Itoa(n), "240")
	cmd.Env = append(os.Environ(), "NODE_PORT_PREFIX="+labPortPrefix)
	if out, err := cmd.CombinedOutput(); err != nil {
		l.t.Fatalf("wait-nodes.sh %d: %v\n%s", n, err, out)
	}
}

func labURL(i int) string { return fmt.Sprintf("http://127.0.0.1:%s%d", labPortPrefix, i) }

// labNBD is the NBD URI of volume name through node-i's published port.
func labNBD(i int, name string) string {
	return fmt.Sprintf("nbd://127.0.0.1:%s%d/%s", labNBDPrefix, i, name)
}

// nbdcopy runs libnbd's nbdcopy (make e2e installs libnbd-bin).
func nbdcopy(t *testing.T, src, dst string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "nbdcopy", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("nbdcopy %s %s: %v\n%s", src, dst, err, out)
	}
}

// containerIPs maps each node container's number (the N of
// <project>_node_N or <project>-node-N) to its address.
func (l *lab) containerIPs() map[int]string {
	l.t.Helper()
	out := map[int]string{}
	for _, id := range strings.Fields(l.must("ps", "-q", "node")) {
		b, err := exec.Command("docker", "inspect", "-f",
			`{{index .Config.Labels "com.docker.compose.container-number"}} {{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}`, id).Output()
		if err != nil {
			l.t.Fatalf("docker inspect %s: %v", id, err)
		}
		num, ip, _ := strings.Cut(strings.TrimSpace(string(b)), " ")
		n, err := strconv.Atoi(num)
		if err != nil {
			l.t.Fatalf("container %s: number %q", id, num)
		}
		out[n] = ip
	}
	return out
}

// nodeStatus is what the lab test reads of /admin/cluster.
type labStatus struct {
	Node    string `json:"node"`
	Addr    string `json:"addr"`
	Members []struct {
		Name      string `json:"name"`
		PublicURL string `json:"public_url"`
	} `json:"members"`
}

func labGet(t *testing.T, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("GET %s: %d %q: %v", url, resp.StatusCode, body, err)
		}
	}
	return resp.StatusCode
}

// checkNames: host port 410i reaches node-i, which is the container
// numbered i, and every member advertises its host port as public URL
// (the /ui links).
func (l *lab) checkNames(n int) {
	l.t.Helper()
	ips := l.containerIPs()
	if len(ips) != n {
		l.t.Fatalf("%d node containers, want %d", len(ips), n)
	}
	for i := 1; i <= n; i++ {
		var st labStatus
		if code := labGet(l.t, labURL(i)+"/admin/cluster", &st); code != http.StatusOK {
			l.t.Fatalf("node-%d: /admin/cluster %d", i, code)
		}
		if st.Node != "node-"+strconv.Itoa(i) {
			l.t.Errorf("port %s%d reached %s, want node-%d", labPortPrefix, i, st.Node, i)
		}
		if host, _, _ := strings.Cut(st.Addr, ":"); host != ips[i] {
			l.t.Errorf("%s has address %s, container %d has %s: names do not follow container numbers", st.Node, st.Addr, i, ips[i])
		}
		if len(st.Members) != n {
			l.t.Errorf("%s sees %d members, want %d", st.Node, len(st.Members), n)
		}
		for _, m := range st.Members {
			num := strings.TrimPrefix(m.Name, "node-")
			if want := "http://localhost:" + labPortPrefix + num; m.PublicURL != want {
				l.t.Errorf("%s's public URL %q, want %q", m.Name, m.PublicURL, want)
			}
		}
	}
}

// TestComposeLab brings up the lab with plain `compose up --scale`, scales
// it to five nodes and back to four, and checks at each step that node-N
// is on host port 410N and is container N, and that no block is lost: the
// blocks written over HTTP and a volume written over NBD, which must read
// back byte-identical through other nodes after the join and the leave.
func TestComposeLab(t *testing.T) {
	l := newLab(t)
	l.must("up", "-d", "--scale", "node=3")
	l.waitNodes(3)
	l.checkNames(3)

	c, err := goblocks.New([]string{labURL(1), labURL(2), labURL(3)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	blocks := map[string][]byte{}
	for i := range 200 {
		id := "lab-" + strconv.Itoa(i)
		data := bytes.Repeat([]byte{byte(i), byte(i >> 8), 7}, 4096/3+1)[:4096]
		if _, err := c.Put(ctx, id, data); err != nil {
			t.Fatalf("put %s: %v", id, err)
		}
		blocks[id] = data
	}
	if _, err := c.CreateVolume(ctx, "labvol", 16<<20); err != nil {
		t.Fatal(err)
	}
	image := filepath.Join(t.TempDir(), "in.img")
	volData := make([]byte, 16<<20)
	for i := range volData {
		volData[i] = byte(i*7 + i>>12)
	}
	if err := os.WriteFile(image, volData, 0o600); err != nil {
		t.Fatal(err)
	}
	nbdcopy(t, image, labNBD(1, "labvol"))

	l.must("up", "-d", "--no-recreate", "--scale", "node=5")
	l.waitNodes(5)
	l.checkNames(5)

	// Scaling down removes the highest-numbered container, node-5: it
	// leaves gracefully and its port then says it is not running.
	l.must("up", "-d", "--no-recreate", "--scale", "node=4")
	l.waitNodes(4)
	l.checkNames(4)
	var refusal struct{ Error string }
	if code := labGet(t, labURL(5)+"/health", &refusal); code != http.StatusServiceUnavailable ||
		!strings.Contains(refusal.Error, "node-5 is not running") || !strings.Contains(refusal.Error, "node-1, node-2, node-3, node-4") {
		t.Errorf("port of the removed node: %d %q", code, refusal.Error)
	}

	lost := 0
	for _, i := range []int{1, 4} {
		one, err := goblocks.New([]string{labURL(i)})
		if err != nil {
			t.Fatal(err)
		}
		for id, want := range blocks {
			got, err := one.Get(ctx, id)
			if err != nil || !bytes.Equal(got, want) {
				lost++
				if lost <= 5 {
					t.Errorf("node-%d: %s: %v (%d bytes)", i, id, err, len(got))
				}
			}
		}
	}
	t.Logf("lab: 3 → 5 → 4 nodes, %d blocks read back through node-1 and node-4, %d lost", len(blocks), lost)
	for _, i := range []int{2, 4} {
		out := filepath.Join(t.TempDir(), fmt.Sprintf("out-%d.img", i))
		nbdcopy(t, labNBD(i, "labvol"), out)
		got, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, volData) {
			t.Errorf("volume labvol read through node-%d's NBD port differs from what was written before the join and leave", i)
		}
	}
}
