package transports

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/logging"

	"github.com/edgeway/edgeway/agent/config"
	"github.com/edgeway/edgeway/agent/metrics"
)

// Metric names of a dtls listener, besides those every listener has.
const (
	// MetricHandshakesInflight is a gauge: DTLS handshakes now running,
	// plus finished sessions waiting for Accept. It never exceeds
	// max_handshakes.
	MetricHandshakesInflight = "handshakes.inflight"
	// MetricRefusedHandshake counts handshakes that failed or timed out.
	MetricRefusedHandshake = "connections.refused.handshake"
	// MetricRefusedHandshakeCap counts ClientHellos dropped because
	// max_handshakes handshakes were already running.
	MetricRefusedHandshakeCap = "connections.refused.handshake_cap"
)

// DTLSOptions is `dtls_options`: the certificate settings of SSLOptions,
// checked against what pion/dtls offers (DTLS 1.2, its own cipher list).
type DTLSOptions struct {
	SSLOptions
}

// PSKEntry is one pre-shared key: `psk = [{ identity = "dev1", key = "secret" }]`.
// A key written "hex:00ff…" is taken as hex bytes, any other as its UTF-8 bytes.
type PSKEntry struct {
	Identity string        `toml:"identity"`
	Key      config.Secret `toml:"key"`
}

// DTLSSpec is the settings of a dtls listener:
//
//	[gateway.coap.listeners.dtls.default]
//	bind = "5684"
//	psk = [{ identity = "dev1", key = "secret" }, { identity = "dev2", key = "hex:9f00a1" }]
//	psk_file = "/etc/edgeway/psk.txt"   # dev3:secret per line, # comments
//	psk_identity_hint = "edgeway"
//	connection_id = true                # RFC 9146, the default
//	handshake_timeout = "10s"
//	max_handshakes = 128
//	mtu = 1200
//	dtls_options = { certfile = "…", keyfile = "…", cacertfile = "…", verify = "verify_peer" }
type DTLSSpec struct {
	// Acceptors is accepted for EMQX compatibility.
	Acceptors int `toml:"acceptors"`
	// UDPOptions are the udp listener's: recbuf and sndbuf are applied,
	// the rest is accepted for EMQX compatibility.
	UDPOptions  UDPOptions  `toml:"udp_options"`
	DTLSOptions DTLSOptions `toml:"dtls_options"`
	// PSK and PSKFile (lines "identity:secret", # comments) together are
	// the keys accepted; both change live on Update.
	PSK             []PSKEntry `toml:"psk"`
	PSKFile         string     `toml:"psk_file"`
	PSKIdentityHint string     `toml:"psk_identity_hint"`
	// ConnectionID turns on RFC 9146 Connection IDs: the server asks for
	// a random 8-byte CID, so a session survives a NAT rebinding.
	ConnectionID     bool            `toml:"connection_id"`
	HandshakeTimeout config.Duration `toml:"handshake_timeout"`
	// MaxHandshakes caps handshakes in progress; ClientHellos beyond it
	// are dropped (the client retransmits a second later).
	MaxHandshakes int `toml:"max_handshakes"`
	MTU           int `toml:"mtu"`
}

// Defaults of a dtls listener.
const (
	DefaultDTLSHandshakeTimeout = 10 * time.Second
	DefaultDTLSMaxHandshakes    = 128
	DefaultDTLSMTU              = 1200
	dtlsCIDSize                 = 8
	// dtlsMaxPlaintext is the largest record payload pion hands to Read:
	// its listener reads datagrams into 8 KiB buffers.
	dtlsMaxPlaintext = 8192
)

// NewDTLSSpec returns a dtls listener's settings with every default set.
func NewDTLSSpec() *DTLSSpec {
	return &DTLSSpec{
		Acceptors:        16,
		UDPOptions:       DefaultUDPOptions(),
		ConnectionID:     true,
		HandshakeTimeout: config.Duration(DefaultDTLSHandshakeTimeout),
		MaxHandshakes:    DefaultDTLSMaxHandshakes,
		MTU:              DefaultDTLSMTU,
	}
}

