package auth

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeway/edgeway/agent/config"
	"github.com/edgeway/edgeway/agent/gateway"
)

const secretPassword = "pa55-SECRET-x9"

// seenRequest is what the auth service received.
type seenRequest struct {
	Method      string
	Path        string
	Query       url.Values
	Header      http.Header
	Body        map[string]string
	PeerCertCN  string
	RawBodySize int
}

// authService is a real HTTP server that records requests and answers
// with a fixed status and body.
type authService struct {
	mu     sync.Mutex
	seen   []seenRequest
	status int
	body   string
	block  chan struct{} // when set, the handler waits on it or the request's end
}

func (s *authService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	sr := seenRequest{Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(), Header: r.Header.Clone(), RawBodySize: len(raw)}
	if len(raw) > 0 {
		_ = json.Unmarshal(raw, &sr.Body)
	}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		sr.PeerCertCN = r.TLS.PeerCertificates[0].Subject.CommonName
	}
	s.mu.Lock()
	s.seen = append(s.seen, sr)
	status, body, block := s.status, s.body, s.block
	s.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-r.Context().Done():
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

func (s *authService) requests() []seenRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]seenRequest(nil), s.seen...)
}

func (s *authService) only(t *testing.T) seenRequest {
	t.Helper()
	r := s.requests()
	if len(r) != 1 {
		t.Fatalf("service saw %d requests, want 1", len(r))
	}
	return r[0]
}

// syncBuffer collects log output written from the authenticating goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func newHTTPAuth(t *testing.T, spec *HTTPSpec, profile string) (*HTTP, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	h, err := NewHTTP(spec, gateway.AuthnEnv{SecurityProfile: profile, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h, logs
}

func specFor(u string) *HTTPSpec {
	s := NewHTTPSpec()
	s.URL = u
	return s
}

func fullClient() *gateway.ClientInfo {
	ci := &gateway.ClientInfo{
		Gateway: "coap", ListenerID: "coap:udp:default", Protocol: "coap",
		ClientID: "meter-7", Username: "dev1", Password: []byte(secretPassword),
		Peer: netip.MustParseAddrPort("192.0.2.7:5683"), CertCN: "meter-7.example", CertDN: "CN=meter-7.example,O=Acme",
	}
	ci.SetField("endpoint_name", "urn:imei:123")
	ci.SetField("username", "must-not-replace-the-standard-key")
	return ci
}

