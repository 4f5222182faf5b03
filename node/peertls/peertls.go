// Package peertls builds the TLS configurations of mutual TLS between
// nodes: one listener serves clients (who need no certificate) and peers
// (who must present one signed by the cluster's CA to reach /internal/*).
//
// The key pair is re-read when its files change, so a certificate rotated
// in place (cert-manager, a renewed Secret) takes effect without a
// restart; a new CA needs a restart.
package peertls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"
)

// Files names the PEM files of a node's TLS identity.
type Files struct {
	Cert string // this node's certificate chain
	Key  string // its private key
	CA   string // the CA that signs every node's certificate
}

// Enabled reports whether any file is set; Load refuses a partial set.
func (f Files) Enabled() bool { return f.Cert != "" || f.Key != "" || f.CA != "" }

// Config holds the server and client sides of one node's TLS.
type Config struct {
	// Server verifies a client certificate when one is presented
	// (peers) and lets clients without one in (block API users);
	// PeerVerified tells the two apart per request.
	Server *tls.Config
	// Client presents the node's certificate and verifies the peer's
	// against the CA and the address dialed.
	Client *tls.Config
}

// Load reads the files and checks that the key pair matches and that the
// certificate is signed by the CA, so a misconfigured node stops at start
// instead of failing every handshake.
func Load(f Files) (*Config, error) {
	if f.Cert == "" || f.Key == "" || f.CA == "" {
		return nil, errors.New("TLSCert, TLSKey and TLSCA must be set together")
	}
	pool, err := LoadCA(f.CA)
	if err != nil {
		return nil, err
	}
	kp := &keyPair{certFile: f.Cert, keyFile: f.Key}
	cert, err := kp.current()
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("TLSCert %s: %w", f.Cert, err)
	}
	inter := x509.NewCertPool()
	for _, der := range cert.Certificate[1:] {
		if c, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(c)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots: pool, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return nil, fmt.Errorf("TLSCert %s is not usable with TLSCA %s (it must be signed by it and allow server and client auth): %w", f.Cert, f.CA, err)
	}
	return &Config{
		Server: &tls.Config{
			MinVersion:     tls.VersionTLS12,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return kp.current() },
			ClientAuth:     tls.VerifyClientCertIfGiven,
			ClientCAs:      pool,
		},
		Client: &tls.Config{
			MinVersion:           tls.VersionTLS12,
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return kp.current() },
			RootCAs:              pool,
		},
	}, nil
}

// LoadCA reads a PEM bundle of CA certificates.
func LoadCA(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("TLSCA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("TLSCA %s: no PEM certificate in it", file)
	}
	return pool, nil
}

// PeerVerified reports whether r came over TLS with a client certificate
// that verified against the CA (the handshake refuses an unverified one,
// so a presented certificate is a verified one).
func PeerVerified(r *http.Request) bool {
	return r.TLS != nil && len(r.TLS.VerifiedChains) > 0
}

// keyPair caches a certificate and reloads it when either file's
// modification time changes, checking at most once per recheck.
type keyPair struct {
	certFile, keyFile string

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   [2]time.Time
	checked time.Time
}

const recheck = 10 * time.Second

func (k *keyPair) current() (*tls.Certificate, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := time.Now()
	if k.cert != nil && now.Sub(k.checked) < recheck {
		return k.cert, nil
	}
	k.checked = now
	stamp, err := k.stamps()
	if err == nil && k.cert != nil && stamp == k.stamp {
		return k.cert, nil
	}
	cert, lerr := tls.LoadX509KeyPair(k.certFile, k.keyFile)
	if lerr != nil {
		if k.cert != nil {
			// Half-written files during a rotation: keep serving the
			// pair that works until both files are consistent again.
			return k.cert, nil
		}
		return nil, fmt.Errorf("TLSCert/TLSKey: %w", lerr)
	}
	k.cert, k.stamp = &cert, stamp
	return k.cert, nil
}

func (k *keyPair) stamps() ([2]time.Time, error) {
	var s [2]time.Time
	for i, f := range []string{k.certFile, k.keyFile} {
		fi, err := os.Stat(f)
		if err != nil {
			return s, err
		}
		s[i] = fi.ModTime()
	}
	return s, nil
}