func init() {
	Register(Type{
		Name:    "dtls",
		NewSpec: func() any { return NewDTLSSpec() },
		Open: func(ctx context.Context, cfg *config.Listener, env Env) (Listener, error) {
			l, err := ListenDTLS(ctx, cfg, env)
			if err != nil {
				return nil, err
			}
			return l, nil
		},
	})
}

// PSKIdentity is implemented by Conns whose peer authenticated with a
// pre-shared key (dtls). The identity is what the device sent in its
// ClientKeyExchange; "" for a certificate session.
type PSKIdentity interface {
	PSKIdentity() string
}

// LivePeer is implemented by Conns whose peer address may change during
// a session without a new Conn: a dtls session with a Connection ID
// follows its client across NAT rebindings. ConnInfo.Peer keeps the
// address the session started from; LivePeer is where replies go now.
type LivePeer interface {
	LivePeer() netip.AddrPort
}

// CurrentPeer is c's peer address now: LivePeer when c has one, else
// Info().Peer.
func CurrentPeer(c Conn) netip.AddrPort {
	if lp, ok := c.(LivePeer); ok {
		return lp.LivePeer()
	}
	return c.Info().Peer
}

// Validate implements config.Validator.
func (e *PSKEntry) Validate() error {
	var errs []error
	if e.Identity == "" {
		errs = append(errs, config.Field("identity", "must not be empty"))
	}
	if _, err := pskKey(string(e.Key)); err != nil {
		errs = append(errs, config.Field("key", "%v", err))
	}
	return errors.Join(errs...)
}

// pskKey decodes a key as written. Errors never quote the key.
func pskKey(s string) ([]byte, error) {
	if h, ok := strings.CutPrefix(s, "hex:"); ok {
		b, err := hex.DecodeString(h)
		if err != nil {
			return nil, errors.New("bad hex after \"hex:\"")
		}
		if len(b) == 0 {
			return nil, errors.New("must not be empty")
		}
		return b, nil
	}
	if s == "" {
		return nil, errors.New("must not be empty")
	}
	return []byte(s), nil
}

// Validate implements config.Validator. Cipher names are checked against
// pion's suites here instead of crypto/tls's.
func (o *DTLSOptions) Validate() error {
	base := o.SSLOptions
	base.Ciphers = nil
	errs := []error{base.Validate()}
	for i, c := range o.Ciphers {
		if _, ok := dtlsCipherByName(c); !ok {
			errs = append(errs, config.Field(fmt.Sprintf("ciphers[%d]", i), "unknown dtls cipher suite %q (pion/dtls has %s)", c, strings.Join(dtlsCipherNames(), ", ")))
		}
	}
	has12 := false
	for i, v := range o.Versions {
		switch strings.ToLower(v) {
		case "dtlsv1.2":
			has12 = true
		case "dtlsv1":
		default:
			errs = append(errs, config.Field(fmt.Sprintf("versions[%d]", i), "unknown dtls version %q (want dtlsv1.2)", v))
		}
	}
	if len(o.Versions) > 0 && !has12 {
		errs = append(errs, config.Field("versions", "must include \"dtlsv1.2\", the only version served"))
	}
	return errors.Join(errs...)
}