func TestHTTPAnswers(t *testing.T) {
	future := time.Now().Add(time.Hour).Unix()
	for _, c := range []struct {
		name      string
		status    int
		body      string
		profile   string
		want      gateway.Decision
		superuser bool
		attrs     map[string]string
		expire    int64
		failure   bool // the backend-failure path (logged at Warn)
	}{
		{name: "allow with superuser, attrs and expiry", status: 200,
			body: `{"result":"allow","is_superuser":true,"client_attrs":{"role":"meter","site":"b7"},"expire_at":` + itoa(future) + `}`,
			want: gateway.Allow, superuser: true, attrs: map[string]string{"role": "meter", "site": "b7"}, expire: future},
		{name: "allow plain", status: 200, body: `{"result":"allow"}`, want: gateway.Allow},
		{name: "deny", status: 200, body: `{"result":"deny","is_superuser":true}`, want: gateway.Deny},
		{name: "ignore", status: 200, body: `{"result":"ignore"}`, want: gateway.Ignore},
		{name: "204 allows", status: 204, want: gateway.Allow},
		{name: "201 without a result ignores", status: 201, body: `{"ok":true}`, want: gateway.Ignore},
		{name: "202 with a result uses it", status: 202, body: `{"result":"deny"}`, want: gateway.Deny},
		{name: "expired credentials deny", status: 200, body: `{"result":"allow","expire_at":1000}`, want: gateway.Deny},
		{name: "500 hardened denies", status: 500, body: `{"result":"allow"}`, want: gateway.Deny, failure: true},
		{name: "500 legacy ignores", status: 500, body: `{"result":"allow"}`, profile: "legacy", want: gateway.Ignore, failure: true},
		{name: "403 hardened denies", status: 403, want: gateway.Deny, failure: true},
		{name: "302 is a failure, not followed", status: 302, want: gateway.Deny, failure: true},
		{name: "bad JSON hardened", status: 200, body: `{"result":`, want: gateway.Deny, failure: true},
		{name: "bad JSON legacy", status: 200, body: `<html>ok</html>`, profile: "legacy", want: gateway.Ignore, failure: true},
		{name: "unknown result", status: 200, body: `{"result":"yes"}`, want: gateway.Deny, failure: true},
		{name: "no result", status: 200, body: `{}`, want: gateway.Deny, failure: true},
		{name: "non-string attr", status: 200, body: `{"result":"allow","client_attrs":{"n":1}}`, want: gateway.Deny, failure: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			svc := &authService{status: c.status, body: c.body}
			srv := httptest.NewServer(svc)
			defer srv.Close()
			profile := c.profile
			if profile == "" {
				profile = "hardened"
			}
			h, logs := newHTTPAuth(t, specFor(srv.URL+"/check"), profile)
			r := h.Authenticate(context.Background(), fullClient())
			if r.Decision != c.want || r.IsSuperuser != c.superuser || !reflect.DeepEqual(r.ClientAttrs, c.attrs) {
				t.Fatalf("got %v superuser=%v attrs=%v (%s); want %v superuser=%v attrs=%v", r.Decision, r.IsSuperuser, r.ClientAttrs, r.Reason, c.want, c.superuser, c.attrs)
			}
			if c.expire != 0 && r.ExpireAt.Unix() != c.expire {
				t.Fatalf("ExpireAt %v; want unix %d", r.ExpireAt, c.expire)
			}
			if r.Decision == gateway.Deny && r.Reason == "" {
				t.Fatal("deny without a reason")
			}
			if got := strings.Contains(logs.String(), "level=WARN"); got != c.failure {
				t.Fatalf("warned=%v, want %v; logs:\n%s", got, c.failure, logs)
			}
			if strings.Contains(logs.String()+r.Reason, secretPassword) {
				t.Fatalf("password leaked: reason %q, logs:\n%s", r.Reason, logs)
			}
			if n := len(svc.requests()); n != 1 {
				t.Fatalf("service saw %d requests, want 1", n)
			}
		})
	}
}

func TestHTTPPostRequest(t *testing.T) {
	svc := &authService{status: 200, body: `{"result":"allow"}`}
	srv := httptest.NewServer(svc)
	defer srv.Close()
	spec := specFor(srv.URL + "/mqtt/auth")
	spec.Headers = map[string]config.Secret{"X-Token": "abc", "Content-Type": "application/json; charset=utf-8"}
	h, _ := newHTTPAuth(t, spec, "hardened")
	if r := h.Authenticate(context.Background(), fullClient()); r.Decision != gateway.Allow {
		t.Fatalf("got %v (%s)", r.Decision, r.Reason)
	}
	got := svc.only(t)
	if got.Method != "POST" || got.Path != "/mqtt/auth" {
		t.Fatalf("request %s %s", got.Method, got.Path)
	}
	if v := got.Header.Get("X-Token"); v != "abc" {
		t.Errorf("X-Token header %q", v)
	}
	if v := got.Header.Get("Content-Type"); v != "application/json; charset=utf-8" {
		t.Errorf("Content-Type %q: configured headers should win", v)
	}
	want := map[string]string{
		"clientid": "meter-7", "username": "dev1", "password": secretPassword,
		"peerhost": "192.0.2.7", "peerport": "5683", "protocol": "coap", "gateway": "coap",
		"listener": "coap:udp:default", "cert_common_name": "meter-7.example",
		"cert_subject": "CN=meter-7.example,O=Acme", "endpoint_name": "urn:imei:123",
	}
	if !reflect.DeepEqual(got.Body, want) {
		t.Fatalf("body\n got %v\nwant %v", got.Body, want)
	}
}

