package api

import (
	"errors"
	"net/http"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/edgeway/edgeway/agent/gateway"
)

// clientFilter is the query of GET /gateways/{name}/clients, EMQX's names.
type clientFilter struct {
	clientid, username, ip, likeClientID, likeUsername string
	endpoint, likeEndpoint, listener                   string
	none                                               bool // conn_state asks for clients that cannot be here
	gteConn, lteConn                                   time.Time
	gteLifetime, lteLifetime                           int64
	hasGteLifetime, hasLteLifetime                     bool
}

var clientParams = []string{"page", "limit", "node", "clientid", "username", "ip_address", "conn_state",
	"like_clientid", "like_username", "gte_created_at", "lte_created_at", "gte_connected_at", "lte_connected_at",
	"endpoint_name", "like_endpoint_name", "gte_lifetime", "lte_lifetime", "listener_id"}

func parseClientFilter(r *http.Request) (clientFilter, error) {
	q := r.URL.Query()
	for k := range q {
		known := false
		for _, p := range clientParams {
			if k == p {
				known = true
				break
			}
		}
		if !known {
			return clientFilter{}, badRequest("%s: unknown query parameter (known: %s)", k, strings.Join(clientParams, ", "))
		}
	}
	f := clientFilter{
		clientid: q.Get("clientid"), username: q.Get("username"), ip: q.Get("ip_address"),
		likeClientID: q.Get("like_clientid"), likeUsername: q.Get("like_username"),
		endpoint: q.Get("endpoint_name"), likeEndpoint: q.Get("like_endpoint_name"), listener: q.Get("listener_id"),
	}
	if f.ip != "" {
		a, err := netip.ParseAddr(f.ip)
		if err != nil {
			return f, badRequest("ip_address: bad address %q", f.ip)
		}
		f.ip = a.Unmap().String()
	}
	switch cs := q.Get("conn_state"); cs {
	case "", "connected":
	case "disconnected", "idle":
		// The clients table holds connected clients only.
		f.none = true
	default:
		return f, badRequest("conn_state: want connected, disconnected or idle, got %q", cs)
	}
	for _, p := range []struct {
		key string
		dst *time.Time
	}{{"gte_created_at", &f.gteConn}, {"gte_connected_at", &f.gteConn}, {"lte_created_at", &f.lteConn}, {"lte_connected_at", &f.lteConn}} {
		if v := q.Get(p.key); v != "" {
			t, err := parseAPITime(v)
			if err != nil {
				return f, badRequest("%s: %v", p.key, err)
			}
			*p.dst = t
		}
	}
	for _, p := range []struct {
		key string
		dst *int64
		has *bool
	}{{"gte_lifetime", &f.gteLifetime, &f.hasGteLifetime}, {"lte_lifetime", &f.lteLifetime, &f.hasLteLifetime}} {
		if v := q.Get(p.key); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return f, badRequest("%s: want an integer of seconds, got %q", p.key, v)
			}
			*p.dst, *p.has = n, true
		}
	}
	return f, nil
}

// parseAPITime takes RFC 3339 or a Unix time in seconds or milliseconds.
func parseAPITime(v string) (time.Time, error) {
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n > 1e12 {
			return time.UnixMilli(n), nil
		}
		return time.Unix(n, 0), nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, errors.New("want RFC 3339 or Unix seconds or milliseconds, got " + strconv.Quote(v))
	}
	return t, nil
}

func (f *clientFilter) match(c *gateway.Client) bool {
	if f.none {
		return false
	}
	ci := c.Info()
	switch {
	case f.clientid != "" && ci.ClientID != f.clientid,
		f.username != "" && ci.Username != f.username,
		f.ip != "" && ci.PeerHost() != f.ip,
		f.likeClientID != "" && !strings.Contains(ci.ClientID, f.likeClientID),
		f.likeUsername != "" && !strings.Contains(ci.Username, f.likeUsername),
		f.listener != "" && ci.ListenerID != f.listener,
		f.endpoint != "" && ci.Fields["endpoint_name"] != f.endpoint,
		f.likeEndpoint != "" && !strings.Contains(ci.Fields["endpoint_name"], f.likeEndpoint),
		!f.gteConn.IsZero() && c.ConnectedAt().Before(f.gteConn),
		!f.lteConn.IsZero() && c.ConnectedAt().After(f.lteConn):
		return false
	}
	if f.hasGteLifetime || f.hasLteLifetime {
		lt, err := strconv.ParseInt(ci.Fields["lifetime"], 10, 64)
		if err != nil || f.hasGteLifetime && lt < f.gteLifetime || f.hasLteLifetime && lt > f.lteLifetime {
			return false
		}
	}
	return true
}