// Validate implements config.Validator.
func (s *DTLSSpec) Validate() error {
	var errs []error
	cert, psk := s.DTLSOptions.CertFile != "", s.pskEnabled()
	if !cert && !psk {
		errs = append(errs, config.Field("psk", "a dtls listener needs dtls_options.certfile, psk or psk_file"))
	}
	seen := map[string]bool{}
	for i, e := range s.PSK {
		if e.Identity != "" && seen[e.Identity] {
			errs = append(errs, config.Field(fmt.Sprintf("psk[%d].identity", i), "duplicate identity %q", e.Identity))
		}
		seen[e.Identity] = true
	}
	if s.PSKFile != "" {
		keys, err := readPSKFile(s.PSKFile)
		if err != nil {
			errs = append(errs, config.Field("psk_file", "%v", err))
		}
		for id := range keys {
			if seen[id] {
				errs = append(errs, config.Field("psk_file", "identity %q is also in psk", id))
			}
		}
	}
	if s.PSKIdentityHint != "" && !psk {
		errs = append(errs, config.Field("psk_identity_hint", "needs psk or psk_file"))
	}
	if len(s.DTLSOptions.Ciphers) > 0 {
		var certSuite, pskSuite bool
		for _, c := range s.DTLSOptions.Ciphers {
			if id, ok := dtlsCipherByName(c); ok {
				if dtlsPSKSuite(id) {
					pskSuite = true
				} else {
					certSuite = true
				}
			}
		}
		if psk && !pskSuite {
			errs = append(errs, config.Field("dtls_options.ciphers", "no TLS_PSK_* or TLS_ECDHE_PSK_* suite although psk is set"))
		}
		if cert && !certSuite {
			errs = append(errs, config.Field("dtls_options.ciphers", "no certificate suite (TLS_ECDHE_*) although certfile is set"))
		}
	}
	if s.MaxHandshakes < 1 {
		errs = append(errs, config.Field("max_handshakes", "must be at least 1, got %d", s.MaxHandshakes))
	}
	if s.HandshakeTimeout <= 0 {
		errs = append(errs, config.Field("handshake_timeout", "must be positive"))
	}
	if s.MTU < 256 || s.MTU > 65535 {
		errs = append(errs, config.Field("mtu", "must be within 256..65535, got %d", s.MTU))
	}
	return errors.Join(errs...)
}

func (s *DTLSSpec) pskEnabled() bool { return len(s.PSK) > 0 || s.PSKFile != "" }

// socketPart is the spec without what Update applies live and what
// has no effect.
func (s *DTLSSpec) socketPart() DTLSSpec {
	c := *s
	c.PSK, c.PSKFile = nil, ""
	c.HandshakeTimeout, c.MaxHandshakes = 0, 0
	c.Acceptors = 0
	c.UDPOptions.ActiveN, c.UDPOptions.Buffer, c.UDPOptions.Reuseaddr = 0, 0, false
	return c
}

// loadPSK builds the key table from psk and psk_file.
func (s *DTLSSpec) loadPSK() (map[string][]byte, error) {
	keys := make(map[string][]byte, len(s.PSK))
	for i, e := range s.PSK {
		if e.Identity == "" {
			return nil, fmt.Errorf("psk[%d].identity: must not be empty", i)
		}
		if _, dup := keys[e.Identity]; dup {
			return nil, fmt.Errorf("psk[%d].identity: duplicate identity %q", i, e.Identity)
		}
		k, err := pskKey(e.Key.Reveal())
		if err != nil {
			return nil, fmt.Errorf("psk[%d].key: %w", i, err)
		}
		keys[e.Identity] = k
	}
	if s.PSKFile != "" {
		fk, err := readPSKFile(s.PSKFile)
		if err != nil {
			return nil, fmt.Errorf("psk_file: %w", err)
		}
		for id, k := range fk {
			if _, dup := keys[id]; dup {
				return nil, fmt.Errorf("psk_file: identity %q is also in psk", id)
			}
			keys[id] = k
		}
	}
	return keys, nil
}

