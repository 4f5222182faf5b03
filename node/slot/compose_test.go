package slot

import (
	"context"
	"net"
	"slices"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// dnsServer answers PTR queries over UDP on loopback from names, first
// sending a reply with a wrong ID (which the client must skip).
func dnsServer(t *testing.T, names map[string]string) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			var q dnsmessage.Message
			if q.Unpack(buf[:n]) != nil || len(q.Questions) != 1 {
				continue
			}
			r := dnsmessage.Message{Header: dnsmessage.Header{ID: q.ID + 1, Response: true}, Questions: q.Questions}
			stray, _ := r.Pack()
			_, _ = pc.WriteTo(stray, from)
			r.ID = q.ID
			if target, ok := names[q.Questions[0].Name.String()]; ok {
				r.Answers = []dnsmessage.Resource{{
					Header: dnsmessage.ResourceHeader{Name: q.Questions[0].Name, Type: dnsmessage.TypePTR, Class: dnsmessage.ClassINET, TTL: 600},
					Body:   &dnsmessage.PTRResource{PTR: dnsmessage.MustNewName(target)},
				}}
			} else {
				r.RCode = dnsmessage.RCodeNameError
			}
			out, _ := r.Pack()
			_, _ = pc.WriteTo(out, from)
		}
	}()
	return pc.LocalAddr().String()
}

func TestPTR(t *testing.T) {
	server := dnsServer(t, map[string]string{"4.0.18.172.in-addr.arpa.": "goblocks_node_2.goblocks_default."})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	names, err := PTR(ctx, server, "172.18.0.4")
	if err != nil || !slices.Equal(names, []string{"goblocks_node_2.goblocks_default."}) || ReplicaNumber(names[0]) != 2 {
		t.Fatalf("PTR = %q, %v", names, err)
	}
	if names, err := PTR(ctx, server, "172.18.0.5"); err != nil || len(names) != 0 {
		t.Fatalf("unknown address: %q, %v", names, err)
	}
	if _, err := PTR(ctx, server, "::1"); err == nil {
		t.Fatal("IPv6 address accepted")
	}
}
