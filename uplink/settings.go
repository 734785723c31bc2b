package uplink

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/edgeway/edgeway/agent/broker"
	"github.com/edgeway/edgeway/agent/config"
)

// Bounds of keepalive = "auto".
const (
	autoKeepaliveMin   = 15 * time.Second
	autoKeepaliveMax   = 300 * time.Second
	autoKeepaliveStart = 25 * time.Second
)

// readBatch is how many messages one Queue.Read asks for at least.
const readBatch = 256

// eventsGateway marks stored messages whose Topic is already the upstream
// topic (presence events): no topic_prefix is added to them. No gateway
// kind can be named like this.
const eventsGateway = "$uplink"

// settings is config.Uplink checked and resolved: templates rendered,
// the server URL split, durations in time.Duration.
type settings struct {
	server    string // as configured, without any user:password@
	scheme    string // mqtt, mqtts, ws, wss (tcp, ssl, tls normalised)
	addr      string // host:port to dial
	host      string // host part, the default TLS server name
	wsURL     string // ws(s)://host:port/path for websocket schemes
	secure    bool
	websocket bool

	clientID     string
	username     string
	password     []byte
	cleanSession bool

	keepalive      time.Duration // fixed value, or the starting value with auto
	autoKeepalive  bool
	pingTimeout    time.Duration
	connectTimeout time.Duration
	backoffInitial time.Duration
	backoffMax     time.Duration
	backoffJitter  float64

	maxInflight int
	prefix      string
	storeQoS0   bool
	drainRate   int
	statusTopic string
	eventsTopic string
	forward     []string
	downlink    []string
	envelope    bool
	echoWindow  time.Duration
	tls         config.UplinkTLS

	quarantineAfter int
	quarantineMax   int64
}

func resolve(cfg config.Uplink, vars config.Vars) (*settings, error) {
	var errs []error
	bad := func(key, format string, args ...any) { errs = append(errs, config.Field(key, format, args...)) }

	s := &settings{
		clientID:       cfg.ClientID.Render(vars),
		username:       cfg.Username,
		password:       []byte(cfg.Password.Reveal()),
		cleanSession:   cfg.CleanSession,
		pingTimeout:    cfg.PingTimeout.D(),
		connectTimeout: cfg.ConnectTimeout.D(),
		backoffInitial: cfg.Backoff.Initial.D(),
		backoffMax:     cfg.Backoff.Max.D(),
		backoffJitter:  cfg.Backoff.Jitter,
		maxInflight:    cfg.MaxInflight,
		prefix:         cfg.TopicPrefix.Render(vars),
		storeQoS0:      cfg.StoreQoS0,
		drainRate:      cfg.DrainRate,
		statusTopic:    cfg.StatusTopic.Render(vars),
		eventsTopic:    cfg.EventsTopic.Render(vars),
		forward:        append([]string(nil), cfg.Forward...),
		downlink:       append([]string(nil), cfg.Downlink...),
		envelope:       cfg.Envelope == "json",
		echoWindow:     cfg.EchoWindow.D(),
		tls:            cfg.TLS,

		quarantineAfter: cfg.QuarantineAfter,
		quarantineMax:   int64(cfg.QuarantineMaxBytes),
	}
	if err := s.parseServer(cfg.Server); err != nil {
		bad("server", "%v", err)
	}
	if cfg.Keepalive == "auto" {
		s.autoKeepalive = true
		s.keepalive = autoKeepaliveStart
	} else if k, err := config.ParseDuration(cfg.Keepalive); err != nil {
		bad("keepalive", "%v (or \"auto\")", err)
	} else if k < time.Second || k > 65535*time.Second {
		bad("keepalive", "must be between 1s and 65535s (or \"auto\"), got %q", cfg.Keepalive)
	} else {
		s.keepalive = k
	}
	if s.pingTimeout <= 0 {
		bad("ping_timeout", "must be positive")
	}
	if s.connectTimeout <= 0 {
		bad("connect_timeout", "must be positive")
	}
	if s.backoffInitial <= 0 {
		s.backoffInitial = time.Second
	}
	if s.backoffMax < s.backoffInitial {
		s.backoffMax = s.backoffInitial
	}
	if s.backoffJitter < 0 || s.backoffJitter > 1 {
		bad("backoff.jitter", "must be between 0 and 1, got %v", s.backoffJitter)
	}
	if s.maxInflight < 1 || s.maxInflight > 65535 {
		bad("max_inflight", "must be 1..65535, got %d", s.maxInflight)
	}
	if s.drainRate < 0 {
		bad("drain_rate", "must not be negative")
	}
	if s.clientID == "" && !s.cleanSession {
		bad("client_id", "must not be empty with clean_session = false")
	}
	if strings.ContainsAny(s.prefix, "+#") {
		bad("topic_prefix", "must not contain wildcards, got %q", s.prefix)
	}
	for _, kt := range [][2]string{{"status_topic", s.statusTopic}, {"events_topic", s.eventsTopic}} {
		if kt[1] != "" {
			if err := broker.ValidTopicName(kt[1]); err != nil {
				bad(kt[0], "%v", err)
			}
		}
	}
	for i, f := range s.forward {
		if err := broker.ValidTopicFilter(f); err != nil {
			bad(fmt.Sprintf("forward[%d]", i), "%v", err)
		}
	}
	for i, f := range s.downlink {
		if err := broker.ValidTopicFilter(f); err != nil {
			bad(fmt.Sprintf("downlink[%d]", i), "%v", err)
		}
	}
	switch cfg.Envelope {
	case "", "none", "json":
	default:
		bad("envelope", "must be \"none\" or \"json\", got %q", cfg.Envelope)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("uplink: %w", errors.Join(errs...))
	}
	return s, nil
}