func TestHTTPGetRequest(t *testing.T) {
	svc := &authService{status: 200, body: `{"result":"allow"}`}
	srv := httptest.NewServer(svc)
	defer srv.Close()
	spec := specFor(srv.URL + "/check?src=edge")
	spec.Method = "get"
	spec.Headers = map[string]config.Secret{"X-Token": "abc"}
	h, _ := newHTTPAuth(t, spec, "hardened")
	if r := h.Authenticate(context.Background(), fullClient()); r.Decision != gateway.Allow {
		t.Fatalf("got %v (%s)", r.Decision, r.Reason)
	}
	got := svc.only(t)
	if got.Method != "GET" || got.RawBodySize != 0 || got.Header.Get("X-Token") != "abc" {
		t.Fatalf("request %s with %d body bytes, X-Token %q", got.Method, got.RawBodySize, got.Header.Get("X-Token"))
	}
	for k, v := range map[string]string{
		"src": "edge", "clientid": "meter-7", "username": "dev1", "password": secretPassword,
		"peerhost": "192.0.2.7", "peerport": "5683", "gateway": "coap", "listener": "coap:udp:default",
		"endpoint_name": "urn:imei:123",
	} {
		if got.Query.Get(k) != v {
			t.Errorf("query %s=%q; want %q", k, got.Query.Get(k), v)
		}
	}
}

func TestHTTPTimeouts(t *testing.T) {
	svc := &authService{status: 200, body: `{"result":"allow"}`, block: make(chan struct{})}
	srv := httptest.NewServer(svc)
	defer srv.Close()
	defer close(svc.block) // before srv.Close, so no handler is left waiting

	t.Run("spec timeout", func(t *testing.T) {
		spec := specFor(srv.URL)
		spec.Timeout = config.Duration(100 * time.Millisecond)
		h, logs := newHTTPAuth(t, spec, "hardened")
		r := h.Authenticate(context.Background(), fullClient())
		if r.Decision != gateway.Deny || !strings.Contains(r.Reason, "timeout") {
			t.Fatalf("got %v (%s); want deny after a timeout", r.Decision, r.Reason)
		}
		if !strings.Contains(logs.String(), "level=WARN") {
			t.Fatalf("no warning logged:\n%s", logs)
		}
	})
	t.Run("ctx deadline", func(t *testing.T) {
		h, _ := newHTTPAuth(t, specFor(srv.URL), "legacy") // 5 s timeout
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		if r := h.Authenticate(ctx, fullClient()); r.Decision != gateway.Ignore {
			t.Fatalf("legacy got %v (%s); want ignore", r.Decision, r.Reason)
		}
	})
	if n := len(svc.requests()); n != 2 {
		t.Fatalf("service saw %d requests, want 2 (the timeouts happened while it held them)", n)
	}
}

func TestHTTPConnectionRefused(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	u := srv.URL
	srv.Close()
	for _, method := range []string{"post", "get"} {
		spec := specFor(u + "/check")
		spec.Method = method
		h, logs := newHTTPAuth(t, spec, "hardened")
		r := h.Authenticate(context.Background(), fullClient())
		if r.Decision != gateway.Deny {
			t.Fatalf("%s: got %v; want deny", method, r.Decision)
		}
		// A GET carries the password in its URL; the error must not.
		if out := logs.String() + r.Reason; strings.Contains(out, secretPassword) || !strings.Contains(out, "refused") {
			t.Fatalf("%s: reason %q, logs:\n%s", method, r.Reason, logs)
		}
	}
}

