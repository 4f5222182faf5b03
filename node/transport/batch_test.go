package transport_test

import (
	"fmt"
	"testing"

	"github.com/goblocks/goblocks/node/transport"
	"github.com/goblocks/goblocks/node/wire"
)

// MetaBatch answers each id in order with the peer's metadata, or absent.
func TestMetaBatch(t *testing.T) {
	peer := newFakePeer(t, nil)
	var ids []string
	for i := range 10 {
		id := fmt.Sprint("m", i)
		ids = append(ids, id)
		if i%3 != 0 {
			peer.put(id, record(i+1))
		}
	}
	c := transport.NewClient(transport.Options{})
	defer c.Close()
	replies, err := c.MetaBatch(t.Context(), peer.addr(), ids)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range replies {
		want := record(i + 1)
		switch {
		case i%3 == 0 && r.Status != wire.FetchAbsent:
			t.Errorf("%s: status %q, want absent", ids[i], r.Status)
		case i%3 != 0 && (r.Status != wire.FetchFound || r.Meta.Version != want.Version || r.Meta.Checksum != want.Checksum || r.Meta.Size != len(want.Data)):
			t.Errorf("%s: %q %+v, want the meta of %+v", ids[i], r.Status, r.Meta, want.Meta())
		}
	}
	if requests, records := peer.counts(wire.PathBatchMeta); requests != 1 || records != len(ids) {
		t.Errorf("%d requests for %d ids, want 1 for %d", requests, records, len(ids))
	}
}
