package zk

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/rs/zerolog"

	"github.com/goblocks/goblocks/internal/testkit"
	"github.com/goblocks/goblocks/node/membership"
	"github.com/goblocks/goblocks/node/membership/zk/zktest"
	"github.com/goblocks/goblocks/node/volume"
)

func TestVolumeCatalog(t *testing.T) {
	srv := zktest.Start(t)
	st, err := New(Options{Servers: []string{srv.Addr}, Root: "/vols", SessionTimeout: 2 * time.Second,
		Self: membership.Member{Name: "a", Addr: "a:1", VNodes: 20}, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cat := st.Volumes()
	now := time.Date(2026, 12, 2, 7, 0, 0, 0, time.UTC)

	// The session is established in the background.
	testkit.Eventually(t, 10*time.Second, func() error { _, _, err := cat.List(); return err })
	if vols, bad, err := cat.List(); err != nil || len(vols) != 0 || len(bad) != 0 {
		t.Fatalf("empty catalog: %v %v %v", vols, bad, err)
	}
	v, _ := volume.New("disk", 64<<20, 4096, now)
	if err := cat.Create(v); err != nil {
		t.Fatal(err)
	}
	if err := cat.Create(v); !errors.Is(err, volume.ErrExists) {
		t.Fatalf("second create: %v, want ErrExists", err)
	}
	if err := cat.Create(volume.Volume{Name: "x", Size: 100, BlockSize: 4096, State: volume.Ready}); !errors.Is(err, volume.ErrInvalid) {
		t.Fatalf("invalid create: %v", err)
	}
	if got, err := cat.Get("disk"); err != nil || got != v {
		t.Fatalf("Get: %+v %v, want %+v", got, err, v)
	}
	if _, err := cat.Get("none"); !errors.Is(err, volume.ErrNotFound) {
		t.Fatalf("Get missing: %v", err)
	}
	if _, err := cat.Get("../members"); !errors.Is(err, volume.ErrInvalid) {
		t.Fatalf("Get of a path: %v", err)
	}
	if err := cat.SetState("disk", volume.Deleting); err != nil {
		t.Fatal(err)
	}
	if got, _ := cat.Get("disk"); got.State != volume.Deleting {
		t.Fatalf("state %q after SetState", got.State)
	}

	// Another ZooKeeper client writes garbage and a record that claims
	// another name and size: both are refused, named, never served.
	conn, _, err := zk.Connect([]string{srv.Addr}, 2*time.Second, zk.WithLogger(zk.DefaultLogger))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for path, data := range map[string]string{
		"/vols/volumes/garbage": "\x00not json",
		"/vols/volumes/liar":    `{"name":"other","size":4096,"block_size":4096,"state":"ready"}`,
		"/vols/volumes/huge":    `{"name":"huge","size":-1,"block_size":4096,"state":"ready"}`,
	} {
		if _, err := conn.Create(path, []byte(data), 0, zk.WorldACL(zk.PermAll)); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"garbage", "liar", "huge"} {
		if _, err := cat.Get(name); err == nil || !strings.Contains(err.Error(), "/vols/volumes/"+name) {
			t.Errorf("Get(%s) = %v, want an error naming the znode", name, err)
		}
	}
	vols, bad, err := cat.List()
	if err != nil || len(vols) != 1 || vols[0].Name != "disk" || len(bad) != 3 {
		t.Fatalf("List: %+v, bad %v, %v; want disk and three refused records", vols, bad, err)
	}
	if len(st.Problems()) == 0 {
		t.Error("the refused records are not reported as problems")
	}

	if err := cat.Delete("disk"); err != nil {
		t.Fatal(err)
	}
	if err := cat.Delete("disk"); !errors.Is(err, volume.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
}
