package transports

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/edgeway/edgeway/agent/config"
	"github.com/edgeway/edgeway/agent/metrics"
)

// TLSSpec is the settings of a tls listener (EMQX's ssl listener; "ssl"
// is accepted as the type name).
type TLSSpec struct {
	// Acceptors is accepted for EMQX compatibility; one accept loop serves
	// any rate a gateway box sees.
	Acceptors  int        `toml:"acceptors"`
	TCPOptions TCPOptions `toml:"tcp_options"`
	SSLOptions SSLOptions `toml:"ssl_options"`
	// HandshakeTimeout bounds one TLS handshake; a client that has not
	// finished by then is dropped and counted as refused.
	HandshakeTimeout config.Duration `toml:"handshake_timeout"`
	// MaxHandshakes bounds the handshakes in progress at once. When it is
	// reached the listener stops accepting until one finishes, so a flood
	// of clients that never finish their handshake costs at most this many
	// goroutines; new clients wait in the kernel's accept queue meanwhile.
	MaxHandshakes int `toml:"max_handshakes"`
}

// Defaults of a tls listener.
const (
	DefaultHandshakeTimeout = 15 * time.Second
	DefaultMaxHandshakes    = 256
)

// DefaultTLSSpec returns a tls listener's settings with EMQX's defaults.
func DefaultTLSSpec() *TLSSpec {
	return &TLSSpec{
		Acceptors:        16,
		TCPOptions:       DefaultTCPOptions(),
		SSLOptions:       SSLOptions{Verify: "verify_none", Versions: []string{"tlsv1.3", "tlsv1.2"}, Depth: 10},
		HandshakeTimeout: config.Duration(DefaultHandshakeTimeout),
		MaxHandshakes:    DefaultMaxHandshakes,
	}
}

// Validate implements config.Validator. The ssl_options table checks its
// files itself; what is checked here is what only tls requires: a server
// certificate (dtls may run on PSK alone), TLS versions and no PSK suites.
func (s *TLSSpec) Validate() error {
	var errs []error
	if s.SSLOptions.CertFile == "" || s.SSLOptions.KeyFile == "" {
		errs = append(errs, config.Field("ssl_options.certfile", "a tls listener needs a server certificate: set certfile and keyfile"))
	}
	for i, v := range s.SSLOptions.Versions {
		if _, err := tlsVersion(v); err != nil {
			errs = append(errs, config.Field(fmt.Sprintf("ssl_options.versions[%d]", i), "%v", err))
		}
	}
	for i, c := range s.SSLOptions.Ciphers {
		if id, ok := cipherByName(c); ok && id == 0 {
			errs = append(errs, config.Field(fmt.Sprintf("ssl_options.ciphers[%d]", i), "%q is a DTLS PSK suite, not available on tls", c))
		}
	}
	if s.HandshakeTimeout <= 0 {
		errs = append(errs, config.Field("handshake_timeout", "must be positive, got %s", s.HandshakeTimeout))
	}
	if s.MaxHandshakes < 1 {
		errs = append(errs, config.Field("max_handshakes", "must be at least 1, got %d", s.MaxHandshakes))
	}
	return errors.Join(errs...)
}

func tlsVersion(v string) (uint16, error) {
	switch strings.ToLower(v) {
	case "tlsv1.3":
		return tls.VersionTLS13, nil
	case "tlsv1.2":
		return tls.VersionTLS12, nil
	case "tlsv1", "tlsv1.0", "tlsv1.1", "sslv3":
		return 0, fmt.Errorf("%s is not supported (insecure); use tlsv1.2 or tlsv1.3", v)
	}
	return 0, fmt.Errorf("unknown TLS version %q (want tlsv1.2 or tlsv1.3)", v)
}