// readPSKFile reads "identity:secret" lines (EMQX's psk_file format, ':'
// separator); blank lines and lines starting with # are skipped.
func readPSKFile(path string) (map[string][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	keys := map[string][]byte{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		id, secret, ok := strings.Cut(line, ":")
		if !ok || id == "" {
			return nil, fmt.Errorf("%s:%d: want identity:secret", path, n)
		}
		if _, dup := keys[id]; dup {
			return nil, fmt.Errorf("%s:%d: duplicate identity %q", path, n, id)
		}
		k, err := pskKey(secret)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: secret: %w", path, n, err)
		}
		keys[id] = k
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return keys, nil
}

// dtlsSuites are the suites pion/dtls v3 implements, by IANA name.
var dtlsSuites = []struct {
	name string
	id   dtls.CipherSuiteID
}{
	{"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
	{"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", dtls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256},
	{"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", dtls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256},
	{"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", dtls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256},
	{"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", dtls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384},
	{"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", dtls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384},
	{"TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", dtls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA},
	{"TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", dtls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA},
	{"TLS_ECDHE_ECDSA_WITH_AES_128_CCM", dtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM},
	{"TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8", dtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8},
	{"TLS_PSK_WITH_AES_128_GCM_SHA256", dtls.TLS_PSK_WITH_AES_128_GCM_SHA256},
	{"TLS_PSK_WITH_AES_128_CCM", dtls.TLS_PSK_WITH_AES_128_CCM},
	{"TLS_PSK_WITH_AES_128_CCM_8", dtls.TLS_PSK_WITH_AES_128_CCM_8},
	{"TLS_PSK_WITH_AES_256_CCM_8", dtls.TLS_PSK_WITH_AES_256_CCM_8},
	{"TLS_PSK_WITH_CHACHA20_POLY1305_SHA256", dtls.TLS_PSK_WITH_CHACHA20_POLY1305_SHA256},
	{"TLS_PSK_WITH_AES_128_CBC_SHA256", dtls.TLS_PSK_WITH_AES_128_CBC_SHA256},
	{"TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256", dtls.TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256},
	{"TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256", dtls.TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256},
}

// Suites offered when dtls_options.ciphers is empty. pion's own default
// has no PSK suite, so a PSK listener must list them. CCM_8 is the one
// LwM2M (and most constrained stacks) require.
var (
	dtlsDefaultCertSuites = []dtls.CipherSuiteID{
		dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, dtls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		dtls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, dtls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		dtls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, dtls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		dtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM, dtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8,
		dtls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, dtls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
	}
	dtlsDefaultPSKSuites = []dtls.CipherSuiteID{
		dtls.TLS_PSK_WITH_AES_128_GCM_SHA256, dtls.TLS_PSK_WITH_AES_128_CCM, dtls.TLS_PSK_WITH_AES_128_CCM_8,
		dtls.TLS_PSK_WITH_CHACHA20_POLY1305_SHA256, dtls.TLS_PSK_WITH_AES_128_CBC_SHA256,
	}
)

func dtlsCipherByName(name string) (dtls.CipherSuiteID, bool) {
	for _, s := range dtlsSuites {
		if strings.EqualFold(s.name, name) {
			return s.id, true
		}
	}
	return 0, false
}

func dtlsCipherNames() []string {
	out := make([]string, len(dtlsSuites))
	for i, s := range dtlsSuites {
		out[i] = s.name
	}
	return out
}

func dtlsPSKSuite(id dtls.CipherSuiteID) bool {
	for _, s := range dtlsSuites {
		if s.id == id {
			return strings.Contains(s.name, "_PSK_")
		}
	}
	return false
}

func (s *DTLSSpec) cipherSuites() []dtls.CipherSuiteID {
	var ids []dtls.CipherSuiteID
	if len(s.DTLSOptions.Ciphers) > 0 {
		for _, c := range s.DTLSOptions.Ciphers {
			if id, ok := dtlsCipherByName(c); ok {
				ids = append(ids, id)
			}
		}
		return ids
	}
	if s.DTLSOptions.CertFile != "" {
		ids = append(ids, dtlsDefaultCertSuites...)
	}
	if s.pskEnabled() {
		ids = append(ids, dtlsDefaultPSKSuites...)
	}
	return ids
}

// DTLSListener is the dtls listener type. Handshakes run off the accept
// path, at most max_handshakes at once, each bounded by
// handshake_timeout; Accept returns sessions whose handshake succeeded.
//
// Besides the Listener methods it has AcceptWithContext, so a protocol
// that runs go-coap's DTLS server passes the listener itself:
// dtls/server.New(…).Serve(l). Sessions then keep this listener's
// limits, counters and Conn wrappers; go-coap's own pion listener and
// *dtls.Config are not used. After Close, both Accept methods return an
// error matching net.ErrClosed and io.EOF (go-coap's ErrListenerIsClosed),
// so go-coap's Serve returns instead of spinning.
type DTLSListener struct {
	ln     net.Listener // pion's; Accept yields *dtls.Conn before the handshake
	env    Env
	m      *metrics.Set
	guard  *Guard
	cfg    atomic.Pointer[config.Listener]
	psk    atomic.Pointer[map[string][]byte]
	update sync.Mutex

	hsTimeout atomic.Int64 // time.Duration
	maxHS     atomic.Int64
	inflight  atomic.Int64
	peak      atomic.Int64  // highest inflight seen, for tests
	attempts  atomic.Uint64 // sessions pion started (ClientHellos from new peers)

	gInflight                      *metrics.Gauge
	cHandshake, cCap, cRules, cMax *metrics.Counter

	ready     chan *dtlsConn
	done      chan struct{}
	ctx       context.Context
	cancel    context.CancelFunc
	failed    chan struct{}
	failErr   error
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// dtlsClosedError is what Accept returns after Close.
type dtlsClosedError struct{}

func (dtlsClosedError) Error() string { return "transports/dtls: listener closed" }

// Is matches net.ErrClosed (the Listener contract) and io.EOF, which is
// go-coap's ErrListenerIsClosed.
func (dtlsClosedError) Is(target error) bool { return target == net.ErrClosed || target == io.EOF }

// ListenDTLS opens a dtls listener; Open("dtls", …) calls it.
func ListenDTLS(ctx context.Context, cfg *config.Listener, env Env) (*DTLSListener, error) {
	spec, ok := cfg.Spec.(*DTLSSpec)
	if !ok {
		return nil, fmt.Errorf("transports/dtls: spec is %T, not *DTLSSpec", cfg.Spec)
	}
	if err := errors.Join(spec.DTLSOptions.Validate(), spec.Validate()); err != nil {
		return nil, fmt.Errorf("transports/dtls: %w", err)
	}
	if env.Logger == nil {
		env.Logger = slog.New(slog.DiscardHandler)
	}
	m := env.Metrics
	if m == nil {
		m = metrics.NewSet(nil)
	}
	l := &DTLSListener{
		env:        env,
		m:          m,
		guard:      NewGuard(cfg, m),
		gInflight:  m.Gauge(MetricHandshakesInflight),
		cHandshake: m.Counter(MetricRefusedHandshake),
		cCap:       m.Counter(MetricRefusedHandshakeCap),
		cRules:     m.Counter("connections.refused.access_rules"),
		cMax:       m.Counter("connections.refused.max_connections"),
		ready:      make(chan *dtlsConn),
		done:       make(chan struct{}),
		failed:     make(chan struct{}),
	}
	keys, err := spec.loadPSK()
	if err != nil {
		return nil, fmt.Errorf("transports/dtls: %w", err)
	}
	l.psk.Store(&keys)
	l.hsTimeout.Store(int64(spec.HandshakeTimeout))
	l.maxHS.Store(int64(spec.MaxHandshakes))
	l.cfg.Store(cfg)

	opts, err := l.serverOptions(spec, cfg.ID())
	if err != nil {
		return nil, fmt.Errorf("transports/dtls: %w", err)
	}
	laddr, err := net.ResolveUDPAddr("udp", bindAddr(cfg.Bind))
	if err != nil {
		return nil, fmt.Errorf("transports/dtls: bind: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ln, err := dtls.ListenWithOptions("udp", laddr, opts...)
	if err != nil {
		return nil, fmt.Errorf("transports/dtls: %w", err)
	}
	l.ln = ln
	// Handshakes outlive Open's ctx; Close cancels them.
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.wg.Add(1)
	go l.acceptLoop()
	return l, nil
}

func (l *DTLSListener) serverOptions(spec *DTLSSpec, id string) ([]dtls.ServerOption, error) {
	opts := []dtls.ServerOption{
		dtls.WithMTU(spec.MTU),
		dtls.WithLoggerFactory(dtlsLogFactory{l.env.Logger.With("listener", id)}),
		dtls.WithCipherSuites(spec.cipherSuites()...),
	}
	o := &spec.DTLSOptions
	cert, err := o.LoadCertificate()
	if err != nil {
		return nil, err
	}
	if cert != nil {
		opts = append(opts, dtls.WithCertificates(*cert))
		if o.VerifyPeer() {
			pool, err := o.LoadCAPool()
			if err != nil {
				return nil, err
			}
			auth := dtls.VerifyClientCertIfGiven
			if o.FailIfNoPeerCert {
				auth = dtls.RequireAndVerifyClientCert
			}
			opts = append(opts, dtls.WithClientCAs(pool), dtls.WithClientAuth(auth))
		}
	}
	if spec.pskEnabled() {
		opts = append(opts, dtls.WithPSK(l.pskFor))
		if spec.PSKIdentityHint != "" {
			opts = append(opts, dtls.WithPSKIdentityHint([]byte(spec.PSKIdentityHint)))
		}
	}
	if spec.ConnectionID {
		opts = append(opts, dtls.WithConnectionIDGenerator(dtls.RandomCIDGenerator(dtlsCIDSize)))
	}
	if u := spec.UDPOptions; u.Recbuf > 0 || u.Sndbuf > 0 {
		opts = append(opts, dtls.WithListenConfig(net.ListenConfig{Control: dtlsSocketControl(u)}))
	}
	return opts, nil
}

// pskFor is pion's PSK callback: it reads the current key table, so an
// Update reaches the next handshake without touching running sessions.
func (l *DTLSListener) pskFor(identity []byte) ([]byte, error) {
	if k, ok := (*l.psk.Load())[string(identity)]; ok {
		return k, nil
	}
	return nil, errors.New("transports/dtls: unknown psk identity")
}

// dtlsSocketControl sizes the socket buffers before bind: pion opens
// the socket itself, so *net.UDPConn's setters are out of reach.
// reuseaddr stays off for the reason UDPOptions gives.
func dtlsSocketControl(o UDPOptions) func(string, string, syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if o.Recbuf > 0 {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, int(o.Recbuf))
			}
			if serr == nil && o.Sndbuf > 0 {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, int(o.Sndbuf))
			}
		})
		if err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("udp_options: %w", serr)
		}
		return nil
	}
}

