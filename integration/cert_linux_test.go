package integration_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// testCert is a throwaway self-signed certificate for 127.0.0.1, made once
// per test binary.
type testCert struct {
	CertFile, KeyFile string // PEM files, for servers outside the process
	Cert              tls.Certificate
	Pool              *x509.CertPool
	err               error
}

// testCertificate makes the test certificate on first use.
var testCertificate = sync.OnceValue(func() *testCert { c := makeCert(); return &c })

// certificate returns the test certificate, and fails the test if it
// could not be made.
func certificate(t testing.TB) *testCert {
	t.Helper()
	c := testCertificate()
	require.NoError(t, c.err)
	return c
}

// serverTLS returns a server configuration with the test certificate.
func serverTLS(t testing.TB) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{certificate(t).Cert}}
}

// clientTLS returns a client configuration that trusts the test certificate
// and verifies it for 127.0.0.1.
func clientTLS(t testing.TB) *tls.Config {
	return &tls.Config{RootCAs: certificate(t).Pool, ServerName: "127.0.0.1"}
}

func makeCert() testCert {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return testCert{err: err}
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "keepalive integration test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return testCert{err: err}
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return testCert{err: err}
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	c := testCert{CertFile: filepath.Join(tmpRoot, "cert.pem"), KeyFile: filepath.Join(tmpRoot, "key.pem"), Pool: x509.NewCertPool()}
	if err := os.WriteFile(c.CertFile, certPEM, 0o644); err != nil {
		return testCert{err: err}
	}
	if err := os.WriteFile(c.KeyFile, keyPEM, 0o600); err != nil {
		return testCert{err: err}
	}
	if c.Cert, err = tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return testCert{err: err}
	}
	c.Pool.AppendCertsFromPEM(certPEM)
	return c
}