func TestHTTPTLS(t *testing.T) {
	svc := &authService{status: 200, body: `{"result":"allow"}`}
	srv := quietTLSServer(svc, nil)
	defer srv.Close()
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	writePEM(t, caFile, "CERTIFICATE", srv.Certificate().Raw)

	t.Run("verified with cacertfile", func(t *testing.T) {
		spec := specFor(srv.URL)
		spec.TLS.CAFile = caFile
		h, _ := newHTTPAuth(t, spec, "hardened")
		if r := h.Authenticate(context.Background(), fullClient()); r.Decision != gateway.Allow {
			t.Fatalf("got %v (%s)", r.Decision, r.Reason)
		}
	})
	t.Run("unknown CA fails verification", func(t *testing.T) {
		before := len(svc.requests())
		h, logs := newHTTPAuth(t, specFor(srv.URL), "hardened")
		r := h.Authenticate(context.Background(), fullClient())
		if r.Decision != gateway.Deny || !strings.Contains(r.Reason, "certificate") {
			t.Fatalf("got %v (%s); want deny for an unverified certificate", r.Decision, r.Reason)
		}
		if !strings.Contains(logs.String(), "level=WARN") {
			t.Fatalf("no warning:\n%s", logs)
		}
		if len(svc.requests()) != before {
			t.Fatal("the request reached the service over an unverified connection")
		}
	})
	t.Run("server_name must match", func(t *testing.T) {
		spec := specFor(srv.URL)
		spec.TLS.CAFile = caFile
		spec.TLS.ServerName = "auth.other.test"
		h, _ := newHTTPAuth(t, spec, "hardened")
		if r := h.Authenticate(context.Background(), fullClient()); r.Decision != gateway.Deny {
			t.Fatalf("got %v; want deny for a name the certificate does not carry", r.Decision)
		}
	})
	t.Run("insecure_skip_verify", func(t *testing.T) {
		spec := specFor(srv.URL)
		spec.TLS.InsecureSkipVerify = true
		h, logs := newHTTPAuth(t, spec, "hardened")
		if r := h.Authenticate(context.Background(), fullClient()); r.Decision != gateway.Allow {
			t.Fatalf("got %v (%s)", r.Decision, r.Reason)
		}
		if !strings.Contains(logs.String(), "insecure_skip_verify") {
			t.Fatalf("skipping verification was not logged:\n%s", logs)
		}
	})
}

func TestHTTPClientCertificate(t *testing.T) {
	svc := &authService{status: 200, body: `{"result":"allow"}`}
	srv := quietTLSServer(svc, &tls.Config{ClientAuth: tls.RequireAnyClientCert})
	defer srv.Close()
	dir := t.TempDir()
	caFile, certFile, keyFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "client.pem"), filepath.Join(dir, "client.key")
	writePEM(t, caFile, "CERTIFICATE", srv.Certificate().Raw)
	writeClientCert(t, certFile, keyFile, "edgeway-box-1")

	spec := specFor(srv.URL)
	spec.TLS = HTTPTLS{CAFile: caFile, CertFile: certFile, KeyFile: keyFile}
	h, _ := newHTTPAuth(t, spec, "hardened")
	if r := h.Authenticate(context.Background(), fullClient()); r.Decision != gateway.Allow {
		t.Fatalf("got %v (%s)", r.Decision, r.Reason)
	}
	if cn := svc.only(t).PeerCertCN; cn != "edgeway-box-1" {
		t.Fatalf("service saw client certificate CN %q", cn)
	}

	// Without the client certificate the handshake fails.
	spec.TLS.CertFile, spec.TLS.KeyFile = "", ""
	h2, _ := newHTTPAuth(t, spec, "hardened")
	if r := h2.Authenticate(context.Background(), fullClient()); r.Decision != gateway.Deny {
		t.Fatalf("without a client certificate: %v", r.Decision)
	}
}

