package transports

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/edgeway/edgeway/agent/config"
)

// SSLOptions are the certificate settings shared by tls and dtls listeners
// (`ssl_options` / `dtls_options` in EMQX, written here as a sub-table).
type SSLOptions struct {
	CertFile   string `toml:"certfile"`
	KeyFile    string `toml:"keyfile"`
	CACertFile string `toml:"cacertfile"`
	// Verify is "verify_none" (default) or "verify_peer"; "none" and "peer"
	// are accepted too.
	Verify string `toml:"verify"`
	// FailIfNoPeerCert, with verify_peer, refuses clients without a certificate.
	FailIfNoPeerCert bool `toml:"fail_if_no_peer_cert"`
	// Versions such as "tlsv1.2", "tlsv1.3" (tls) or "dtlsv1.2" (dtls).
	Versions []string `toml:"versions"`
	// Ciphers are IANA cipher suite names (TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256…).
	Ciphers []string `toml:"ciphers"`
	// Depth is accepted for EMQX compatibility; Go verifies whole chains.
	Depth int `toml:"depth"`
}

// VerifyPeer reports whether client certificates are verified.
func (o *SSLOptions) VerifyPeer() bool { return o.Verify == "verify_peer" || o.Verify == "peer" }

// Validate implements config.Validator: files must exist and be readable
// now, so a fleet push with a typo fails before it reaches the listener.
func (o *SSLOptions) Validate() error {
	var errs []error
	switch o.Verify {
	case "", "verify_none", "none", "verify_peer", "peer":
	default:
		errs = append(errs, config.Field("verify", "must be verify_none or verify_peer, got %q", o.Verify))
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		errs = append(errs, config.Field("keyfile", "certfile and keyfile go together"))
	}
	for key, f := range map[string]string{"certfile": o.CertFile, "keyfile": o.KeyFile, "cacertfile": o.CACertFile} {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			errs = append(errs, config.Field(key, "%v", err))
		}
	}
	if o.VerifyPeer() && o.CACertFile == "" {
		errs = append(errs, config.Field("cacertfile", "verify_peer needs a cacertfile"))
	}
	for i, c := range o.Ciphers {
		if _, ok := cipherByName(c); !ok {
			errs = append(errs, config.Field(fmt.Sprintf("ciphers[%d]", i), "unknown cipher suite %q", c))
		}
	}
	return errors.Join(errs...)
}

// LoadCertificate loads the server certificate (nil, nil when none is set).
func (o *SSLOptions) LoadCertificate() (*tls.Certificate, error) {
	if o.CertFile == "" {
		return nil, nil
	}
	c, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("certfile/keyfile: %w", err)
	}
	return &c, nil
}

// LoadCAPool loads cacertfile (nil, nil when none is set).
func (o *SSLOptions) LoadCAPool() (*x509.CertPool, error) {
	if o.CACertFile == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(o.CACertFile)
	if err != nil {
		return nil, fmt.Errorf("cacertfile: %w", err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("cacertfile %s: no PEM certificates", o.CACertFile)
	}
	return p, nil
}

// CipherIDs maps Ciphers to suite ids (nil for the library defaults).
func (o *SSLOptions) CipherIDs() []uint16 {
	var ids []uint16
	for _, c := range o.Ciphers {
		if id, ok := cipherByName(c); ok {
			ids = append(ids, id)
		}
	}
	return ids
}

func cipherByName(name string) (uint16, bool) {
	for _, s := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		if strings.EqualFold(s.Name, name) {
			return s.ID, true
		}
	}
	// PSK suites are DTLS-only and not in crypto/tls's tables.
	switch strings.ToUpper(name) {
	case "TLS_PSK_WITH_AES_128_CCM", "TLS_PSK_WITH_AES_128_CCM_8", "TLS_PSK_WITH_AES_128_GCM_SHA256",
		"TLS_PSK_WITH_AES_128_CBC_SHA256", "TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256",
		"TLS_ECDHE_ECDSA_WITH_AES_128_CCM", "TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8":
		return 0, true
	}
	return 0, false
}

// subjectOf gives the CN and the full DN of a certificate.
func subjectOf(c *x509.Certificate) (cn, dn string) {
	if c == nil {
		return "", ""
	}
	return c.Subject.CommonName, c.Subject.String()
}
