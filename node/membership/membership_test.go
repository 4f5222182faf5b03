package membership

import (
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	good := Member{Name: "node-1", Addr: "10.0.0.1:3000", VNodes: 20}
	with := func(f func(*Member)) Member { m := good; f(&m); return m }
	ring := func(ms ...Member) RingState { return RingState{Epoch: 3, Members: ms} }
	for _, tc := range []struct {
		name string
		err  error // nil: valid
		want string
	}{
		{"good member", good.Validate(), ""},
		{"empty name", with(func(m *Member) { m.Name = "" }).Validate(), "member name"},
		{"name with slash", with(func(m *Member) { m.Name = "a/b" }).Validate(), "member name"},
		{"long name", with(func(m *Member) { m.Name = strings.Repeat("n", 256) }).Validate(), "member name"},
		{"address without port", with(func(m *Member) { m.Addr = "10.0.0.1" }).Validate(), "address"},
		{"zero vnodes", with(func(m *Member) { m.VNodes = 0 }).Validate(), "vnodes"},
		{"huge vnodes", with(func(m *Member) { m.VNodes = 1 << 20 }).Validate(), "vnodes"},
		{"tokens for every vnode", with(func(m *Member) { m.VNodes, m.Tokens = 2, []uint64{1, 2} }).Validate(), ""},
		{"more tokens than vnodes (taken over)", with(func(m *Member) { m.VNodes, m.Tokens = 1, []uint64{1, 2} }).Validate(), ""},
		{"too many tokens", with(func(m *Member) { m.Tokens = make([]uint64, 5000) }).Validate(), "tokens"},
		{"public URL", with(func(m *Member) { m.PublicURL = "http://localhost:3001" }).Validate(), ""},
		{"script as public URL", with(func(m *Member) { m.PublicURL = "javascript:alert(1)" }).Validate(), "public URL"},
		{"public URL without scheme", with(func(m *Member) { m.PublicURL = "localhost:3001" }).Validate(), "public URL"},
		{"huge public URL", with(func(m *Member) { m.PublicURL = "http://h/" + strings.Repeat("a", 3000) }).Validate(), "public URL"},
		{"good ring", ring(good, with(func(m *Member) { m.Name = "node-2" })).Validate(), ""},
		{"empty ring", ring().Validate(), "no members"},
		{"ring with a name twice", ring(good, good).Validate(), "twice"},
		{"ring with a bad member", ring(with(func(m *Member) { m.VNodes = -1 })).Validate(), "vnodes"},
		{"negative epoch", RingState{Epoch: -1, Members: []Member{good}}.Validate(), "epoch"},
		{"good barrier", Barrier{ID: "r1", Target: []Member{good}, Participants: []string{"node-1"}}.Validate(), ""},
		{"barrier without id", Barrier{Target: []Member{good}}.Validate(), "barrier id"},
		{"barrier with a bad target", Barrier{ID: "r1", Target: []Member{{Name: "x"}}}.Validate(), "address"},
		{"barrier with an empty participant", Barrier{ID: "r1", Participants: []string{""}}.Validate(), "participant"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			switch {
			case tc.want == "" && tc.err != nil:
				t.Fatalf("refused: %v", tc.err)
			case tc.want != "" && (tc.err == nil || !strings.Contains(tc.err.Error(), tc.want)):
				t.Fatalf("error %v, want one mentioning %q", tc.err, tc.want)
			}
		})
	}
}