// ServerConfig builds the crypto/tls server config of a tls listener.
// Ciphers apply to TLS 1.2 only: Go does not make TLS 1.3 suites
// configurable.
func (s *TLSSpec) ServerConfig() (*tls.Config, error) {
	o := &s.SSLOptions
	cert, err := o.LoadCertificate()
	if err != nil {
		return nil, err
	}
	if cert == nil {
		return nil, errors.New("ssl_options.certfile: a tls listener needs a server certificate")
	}
	tc := &tls.Config{Certificates: []tls.Certificate{*cert}, MinVersion: tls.VersionTLS12}
	if len(o.Versions) > 0 {
		tc.MinVersion, tc.MaxVersion = tls.VersionTLS13, tls.VersionTLS12
		for _, v := range o.Versions {
			id, err := tlsVersion(v)
			if err != nil {
				return nil, fmt.Errorf("ssl_options.versions: %w", err)
			}
			tc.MinVersion = min(tc.MinVersion, id)
			tc.MaxVersion = max(tc.MaxVersion, id)
		}
	}
	for _, c := range o.Ciphers {
		if id, ok := cipherByName(c); !ok || id == 0 {
			return nil, fmt.Errorf("ssl_options.ciphers: %q is not a TLS cipher suite", c)
		}
	}
	tc.CipherSuites = o.CipherIDs()
	pool, err := o.LoadCAPool()
	if err != nil {
		return nil, err
	}
	tc.ClientCAs = pool
	if o.VerifyPeer() {
		if pool == nil {
			return nil, errors.New("ssl_options.cacertfile: verify_peer needs a cacertfile")
		}
		tc.ClientAuth = tls.VerifyClientCertIfGiven
		if o.FailIfNoPeerCert {
			tc.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	return tc, nil
}

func init() {
	Register(Type{
		Name:    "tls",
		Aliases: []string{"ssl"},
		NewSpec: func() any { return DefaultTLSSpec() },
		Open:    openTLS,
	})
}

// tlsListener runs TLS handshakes off the accept path: an acceptor
// goroutine takes TCP connections (through the tcp listener, so limits and
// access rules apply before any crypto), a goroutine per connection
// handshakes under a deadline, and Accept returns only finished ones. A
// client that stalls its handshake therefore delays nobody else.
type tlsListener struct {
	sl      *streamListener
	spec    *TLSSpec
	sem     chan struct{}
	ready   chan Conn
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	done    chan struct{} // closed when the acceptor stops
	err     error         // why the acceptor stopped; read after done
	refused *metrics.Counter
	once    sync.Once
}

func openTLS(ctx context.Context, cfg *config.Listener, env Env) (Listener, error) {
	spec := cfg.Spec.(*TLSSpec)
	if err := errors.Join(spec.Validate(), spec.SSLOptions.Validate()); err != nil {
		return nil, err
	}
	tc, err := spec.ServerConfig()
	if err != nil {
		return nil, err
	}
	if env.Metrics == nil {
		env.Metrics = metrics.NewSet(nil)
	}
	wrap := func(c net.Conn, _ *ConnInfo) (net.Conn, error) { return tls.Server(c, tc), nil }
	sl, err := listenTCP(ctx, cfg, env, spec.TCPOptions, wrap)
	if err != nil {
		return nil, err
	}
	l := &tlsListener{
		sl:      sl,
		spec:    spec,
		sem:     make(chan struct{}, spec.MaxHandshakes),
		ready:   make(chan Conn),
		done:    make(chan struct{}),
		refused: env.Metrics.Counter("connections.refused.handshake"),
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.wg.Add(1)
	go l.acceptLoop()
	return l, nil
}

func (l *tlsListener) Addr() net.Addr { return l.sl.Addr() }

// Update applies limits and access rules live; TLS or socket changes need
// a restart.
func (l *tlsListener) Update(cfg *config.Listener) error { return l.sl.Update(cfg) }

// Close stops accepting, aborts handshakes in progress and waits for the
// listener's goroutines. Connections already accepted stay open.
func (l *tlsListener) Close() error {
	var err error
	l.once.Do(func() {
		err = l.sl.Close()
		l.cancel()
		l.wg.Wait()
	})
	return err
}

func (l *tlsListener) Accept() (Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case <-l.done:
		// A finished handshake may still be offered until Close cancels.
		select {
		case c := <-l.ready:
			return c, nil
		default:
		}
		return nil, l.err
	}
}

func (l *tlsListener) acceptLoop() {
	defer l.wg.Done()
	defer close(l.done)
	var backoff time.Duration
	for {
		c, err := l.sl.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || l.ctx.Err() != nil {
				l.err = fmt.Errorf("%s: %w", l.sl.cfg.Load().ID(), net.ErrClosed)
				return
			}
			// Out of file descriptors and the like: back off and retry
			// rather than stop serving for good.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.sl.env.Logger.Warn("accept failed", "listener", l.sl.cfg.Load().ID(), "error", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-l.ctx.Done():
			}
			continue
		}
		backoff = 0
		select {
		case l.sem <- struct{}{}:
		case <-l.ctx.Done():
			c.Close()
			l.err = fmt.Errorf("%s: %w", l.sl.cfg.Load().ID(), net.ErrClosed)
			return
		}
		l.wg.Add(1)
		go l.handshake(c)
	}
}

func (l *tlsListener) handshake(c Conn) {
	defer l.wg.Done()
	defer func() { <-l.sem }()
	tc := tlsConnOf(c)
	ctx, cancel := context.WithTimeout(l.ctx, l.spec.HandshakeTimeout.D())
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		c.Close() // releases the guard slot before the refusal shows in metrics
		l.refused.Inc()
		l.sl.env.Logger.Debug("tls handshake failed", "listener", l.sl.cfg.Load().ID(), "peer", c.Info().Peer.String(), "error", err)
		return
	}
	info := c.Info()
	if certs := tc.ConnectionState().PeerCertificates; len(certs) > 0 {
		info.PeerCert = certs[0]
		info.CertCN, info.CertDN = subjectOf(certs[0])
	}
	select {
	case l.ready <- c:
	case <-l.ctx.Done():
		c.Close()
	}
}

// tlsConnOf finds the *tls.Conn under the tcp listener's wrappers.
func tlsConnOf(c net.Conn) *tls.Conn {
	for {
		switch x := c.(type) {
		case *tls.Conn:
			return x
		case interface{ NetConn() net.Conn }:
			c = x.NetConn()
		default:
			return nil
		}
	}
}