// acceptLoop takes every new peer pion sees (a ClientHello from an
// address or CID it does not know yet) and either refuses it at once or
// starts its handshake in a goroutine of its own.
func (l *DTLSListener) acceptLoop() {
	defer l.wg.Done()
	for {
		nc, err := l.ln.Accept()
		if err != nil {
			select {
			case <-l.done:
			default:
				// pion's read loop ended: the socket is gone.
				l.failErr = fmt.Errorf("transports/dtls: %w", err)
				close(l.failed)
			}
			return
		}
		dc, ok := nc.(*dtls.Conn)
		if !ok {
			nc.Close()
			continue
		}
		l.attempts.Add(1)
		if !l.admitHello(dc) {
			dc.Close()
			continue
		}
		l.wg.Add(1)
		go l.handshake(dc)
	}
}

// admitHello is the cheap check before any crypto: access rules,
// max_connections already reached, the handshake cap. max_conn_rate is
// charged only after a handshake succeeds, so ClientHellos from spoofed
// addresses cannot use up the rate that real devices need.
func (l *DTLSListener) admitHello(dc *dtls.Conn) bool {
	peer := addrPort(dc.RemoteAddr())
	if !l.guard.Allowed(peer.Addr().Unmap()) {
		l.cRules.Inc()
		return false
	}
	if mc := l.cfg.Load().MaxConnections; !mc.IsUnlimited() && int64(l.guard.Active()) >= int64(mc) {
		l.cMax.Inc()
		return false
	}
	n := l.inflight.Add(1)
	if n > l.maxHS.Load() {
		l.inflight.Add(-1)
		l.cCap.Inc()
		return false
	}
	l.gInflight.Inc()
	for p := l.peak.Load(); n > p; p = l.peak.Load() {
		if l.peak.CompareAndSwap(p, n) {
			break
		}
	}
	return true
}