func TestHTTPConfigErrors(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "c.key")
	writeClientCert(t, certFile, keyFile, "x")
	notPEM := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(notPEM, []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	head := "[gateway.authtest]\n[[gateway.authtest.authentication]]\ntype = \"http\"\n"
	const k = "gateway.authtest.authentication[0]."
	for _, c := range []struct{ name, body, want string }{
		{"missing url", ``, k + `url: must not be empty`},
		{"ftp url", `url = "ftp://auth.example.com/x"`, k + `url: scheme must be http or https, got "ftp"`},
		{"no host", `url = "http:///check"`, k + `url: has no host`},
		{"unparsable url hides userinfo", `url = "http://user:s3cret@[::1/x"`, k + `url: not a valid URL`},
		{"method", "url = \"http://a.example/\"\nmethod = \"put\"", k + `method: must be "post" or "get", got "put"`},
		{"timeout", "url = \"http://a.example/\"\ntimeout = \"0s\"", k + `timeout: must be positive, got 0s`},
		{"pool_size", "url = \"http://a.example/\"\npool_size = 0", k + `pool_size: must be 1..1024, got 0`},
		{"header name", "url = \"http://a.example/\"\nheaders = { \"X Token\" = \"a\" }", k + `headers: bad header name "X Token"`},
		{"header value", "url = \"http://a.example/\"\nheaders = { \"X-Token\" = \"a\\r\\nEvil: 1\" }", k + `headers.X-Token: value contains a line break or NUL`},
		{"tls on http", "url = \"http://a.example/\"\n[gateway.authtest.authentication.tls]\nserver_name = \"a\"", k + `tls: set, but url is not https://`},
		{"missing cacertfile", "url = \"https://a.example/\"\n[gateway.authtest.authentication.tls]\ncacertfile = \"" + missing + "\"", k + `tls.cacertfile: open ` + missing + `: no such file or directory`},
		{"cacertfile without PEM", "url = \"https://a.example/\"\n[gateway.authtest.authentication.tls]\ncacertfile = \"" + notPEM + "\"", k + `tls.cacertfile: no PEM certificate in ` + notPEM},
		{"certfile alone", "url = \"https://a.example/\"\n[gateway.authtest.authentication.tls]\ncertfile = \"" + certFile + "\"", k + `tls.keyfile: must be set with tls.certfile`},
		{"keyfile alone", "url = \"https://a.example/\"\n[gateway.authtest.authentication.tls]\nkeyfile = \"" + keyFile + "\"", k + `tls.certfile: must be set with tls.keyfile`},
		{"missing keyfile", "url = \"https://a.example/\"\n[gateway.authtest.authentication.tls]\ncertfile = \"" + certFile + "\"\nkeyfile = \"" + missing + "\"", k + `tls.keyfile: stat ` + missing + `: no such file or directory`},
		{"unknown key", "url = \"https://a.example/\"\nssl = true", k + `ssl: unknown key`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := config.Parse([]byte(head+c.body+"\n"), "test.toml")
			if err == nil {
				t.Fatal("config.Parse succeeded")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error:\n%v\nwant it to contain:\n%s", err, c.want)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("error leaks the URL password: %v", err)
			}
		})
	}

	// A complete, valid section.
	chain := parseChain(t, head+"url = \"https://auth.example.com/check\"\nmethod = \"get\"\ntimeout = \"2s\"\nheaders = { \"X-Token\" = \"abc\" }\n"+
		"[gateway.authtest.authentication.tls]\ncertfile = \""+certFile+"\"\nkeyfile = \""+keyFile+"\"\nserver_name = \"auth.example.com\"\n")
	s := chain[0].Spec.(*HTTPSpec)
	if s.Method != "get" || s.Timeout.D() != 2*time.Second || s.Headers["X-Token"].Reveal() != "abc" || s.PoolSize != DefaultHTTPPoolSize {
		t.Fatalf("decoded spec %+v", s)
	}
	c, err := gateway.BuildChain(chain, gateway.AuthnEnv{})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	c.Close() // idempotent
}

// quietTLSServer is httptest.NewTLSServer without the log lines of the
// handshakes that the tests make fail on purpose.
func quietTLSServer(h http.Handler, conf *tls.Config) *httptest.Server {
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = conf
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	return srv
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func writeClientCert(t *testing.T, certFile, keyFile, cn string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "EC PRIVATE KEY", kder)
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
