package auth

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/edgeway/edgeway/agent/config"
	"github.com/edgeway/edgeway/agent/gateway"
)

// Defaults of an http authenticator.
const (
	DefaultHTTPTimeout  = 5 * time.Second
	DefaultHTTPPoolSize = 8
)

// maxHTTPBody bounds what is read of an answer; EMQX's answer is a few
// hundred bytes.
const maxHTTPBody = 64 << 10

func init() {
	gateway.RegisterAuthn(gateway.AuthnType{
		Name:    "http",
		NewSpec: func() any { return NewHTTPSpec() },
		New: func(spec any, env gateway.AuthnEnv) (gateway.Authenticator, error) {
			s, ok := spec.(*HTTPSpec)
			if !ok {
				return nil, fmt.Errorf("http: spec is %T, want *auth.HTTPSpec", spec)
			}
			return NewHTTP(s, env)
		},
	})
}

// HTTPSpec is the settings of a `type = "http"` authenticator.
type HTTPSpec struct {
	URL string `toml:"url"`
	// Method is "post" (JSON body, default) or "get" (query parameters).
	Method string `toml:"method"`
	// Timeout bounds one request, connection included; the client's
	// connect deadline (the ctx of Authenticate) applies too.
	Timeout config.Duration `toml:"timeout"`
	// Headers are added to every request; values are secrets (tokens).
	Headers map[string]config.Secret `toml:"headers"`
	// PoolSize bounds the connections kept to the service (EMQX's pool_size).
	PoolSize int     `toml:"pool_size"`
	TLS      HTTPTLS `toml:"tls"`
}

// HTTPTLS is the [...authentication.tls] table, used for https:// URLs.
// The server's certificate is verified unless InsecureSkipVerify is set.
type HTTPTLS struct {
	// CAFile replaces the system roots when set.
	CAFile             string `toml:"cacertfile"`
	CertFile           string `toml:"certfile"`
	KeyFile            string `toml:"keyfile"`
	ServerName         string `toml:"server_name"`
	InsecureSkipVerify bool   `toml:"insecure_skip_verify"`
}

func (t HTTPTLS) isZero() bool { return t == HTTPTLS{} }

// NewHTTPSpec returns an HTTPSpec with defaults filled in.
func NewHTTPSpec() *HTTPSpec {
	return &HTTPSpec{Method: "post", Timeout: config.Duration(DefaultHTTPTimeout), PoolSize: DefaultHTTPPoolSize}
}