func (l *DTLSListener) releaseSlot() {
	l.inflight.Add(-1)
	l.gInflight.Dec()
}

func (l *DTLSListener) handshake(dc *dtls.Conn) {
	defer l.wg.Done()
	defer l.releaseSlot()
	ctx, cancel := context.WithTimeout(l.ctx, time.Duration(l.hsTimeout.Load()))
	err := dc.HandshakeContext(ctx)
	cancel()
	peer := addrPort(dc.RemoteAddr())
	peer = netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port())
	cfg := l.cfg.Load()
	if err != nil {
		l.cHandshake.Inc()
		l.env.Logger.Debug("dtls handshake failed", "listener", cfg.ID(), "peer", peer.String(), "error", err)
		dc.Close()
		return
	}
	if err := l.guard.Admit(peer.Addr()); err != nil {
		l.env.Logger.Debug("connection refused", "listener", cfg.ID(), "peer", peer.String(), "reason", err)
		dc.Close()
		return
	}
	info := &ConnInfo{ListenerID: cfg.ID(), Transport: cfg.Transport, Peer: peer, Accepted: time.Now()}
	c := &dtlsConn{dc: dc}
	if st, ok := dc.ConnectionState(); ok {
		c.identity = string(st.IdentityHint)
		if len(st.PeerCertificates) > 0 {
			if pc, err := x509.ParseCertificate(st.PeerCertificates[0]); err == nil {
				info.PeerCert = pc
				info.CertCN, info.CertDN = subjectOf(pc)
			}
		}
	}
	c.counted = newCounted(dc, info, l.m, l.guard.Release)
	select {
	case l.ready <- c:
	case <-l.done:
		c.Close()
	}
}

