// Package zktest starts a real ZooKeeper server for tests, from Debian's
// zookeeper package (make test installs it). No registry or container is
// needed.
package zktest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Classpath of Debian's zookeeper package; its jar's manifest brings the
// rest. slf4j-simple makes ZooKeeper log at all.
const Classpath = "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar"

// Server is a running standalone ZooKeeper.
type Server struct {
	Addr string
	cfg  string
	logf *os.File
	cmd  *exec.Cmd
	done chan struct{}
}

// Start runs ZooKeeper on a free loopback port until the test ends. A
// short tickTime lets tests use sub-second session timeouts (sessions may
// be as short as two ticks).
func Start(t testing.TB) *Server {
	t.Helper()
	if _, err := os.Stat("/usr/share/java/zookeeper.jar"); err != nil {
		t.Fatalf("ZooKeeper is not installed (%v): run 'make test', which installs Debian's zookeeper package", err)
	}
	dir := t.TempDir()
	port := freePort(t)
	cfg := filepath.Join(dir, "zoo.cfg")
	conf := fmt.Sprintf(`tickTime=100
initLimit=10
syncLimit=5
dataDir=%s
clientPort=%d
clientPortAddress=127.0.0.1
maxClientCnxns=0
admin.enableServer=false
maxSessionTimeout=30000
4lw.commands.whitelist=ruok,srvr,mntr
`, dir, port)
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "zookeeper.log"))
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Addr: fmt.Sprintf("127.0.0.1:%d", port), cfg: cfg, logf: logf}
	if err := s.spawn(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Stop()
		logf.Close()
		if t.Failed() {
			if b, err := os.ReadFile(logf.Name()); err == nil {
				t.Logf("zookeeper log:\n%s", tail(string(b), 4000))
			}
		}
	})
	if err := s.waitReady(); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *Server) spawn() error {
	cmd := exec.Command("java", "-Xmx256m", "-cp", Classpath,
		"-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
		"org.apache.zookeeper.server.quorum.QuorumPeerMain", s.cfg)
	cmd.Stdout, cmd.Stderr = s.logf, s.logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start ZooKeeper: %w", err)
	}
	s.cmd, s.done = cmd, make(chan struct{})
	done := s.done
	go func() { _ = cmd.Wait(); close(done) }()
	return nil
}

func (s *Server) waitReady() error {
	deadline := time.Now().Add(60 * time.Second)
	for !s.ruok() {
		select {
		case <-s.done:
			b, _ := os.ReadFile(s.logf.Name())
			return fmt.Errorf("ZooKeeper exited: %s", tail(string(b), 4000))
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("ZooKeeper did not answer ruok within 60s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// Restart kills the server and starts it again on the same port and data
// directory: sessions survive if their clients reconnect within the
// session timeout, as with a real ZooKeeper restart.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	if err := s.spawn(); err != nil {
		t.Fatal(err)
	}
	if err := s.waitReady(); err != nil {
		t.Fatal(err)
	}
}

// Stop kills the server and waits for it.
func (s *Server) Stop() {
	_ = s.cmd.Process.Kill()
	<-s.done
}

func (s *Server) ruok() bool {
	c, err := net.DialTimeout("tcp", s.Addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("ruok")); err != nil {
		return false
	}
	line, _ := bufio.NewReader(c).ReadString('\n')
	return strings.HasPrefix(line, "imok")
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
