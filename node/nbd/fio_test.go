package nbd

import (
	"context"
	"net"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/goblocks/goblocks/node/volume"
)

// droppingDevice acknowledges every tenth write without storing it: the
// deliberately broken configuration fio's verification must catch.
type droppingDevice struct {
	Device
	n atomic.Int64
}

func (d *droppingDevice) WriteAt(ctx context.Context, v volume.Volume, p []byte, off int64) error {
	if d.n.Add(1)%10 == 0 {
		return nil
	}
	return d.Device.WriteAt(ctx, v, p, off)
}

// fio's crc32c verification over this server passes, and fails when the
// device loses acknowledged writes: the check the node-level test relies
// on (node/app TestNBD) can fail.
func TestFioVerifyCatchesLostWrites(t *testing.T) {
	if _, err := exec.LookPath("fio"); err != nil {
		t.Fatal("fio not found on PATH: run make deps")
	}
	for _, broken := range []bool{false, true} {
		s := newTestServer(t)
		if broken {
			s.o.Device = &droppingDevice{Device: s.o.Device}
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go func() { _ = s.Serve(ln) }()
		fio := exec.Command("fio", "--name=verify", "--ioengine=nbd", "--uri=nbd://"+ln.Addr().String()+"/v",
			"--rw=randwrite", "--bs=4k", "--iodepth=16", "--size=1M", "--verify=crc32c", "--do_verify=1", "--verify_state_save=0")
		fio.Dir = t.TempDir()
		out, err := fio.CombinedOutput()
		_ = s.Close()
		switch {
		case !broken && err != nil:
			t.Fatalf("fio over the real device: %v\n%s", err, out)
		case broken && err == nil:
			t.Fatalf("fio did not notice lost writes:\n%s", out)
		case broken && !strings.Contains(string(out), "verify"):
			t.Fatalf("fio failed, but not on verification: %v\n%s", err, out)
		}
	}
}
