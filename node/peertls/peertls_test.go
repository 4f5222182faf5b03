package peertls_test

import (
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/goblocks/goblocks/node/peertls"
	"github.com/goblocks/goblocks/node/peertls/peertlstest"
)

func TestLoadRefusesMisconfiguration(t *testing.T) {
	dir := t.TempDir()
	ca := peertlstest.NewCA(t, dir, "cluster")
	other := peertlstest.NewCA(t, dir, "other")
	good := ca.Issue(t, "n1")
	foreign := other.Issue(t, "n2")
	for _, tc := range []struct {
		name  string
		files peertls.Files
		want  string
	}{
		{"cert only", peertls.Files{Cert: good.Cert}, "must be set together"},
		{"no CA", peertls.Files{Cert: good.Cert, Key: good.Key}, "must be set together"},
		{"missing CA file", peertls.Files{Cert: good.Cert, Key: good.Key, CA: dir + "/nope.pem"}, "TLSCA"},
		{"CA is not PEM", peertls.Files{Cert: good.Cert, Key: good.Key, CA: good.Key}, "no PEM certificate"},
		{"key of another cert", peertls.Files{Cert: good.Cert, Key: foreign.Key, CA: good.CA}, "TLSCert/TLSKey"},
		{"cert of another CA", peertls.Files{Cert: foreign.Cert, Key: foreign.Key, CA: good.CA}, "not usable with TLSCA"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := peertls.Load(tc.files)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Load: %v, want error containing %q", err, tc.want)
			}
		})
	}
	if _, err := peertls.Load(good); err != nil {
		t.Fatalf("Load(good): %v", err)
	}
}

// A peer with a certificate of the cluster's CA is verified; a client
// without one gets in unverified; a certificate of another CA fails the
// handshake.
func TestHandshakeTellsPeersFromClients(t *testing.T) {
	dir := t.TempDir()
	ca := peertlstest.NewCA(t, dir, "cluster")
	server, err := peertls.Load(ca.Issue(t, "n1"))
	if err != nil {
		t.Fatal(err)
	}
	peer, err := peertls.Load(ca.Issue(t, "n2"))
	if err != nil {
		t.Fatal(err)
	}
	other := peertlstest.NewCA(t, dir, "other")
	intruder, err := peertls.Load(other.Issue(t, "x"))
	if err != nil {
		t.Fatal(err)
	}
	// Not httptest's StartTLS: it installs its own certificate.
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, peertls.PeerVerified(r))
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are the point
	srv.Listener = tls.NewListener(srv.Listener, server.Server)
	srv.Start()
	defer srv.Close()
	srv.URL = strings.Replace(srv.URL, "http://", "https://", 1)

	get := func(cfg *tls.Config) (string, error) {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
		defer c.CloseIdleConnections()
		resp, err := c.Get(srv.URL)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	if got, err := get(peer.Client); err != nil || got != "true" {
		t.Errorf("peer: verified=%q err=%v, want true", got, err)
	}
	noCert := peer.Client.Clone()
	noCert.GetClientCertificate = nil
	if got, err := get(noCert); err != nil || got != "false" {
		t.Errorf("client without certificate: verified=%q err=%v, want false", got, err)
	}
	// The intruder trusts our server (it knows the CA) but its own
	// certificate is from another CA.
	forged := intruder.Client.Clone()
	forged.RootCAs = peer.Client.RootCAs
	if got, err := get(forged); err == nil {
		t.Errorf("certificate of another CA: got %q, want a handshake failure", got)
	}
	// And a node does not talk to a server outside the cluster.
	if _, err := get(intruder.Client); err == nil {
		t.Error("client trusting another CA reached the cluster's server")
	}
}