// Accept implements Listener.
func (l *DTLSListener) Accept() (Conn, error) {
	c, err := l.accept(nil)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// AcceptWithContext is Accept bounded by ctx; with it the listener is a
// go-coap dtls/server.Listener.
func (l *DTLSListener) AcceptWithContext(ctx context.Context) (net.Conn, error) {
	c, err := l.accept(ctx.Done())
	if err != nil {
		if cerr := ctx.Err(); cerr != nil && !errors.Is(err, net.ErrClosed) {
			return nil, cerr
		}
		return nil, err
	}
	return c, nil
}

func (l *DTLSListener) accept(cancel <-chan struct{}) (*dtlsConn, error) {
	select {
	case <-l.done:
		return nil, dtlsClosedError{}
	default:
	}
	select {
	case c := <-l.ready:
		return c, nil
	case <-l.done:
		return nil, dtlsClosedError{}
	case <-l.failed:
		return nil, l.failErr
	case <-cancel:
		return nil, context.Canceled
	}
}

// Addr implements Listener.
func (l *DTLSListener) Addr() net.Addr { return l.ln.Addr() }

// Close implements Listener: it stops accepting and ends handshakes in
// progress. Accepted sessions stay open, and with them the UDP socket,
// which pion shares between sessions: the port is free again only when
// the last of them is closed.
func (l *DTLSListener) Close() error {
	var err error
	l.closeOnce.Do(func() {
		close(l.done)
		l.cancel()
		err = l.ln.Close()
		l.wg.Wait()
	})
	return err
}

// Update implements Listener. PSK keys (psk, psk_file, which is read
// again), handshake_timeout, max_handshakes and the shared limits change
// live; anything else needs a restart.
func (l *DTLSListener) Update(cfg *config.Listener) error {
	l.update.Lock()
	defer l.update.Unlock()
	old := l.cfg.Load()
	was, ok1 := old.Spec.(*DTLSSpec)
	ns, ok2 := cfg.Spec.(*DTLSSpec)
	if !ok1 || !ok2 || old.Transport != cfg.Transport || old.Bind != cfg.Bind || old.Enable != cfg.Enable ||
		was.pskEnabled() != ns.pskEnabled() || !reflect.DeepEqual(was.socketPart(), ns.socketPart()) {
		return ErrRestartRequired
	}
	if ns.MaxHandshakes < 1 || ns.HandshakeTimeout <= 0 {
		return fmt.Errorf("transports/dtls: max_handshakes and handshake_timeout must be positive")
	}
	keys, err := ns.loadPSK()
	if err != nil {
		return fmt.Errorf("transports/dtls: %w", err)
	}
	l.psk.Store(&keys)
	l.hsTimeout.Store(int64(ns.HandshakeTimeout))
	l.maxHS.Store(int64(ns.MaxHandshakes))
	l.guard.Update(cfg)
	l.cfg.Store(cfg)
	return nil
}

// dtlsConn is an accepted DTLS session.
type dtlsConn struct {
	*counted
	dc       *dtls.Conn
	identity string
}

var dtlsReadBufs = sync.Pool{New: func() any { b := make([]byte, dtlsMaxPlaintext); return &b }}

// Read returns one record. pion refuses (and loses) a record larger than
// the buffer, so a short buffer reads through a scratch one and the
// record is truncated, as Datagram promises.
func (c *dtlsConn) Read(p []byte) (int, error) {
	if len(p) >= dtlsMaxPlaintext {
		return c.counted.Read(p)
	}
	bp := dtlsReadBufs.Get().(*[]byte)
	n, err := c.counted.Read(*bp)
	n = copy(p, (*bp)[:n])
	dtlsReadBufs.Put(bp)
	return n, err
}

// Datagram implements Datagram.
func (c *dtlsConn) Datagram() {}

// PSKIdentity implements PSKIdentity.
func (c *dtlsConn) PSKIdentity() string { return c.identity }

// LivePeer implements LivePeer: pion moves the session to the source of
// the newest authenticated CID record (RFC 9146 §6).
func (c *dtlsConn) LivePeer() netip.AddrPort {
	ap := addrPort(c.dc.RemoteAddr())
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// ConnectionState is pion's view of the session (cipher suite, peer
// certificates, identity).
func (c *dtlsConn) ConnectionState() (dtls.State, bool) { return c.dc.ConnectionState() }

// dtlsLogFactory sends pion's log lines to the listener's slog logger at
// debug level (pion logs per packet, so nothing goes above debug/warn).
type dtlsLogFactory struct{ log *slog.Logger }

func (f dtlsLogFactory) NewLogger(string) logging.LeveledLogger { return dtlsLogger(f) }

type dtlsLogger struct{ log *slog.Logger }

func (dtlsLogger) Trace(string)          {}
func (dtlsLogger) Tracef(string, ...any) {}
func (l dtlsLogger) Debug(msg string)    { l.log.Debug(msg) }
func (l dtlsLogger) Debugf(format string, args ...any) {
	l.logf(slog.LevelDebug, format, args)
}
func (l dtlsLogger) Info(msg string)                  { l.log.Debug(msg) }
func (l dtlsLogger) Infof(format string, args ...any) { l.logf(slog.LevelDebug, format, args) }
func (l dtlsLogger) Warn(msg string)                  { l.log.Warn(msg) }
func (l dtlsLogger) Warnf(format string, args ...any) { l.logf(slog.LevelWarn, format, args) }
func (l dtlsLogger) Error(msg string)                 { l.log.Warn(msg) }
func (l dtlsLogger) Errorf(format string, args ...any) {
	l.logf(slog.LevelWarn, format, args)
}

func (l dtlsLogger) logf(level slog.Level, format string, args []any) {
	if l.log.Enabled(context.Background(), level) {
		l.log.Log(context.Background(), level, fmt.Sprintf(format, args...))
	}
}