// Validate implements config.Validator. It reads the TLS files, so that
// `config check` reports a missing or unreadable certificate.
func (s *HTTPSpec) Validate() error {
	var errs []error
	u, err := parseServiceURL(s.URL)
	if err != nil {
		errs = append(errs, config.Field("url", "%v", err))
	}
	switch strings.ToLower(s.Method) {
	case "post", "get":
	default:
		errs = append(errs, config.Field("method", "must be \"post\" or \"get\", got %q", s.Method))
	}
	if s.Timeout <= 0 {
		errs = append(errs, config.Field("timeout", "must be positive, got %s", s.Timeout))
	}
	if s.PoolSize < 1 || s.PoolSize > 1024 {
		errs = append(errs, config.Field("pool_size", "must be 1..1024, got %d", s.PoolSize))
	}
	names := make([]string, 0, len(s.Headers))
	for k := range s.Headers {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if !validHeaderName(k) {
			errs = append(errs, config.Field("headers", "bad header name %q", k))
		}
		if strings.ContainsAny(s.Headers[k].Reveal(), "\r\n\x00") {
			errs = append(errs, config.Field("headers."+k, "value contains a line break or NUL"))
		}
	}
	if u != nil && u.Scheme != "https" && !s.TLS.isZero() {
		errs = append(errs, config.Field("tls", "set, but url is not https://"))
	}
	if _, err := s.TLS.config(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func parseServiceURL(s string) (*url.URL, error) {
	if s == "" {
		return nil, errors.New("must not be empty")
	}
	u, err := url.Parse(s)
	if err != nil {
		// url.Error repeats the URL, which may carry a password.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("not a valid URL: %v", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("scheme must be http or https, got %q", u.Scheme)
	}
	if u.Host == "" {
		return nil, errors.New("has no host")
	}
	return u, nil
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("()<>@,;:\\\"/[]?={}", c) >= 0 {
			return false
		}
	}
	return true
}

// config builds the client TLS config; errors are *config.FieldError
// naming the tls.* key.
func (t HTTPTLS) config() (*tls.Config, error) {
	c := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         t.ServerName,
		InsecureSkipVerify: t.InsecureSkipVerify, //nolint:gosec // an explicit, logged opt-in
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, config.Field("tls.cacertfile", "%v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, config.Field("tls.cacertfile", "no PEM certificate in %s", t.CAFile)
		}
		c.RootCAs = pool
	}
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		return nil, config.Field("tls.keyfile", "must be set with tls.certfile")
	case t.CertFile == "" && t.KeyFile != "":
		return nil, config.Field("tls.certfile", "must be set with tls.keyfile")
	case t.CertFile != "":
		for k, f := range map[string]string{"tls.certfile": t.CertFile, "tls.keyfile": t.KeyFile} {
			if _, err := os.Stat(f); err != nil {
				return nil, config.Field(k, "%v", err)
			}
		}
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, config.Field("tls.certfile", "%v", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// HTTP is the "http" authenticator. It keeps one HTTP client with a
// bounded connection pool; Close releases the idle connections.
type HTTP struct {
	url      *url.URL
	safeURL  string // for logs and reasons: no userinfo, no query
	get      bool
	timeout  time.Duration
	headers  http.Header
	host     string // a Host header override
	hardened bool
	log      *slog.Logger
	client   *http.Client
	tr       *http.Transport
}

// NewHTTP builds an http authenticator. It does no I/O beyond reading the
// TLS files.
func NewHTTP(spec *HTTPSpec, env gateway.AuthnEnv) (*HTTP, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	u, _ := parseServiceURL(spec.URL)
	tlsConf, _ := spec.TLS.config() // checked by Validate
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	safe := *u
	safe.User, safe.RawQuery, safe.Fragment = nil, "", ""
	log = log.With("authenticator", "http", "url", safe.String())
	if spec.TLS.InsecureSkipVerify && u.Scheme == "https" {
		log.Warn("http authenticator does not verify the server certificate (tls.insecure_skip_verify)")
	}
	timeout := spec.Timeout.D()
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tlsConf,
		TLSHandshakeTimeout:   timeout,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          spec.PoolSize,
		MaxIdleConnsPerHost:   spec.PoolSize,
		MaxConnsPerHost:       spec.PoolSize,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: timeout,
	}
	h := &HTTP{
		url:      u,
		safeURL:  safe.String(),
		get:      strings.EqualFold(spec.Method, "get"),
		timeout:  timeout,
		headers:  http.Header{},
		hardened: env.SecurityProfile != config.ProfileLegacy,
		log:      log,
		tr:       tr,
		client: &http.Client{
			Transport: tr,
			// A redirect would resend the credentials to another place;
			// a 3xx answer is a backend failure instead.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
	for k, v := range spec.Headers {
		if strings.EqualFold(k, "Host") {
			h.host = v.Reveal()
			continue
		}
		h.headers.Set(k, v.Reveal())
	}
	return h, nil
}

// Close implements io.Closer: it closes idle connections. It is safe to
// call more than once, and requests still running finish normally.
func (h *HTTP) Close() error {
	h.tr.CloseIdleConnections()
	return nil
}

// httpAnswer is EMQX 5's answer body.
type httpAnswer struct {
	Result      string            `json:"result"`
	IsSuperuser bool              `json:"is_superuser"`
	ClientAttrs map[string]string `json:"client_attrs"`
	ExpireAt    json.Number       `json:"expire_at"`
}

// Authenticate implements gateway.Authenticator.
func (h *HTTP) Authenticate(ctx context.Context, ci *gateway.ClientInfo) gateway.AuthResult {
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	res, err := h.ask(ctx, ci)
	if err != nil {
		h.log.Warn("http authentication backend failed", "clientid", ci.ClientID, "username", ci.Username, "error", err)
		if h.hardened {
			return gateway.AuthResult{Decision: gateway.Deny, Reason: "http: backend failed: " + err.Error()}
		}
		return gateway.AuthResult{Decision: gateway.Ignore}
	}
	return res
}

// ask does one request. Its errors never carry the password: the request
// URL (with a GET query) is not part of them.
func (h *HTTP) ask(ctx context.Context, ci *gateway.ClientInfo) (gateway.AuthResult, error) {
	params := requestParams(ci)
	var req *http.Request
	var err error
	if h.get {
		u := *h.url
		q := u.Query()
		for k, v := range params {
			q.Set(k, v)
		}
		u.RawQuery = q.Encode()
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	} else {
		body, jerr := json.Marshal(params)
		if jerr != nil {
			return gateway.AuthResult{}, fmt.Errorf("encode request: %w", jerr)
		}
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, h.url.String(), bytes.NewReader(body))
		if err == nil {
			req.Header.Set("Content-Type", "application/json")
		}
	}
	if err != nil {
		return gateway.AuthResult{}, errors.New("cannot build request")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "edgeway")
	for k, v := range h.headers {
		req.Header[k] = v
	}
	if h.host != "" {
		req.Host = h.host
	}
	resp, err := h.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if ctx.Err() != nil && errors.Is(err, context.DeadlineExceeded) {
			return gateway.AuthResult{}, fmt.Errorf("no answer within the timeout: %w", err)
		}
		return gateway.AuthResult{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxHTTPBody+1))
	if err != nil {
		return gateway.AuthResult{}, fmt.Errorf("read answer: %w", err)
	}
	if len(body) > maxHTTPBody {
		return gateway.AuthResult{}, fmt.Errorf("answer longer than %d bytes", maxHTTPBody)
	}
	if resp.StatusCode == http.StatusNoContent {
		return gateway.AuthResult{Decision: gateway.Allow}, nil
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return gateway.AuthResult{}, fmt.Errorf("status %s", resp.Status)
	}
	res, err := parseAnswer(body)
	if err != nil {
		if resp.StatusCode == http.StatusOK {
			return gateway.AuthResult{}, err
		}
		// Another 2xx with no verdict is a service that has no opinion.
		return gateway.AuthResult{Decision: gateway.Ignore}, nil
	}
	if res.Decision == gateway.Deny {
		res.Reason = "http: denied by " + h.safeURL
	}
	return res, nil
}

func parseAnswer(body []byte) (gateway.AuthResult, error) {
	var a httpAnswer
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	if err := d.Decode(&a); err != nil {
		return gateway.AuthResult{}, fmt.Errorf("bad JSON answer: %w", err)
	}
	switch a.Result {
	case "ignore":
		return gateway.AuthResult{Decision: gateway.Ignore}, nil
	case "deny":
		return gateway.AuthResult{Decision: gateway.Deny}, nil
	case "allow":
	case "":
		return gateway.AuthResult{}, errors.New("bad JSON answer: no \"result\"")
	default:
		return gateway.AuthResult{}, fmt.Errorf("bad JSON answer: result %q (want allow, deny or ignore)", a.Result)
	}
	r := gateway.AuthResult{Decision: gateway.Allow, IsSuperuser: a.IsSuperuser, ClientAttrs: a.ClientAttrs}
	if a.ExpireAt != "" {
		sec, err := a.ExpireAt.Int64()
		if err != nil {
			f, ferr := a.ExpireAt.Float64()
			if ferr != nil {
				return gateway.AuthResult{}, fmt.Errorf("bad JSON answer: expire_at %q is not a number", a.ExpireAt)
			}
			sec = int64(f)
		}
		r.ExpireAt = time.Unix(sec, 0)
		if !r.ExpireAt.After(time.Now()) {
			return gateway.AuthResult{Decision: gateway.Deny, Reason: "http: credentials expired at " + strconv.FormatInt(sec, 10)}, nil
		}
	}
	return r, nil
}

// requestParams is the identity sent to the service, as strings: the same
// keys in a POST body and a GET query. Protocol fields never replace the
// standard keys.
func requestParams(ci *gateway.ClientInfo) map[string]string {
	p := make(map[string]string, 10+len(ci.Fields))
	for k, v := range ci.Fields {
		p[k] = v
	}
	peerport := ""
	if ci.Peer.IsValid() {
		peerport = strconv.Itoa(int(ci.Peer.Port()))
	}
	p["clientid"] = ci.ClientID
	p["username"] = ci.Username
	p["password"] = string(ci.Password)
	p["peerhost"] = ci.PeerHost()
	p["peerport"] = peerport
	p["protocol"] = ci.Protocol
	p["gateway"] = ci.Gateway
	p["listener"] = ci.ListenerID
	p["cert_common_name"] = ci.CertCN
	p["cert_subject"] = ci.CertDN
	return p
}

var (
	_ gateway.Authenticator = (*HTTP)(nil)
	_ io.Closer             = (*HTTP)(nil)
	_ gateway.Authenticator = (*Builtin)(nil)
	_ gateway.Authenticator = Anonymous{}
	_ gateway.Authorizer    = (*ACL)(nil)
)