// parseServer fills the address fields from server.
func (s *settings) parseServer(server string) error {
	if server == "" {
		return errors.New("not set")
	}
	u, err := url.Parse(server)
	if err != nil {
		// url's error repeats the input, which may hold a password.
		return errors.New("want scheme://host:port")
	}
	u.User = nil // never repeated in logs or errors
	switch u.Scheme {
	case "mqtt", "tcp":
		s.scheme = "mqtt"
	case "mqtts", "ssl", "tls":
		s.scheme, s.secure = "mqtts", true
	case "ws":
		s.scheme, s.websocket = "ws", true
	case "wss":
		s.scheme, s.secure, s.websocket = "wss", true, true
	default:
		return fmt.Errorf("unsupported scheme %q (mqtt, mqtts, ws, wss)", u.Scheme)
	}
	host, port := u.Hostname(), u.Port()
	if host == "" {
		return fmt.Errorf("no host in %q", u.String())
	}
	if port == "" {
		port = map[string]string{"mqtt": "1883", "mqtts": "8883", "ws": "80", "wss": "443"}[s.scheme]
	}
	s.host = host
	s.addr = net.JoinHostPort(host, port)
	s.server = u.String()
	if s.websocket {
		path := u.EscapedPath()
		if path == "" {
			path = "/mqtt"
		}
		s.wsURL = s.scheme + "://" + s.addr + path
		if u.RawQuery != "" {
			s.wsURL += "?" + u.RawQuery
		}
	}
	return nil
}

// forwards reports whether a local topic goes upstream.
func (s *settings) forwards(topic string) bool {
	for _, f := range s.forward {
		if broker.Match(f, topic) {
			return true
		}
	}
	return false
}

// mirrors reports whether a local subscription to filter (without any
// $share/ part) is mirrored upstream.
func (s *settings) mirrors(filter string) bool {
	if strings.HasPrefix(filter, "$") {
		return false // $SYS and the like are local
	}
	for _, d := range s.downlink {
		if covers(d, filter) {
			return true
		}
	}
	return false
}

// covers reports whether every topic that filter f matches is also
// matched by filter d.
func covers(d, f string) bool {
	for {
		dl, drest, dmore := strings.Cut(d, "/")
		fl, frest, fmore := strings.Cut(f, "/")
		switch {
		case dl == "#":
			return true
		case fl == "#":
			return false // f reaches any depth, d does not
		case dl == "+":
			// any one level, an empty one or f's own "+" included
		case dl != fl:
			return false
		}
		if !dmore && !fmore {
			return true
		}
		if !fmore {
			// f ends here; d continues: d matches f's topics only if what
			// is left of d is "#" (a/# matches a).
			return drest == "#"
		}
		if !dmore {
			return false
		}
		d, f = drest, frest
	}
}