// clientJSON is a client as EMQX's API shows one; details add counters.
func (s *Server) clientJSON(c *gateway.Client, details bool) map[string]any {
	ci := c.Info()
	m := map[string]any{
		"node":         s.a.ID(),
		"gateway":      ci.Gateway,
		"clientid":     ci.ClientID,
		"username":     ci.Username,
		"proto_name":   ci.Protocol,
		"ip_address":   ci.PeerHost(),
		"port":         0,
		"listener_id":  ci.ListenerID,
		"mountpoint":   ci.Mountpoint,
		"is_superuser": ci.IsSuperuser,
		"is_bridge":    false,
		"connected":    c.Connected(),
		"connected_at": apiTime(c.ConnectedAt()),
		"created_at":   apiTime(c.ConnectedAt()),
	}
	if ci.Peer.IsValid() {
		m["port"] = ci.Peer.Port()
	}
	if v, ok := ci.Fields["endpoint_name"]; ok {
		m["endpoint_name"] = v
	}
	if v, ok := ci.Fields["lifetime"]; ok {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			m["lifetime"] = n
		}
	}
	if v, ok := ci.Fields["proto_ver"]; ok {
		m["proto_ver"] = v
	}
	if !details {
		return m
	}
	if len(ci.Fields) > 0 {
		m["fields"] = ci.Fields
	}
	if len(ci.ClientAttrs) > 0 {
		m["client_attrs"] = ci.ClientAttrs
	}
	if ci.CertCN != "" {
		m["cert_common_name"] = ci.CertCN
	}
	if !ci.ExpireAt.IsZero() {
		m["expire_at"] = apiTime(ci.ExpireAt)
	}
	st := c.Session()
	m["subscriptions_cnt"] = st.Subscriptions
	m["inflight_cnt"] = st.Inflight
	m["mqueue_len"] = st.Queued
	m["mqueue_dropped"] = st.Dropped
	m["delivered"] = st.Delivered
	m["redelivered"] = st.Redelivered
	if ms := c.Metrics(); ms != nil {
		snap := ms.Snapshot()
		m["recv_msg"] = uint64(snap["messages.received"])
		m["send_msg"] = uint64(snap["messages.sent"])
		m["metrics"] = snap
	}
	return m
}

func (s *Server) listClients(w http.ResponseWriter, r *http.Request) {
	g, err := s.loaded(r.PathValue("name"))
	if err != nil {
		s.writeErr(w, err)
		return
	}
	page, limit, err := paging(r, 100)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	f, err := parseClientFilter(r)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	from := (page - 1) * limit
	count := 0
	data := []map[string]any{}
	for _, c := range g.Clients() {
		if !f.match(c) {
			continue
		}
		if count >= from && count < from+limit {
			data = append(data, s.clientJSON(c, false))
		}
		count++
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": data, "meta": Meta{Page: page, Limit: limit, Count: count, HasNext: from+limit < count}})
}

func (s *Server) client(r *http.Request) (*gateway.Client, error) {
	g, err := s.loaded(r.PathValue("name"))
	if err != nil {
		return nil, err
	}
	id := r.PathValue("clientid")
	c, ok := g.Client(id)
	if !ok {
		return nil, errorf(http.StatusNotFound, "CLIENTID_NOT_FOUND", "no client %q in gateway %s", id, g.Name())
	}
	return c, nil
}

func (s *Server) getClient(w http.ResponseWriter, r *http.Request) {
	c, err := s.client(r)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, s.clientJSON(c, true))
}

func (s *Server) kickClient(w http.ResponseWriter, r *http.Request) {
	c, err := s.client(r)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	c.Kick("kicked")
	s.log.Info("client kicked", "gateway", c.Gateway().Name(), "clientid", c.ClientID(), "by", principalOf(r).name)
	w.WriteHeader(http.StatusNoContent)
}

type subJSON struct {
	ClientID string `json:"clientid,omitempty"`
	Topic    string `json:"topic"`
	QoS      byte   `json:"qos"`
	NL       int    `json:"nl"`
	RAP      int    `json:"rap"`
	RH       int    `json:"rh"`
}

func (s *Server) listSubs(w http.ResponseWriter, r *http.Request) {
	c, err := s.client(r)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	subs := c.Subscriptions()
	out := make([]subJSON, 0, len(subs))
	for t, q := range subs {
		out = append(out, subJSON{Topic: t, QoS: q})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Topic < out[j].Topic })
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) addSub(w http.ResponseWriter, r *http.Request) {
	c, err := s.client(r)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	body, err := readTable(r)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	topic, ok := body["topic"].(string)
	if !ok || topic == "" {
		s.writeErr(w, badRequest("topic: required, a topic filter"))
		return
	}
	var qos int64
	if v, ok := body["qos"]; ok {
		if qos, ok = v.(int64); !ok || qos < 0 || qos > 2 {
			s.writeErr(w, badRequest("qos: want 0, 1 or 2"))
			return
		}
	}
	for k := range body {
		switch k {
		case "topic", "qos", "nl", "rap", "rh", "sub_props":
		default:
			s.writeErr(w, badRequest("%s: unknown field (topic, qos)", k))
			return
		}
	}
	if err := c.Subscribe(topic, byte(qos)); err != nil {
		if errors.Is(err, gateway.ErrDenied) {
			s.writeErr(w, errorf(http.StatusForbidden, "NOT_AUTHORIZED", "%v", err))
			return
		}
		if errors.Is(err, gateway.ErrClosed) {
			s.writeErr(w, errorf(http.StatusNotFound, "CLIENTID_NOT_FOUND", "client %q has gone", c.ClientID()))
			return
		}
		s.writeErr(w, badRequest("topic: %v", err))
		return
	}
	writeJSON(w, http.StatusCreated, subJSON{ClientID: c.ClientID(), Topic: topic, QoS: byte(qos)})
}

func (s *Server) deleteSub(w http.ResponseWriter, r *http.Request) {
	c, err := s.client(r)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	topic := r.PathValue("topic")
	if _, ok := c.Subscriptions()[topic]; !ok {
		s.writeErr(w, notFound("client %q has no subscription %q", c.ClientID(), topic))
		return
	}
	if err := c.Unsubscribe(topic); err != nil {
		s.writeErr(w, badRequest("topic: %v", err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
