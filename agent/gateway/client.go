package gateway

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgeway/edgeway/agent/broker"
	"github.com/edgeway/edgeway/agent/hooks"
	"github.com/edgeway/edgeway/agent/metrics"
)

// Handler is the protocol channel's side of a client.
type Handler interface {
	// Deliver hands a message to the device. It follows broker.Deliverer's
	// rules: quick, in order, queue for the writer. The topic has the
	// mountpoint removed. QoS 1/2 deliveries are acknowledged with
	// Client.Ack(d.ID) when the device acknowledges them.
	Deliver(d Delivery)
	// Kick tells the channel the framework is ending the client (takeover,
	// API kick, listener or gateway stopped, auth expired). The channel
	// closes its connection; its later Client calls are ignored.
	Kick(reason string)
}

// Delivery is a message for a device.
type Delivery struct {
	ID       uint64 // pass to Client.Ack; 0 for QoS 0
	Topic    string // mountpoint removed
	Payload  []byte
	QoS      byte
	Retain   bool // a retained message sent on subscribe
	Dup      bool
	Filter   string // the device's own filter (mountpoint removed)
	Group    string // shared-subscription group, if any
	Headers  map[string]string
	Msg      *broker.Message // the shared message; do not modify
	ClientID string          // origin client id
}

// ConnectOptions shape a client's session.
type ConnectOptions struct {
	// CleanStart discards any session this clientid left behind.
	CleanStart bool
	// Expiry keeps the session after the client goes (0: removed at once;
	// negative: kept until a clean start).
	Expiry time.Duration
	// Held delivers nothing until Client.Resume, so the channel can send
	// its connect acknowledgement first.
	Held bool
	// MaxInflight and MaxQueueLen override the broker's session defaults.
	MaxInflight, MaxQueueLen int
}

// Client is a connected client of a gateway: the protocol publishes,
// subscribes and acknowledges through it.
type Client struct {
	gw   *Gateway
	l    *Listener
	info *ClientInfo
	h    Handler
	sess *broker.Session
	opts ConnectOptions

	connectedAt time.Time
	closed      atomic.Bool
	kicking     atomic.Bool
	closeOnce   sync.Once
	expiry      *time.Timer

	stats                         *metrics.Set
	msgsIn, msgsOut, acked, drops *metrics.Counter
	gwIn, gwOut                   *metrics.Counter
}

// Info is the client's identity. Treat it as read-only.
func (c *Client) Info() *ClientInfo { return c.info }

// ClientID is the client's id in its gateway.
func (c *Client) ClientID() string { return c.info.ClientID }

// Listener is the listener the client connected through.
func (c *Client) Listener() *Listener { return c.l }

// Gateway is the client's gateway.
func (c *Client) Gateway() *Gateway { return c.gw }

// ConnectedAt is when the client connected.
func (c *Client) ConnectedAt() time.Time { return c.connectedAt }

// Connected reports whether the client is still connected.
func (c *Client) Connected() bool { return !c.closed.Load() }

// Metrics is the client's counter set; nil with enable_stats = false.
func (c *Client) Metrics() *metrics.Set { return c.stats }

// Session returns broker-level statistics of the client's session.
func (c *Client) Session() broker.SessionStats { return c.sess.Stats() }

// deliverer is the broker side of a client; it is not a Kicker because
// the gateway ends its own clients (takeover is handled in Connect).
type deliverer struct{ c *Client }

func (d deliverer) Deliver(bd broker.Delivery) { d.c.deliver(bd) }

// Connect registers an authenticated client in the gateway's clients table
// and opens its broker session. A client already connected with the same
// clientid is taken over: it is kicked, and its session is resumed by the
// new one unless CleanStart. present reports whether a session was resumed.
func (l *Listener) Connect(ci *ClientInfo, h Handler, opts ConnectOptions) (c *Client, present bool, err error) {
	g := l.gw
	if ci.ClientID == "" {
		return nil, false, fmt.Errorf("gateway %s: empty clientid", g.kind.Name)
	}
	if ci.ConnectedAt.IsZero() {
		ci.ConnectedAt = time.Now()
	}
	c = &Client{gw: g, l: l, info: ci, h: h, opts: opts, connectedAt: ci.ConnectedAt}
	c.gwIn = g.stats.Counter("messages.received")
	c.gwOut = g.stats.Counter("messages.sent")
	if g.cfg.Load().EnableStats {
		c.stats = g.m.metrics.Set(clientKey(g.kind.Name, ci.ClientID), map[string]string{"gateway": g.kind.Name, "clientid": ci.ClientID})
		c.msgsIn = c.stats.Counter("messages.received")
		c.msgsOut = c.stats.Counter("messages.sent")
		c.acked = c.stats.Counter("messages.acked")
		c.drops = c.stats.Counter("messages.dropped")
	}

	// The session is opened before the client is published in the table,
	// so nobody can reach a Client without one. Opening it detaches the old
	// client's handle (a takeover), whose later calls then do nothing.
	sid := sessionID(g.kind.Name, ci.ClientID)
	_, existed := g.m.broker.Session(sid)
	c.sess, present = g.m.broker.OpenSession(sid, deliverer{c}, opts.CleanStart, broker.SessionOptions{
		MaxQueueLen: opts.MaxQueueLen, MaxInflight: opts.MaxInflight, Expiry: opts.Expiry, Held: opts.Held,
	})
	g.clientsMu.Lock()
	old := g.clients[ci.ClientID]
	g.clients[ci.ClientID] = c
	g.clientsMu.Unlock()
	if old != nil {
		old.takenOver()
	} else {
		g.connections.Inc()
	}
	hc := ci.HookClient()
	bus := g.m.hooks
	now := time.Now()
	if old != nil && bus.Enabled(hooks.SessionTakenover) {
		bus.Emit(hooks.Event{Name: hooks.SessionTakenover, Time: now, Client: hc})
	}
	if existed && !present && bus.Enabled(hooks.SessionDiscarded) {
		bus.Emit(hooks.Event{Name: hooks.SessionDiscarded, Time: now, Client: hc})
	}
	if present {
		if bus.Enabled(hooks.SessionResumed) {
			bus.Emit(hooks.Event{Name: hooks.SessionResumed, Time: now, Client: hc})
		}
	} else if bus.Enabled(hooks.SessionCreated) {
		bus.Emit(hooks.Event{Name: hooks.SessionCreated, Time: now, Client: hc})
	}
	if bus.Enabled(hooks.ClientConnected) {
		bus.Emit(hooks.Event{Name: hooks.ClientConnected, Time: now, Client: hc})
	}
	if !ci.ExpireAt.IsZero() {
		c.expiry = time.AfterFunc(time.Until(ci.ExpireAt), func() { c.Kick("auth_expired") })
	}
	return c, present, nil
}

func sessionID(gw, clientid string) string { return gw + "/" + clientid }
func clientKey(gw, clientid string) string { return "client/" + gw + "/" + clientid }

// takenOver ends the old client of a takeover without touching the table
// entry or the session, which now belong to the new client.
func (c *Client) takenOver() {
	if !c.closed.CompareAndSwap(false, true) {
		return
	}
	c.stopTimers()
	c.h.Kick("takenover")
}

func (c *Client) stopTimers() {
	if c.expiry != nil {
		c.expiry.Stop()
	}
}

// Hold stops deliveries until Resume (to send an acknowledgement first).
func (c *Client) Hold() { c.sess.Hold() }

// Resume ends Hold or ConnectOptions.Held.
func (c *Client) Resume() { c.sess.Resume() }

// Publish authorizes a publish from the device, adds the mountpoint and
// routes it through the broker (and the uplink's store, whose error is
// returned so the protocol can signal congestion). QoS 1/2 publishes are
// durable when Publish returns nil.
func (c *Client) Publish(topic string, payload []byte, qos byte, retain bool, headers map[string]string) error {
	if c.closed.Load() {
		return ErrClosed
	}
	g := c.gw
	if err := broker.ValidTopicName(topic); err != nil {
		return err
	}
	if !g.m.authorize(c.info, ActionPublish, topic) {
		c.drop("not_authorized")
		return fmt.Errorf("%w: publish to %q", ErrDenied, topic)
	}
	if !g.m.hooks.RunPublish(c.info.HookClient(), topic, payload, qos) {
		c.drop("hook_veto")
		return fmt.Errorf("%w: publish to %q vetoed by message.publish hook", ErrDenied, topic)
	}
	m := &broker.Message{
		Topic: Mount(c.info.Mountpoint, topic), Payload: payload, QoS: qos, Retain: retain,
		Gateway: g.kind.Name, ClientID: c.info.ClientID, Headers: headers,
	}
	if _, err := g.m.broker.Publish(m); err != nil {
		c.drop("publish_failed")
		return err
	}
	g.stats.Counter("messages.received").Inc()
	if c.msgsIn != nil {
		c.msgsIn.Inc()
	}
	return nil
}

func (c *Client) drop(reason string) {
	c.gw.stats.Counter("messages.dropped").Inc()
	c.gw.stats.Counter("delivery.dropped." + reason).Inc()
	if c.drops != nil {
		c.drops.Inc()
	}
}

// Authorize asks whether the client may publish or subscribe to topic,
// without doing it (a STOMP transaction checks every SEND before COMMIT
// applies any).
func (c *Client) Authorize(a Action, topic string) bool {
	return c.gw.m.authorize(c.info, a, topic)
}

// Subscribe authorizes and adds a subscription. Retained messages that
// match are delivered through the Handler, possibly before it returns.
func (c *Client) Subscribe(filter string, qos byte) error {
	if c.closed.Load() {
		return ErrClosed
	}
	g := c.gw
	if err := broker.ValidTopicFilter(filter); err != nil {
		return err
	}
	if !g.m.authorize(c.info, ActionSubscribe, filter) {
		return fmt.Errorf("%w: subscribe to %q", ErrDenied, filter)
	}
	if _, err := c.sess.Subscribe(Mount(c.info.Mountpoint, filter), qos); err != nil {
		return err
	}
	if g.m.hooks.Enabled(hooks.SessionSubscribed) {
		g.m.hooks.Emit(hooks.Event{Name: hooks.SessionSubscribed, Time: time.Now(), Client: c.info.HookClient(), Topic: filter, QoS: qos})
	}
	return nil
}

// Unsubscribe removes a subscription.
func (c *Client) Unsubscribe(filter string) error {
	if c.closed.Load() {
		return ErrClosed
	}
	mf := Mount(c.info.Mountpoint, filter)
	if err := c.sess.Unsubscribe(mf); err != nil {
		return err
	}
	g := c.gw
	if g.m.hooks.Enabled(hooks.SessionUnsubscribed) {
		g.m.hooks.Emit(hooks.Event{Name: hooks.SessionUnsubscribed, Time: time.Now(), Client: c.info.HookClient(), Topic: filter})
	}
	return nil
}

// Subscriptions lists the client's filters (mountpoint removed) and QoS.
func (c *Client) Subscriptions() map[string]byte {
	subs := c.sess.Subscriptions()
	out := make(map[string]byte, len(subs))
	for f, q := range subs {
		out[unmountFilter(c.info.Mountpoint, f)] = q
	}
	return out
}

func unmountFilter(mp, f string) string {
	if g, inner, ok := broker.SplitShared(f); ok {
		return "$share/" + g + "/" + Unmount(mp, inner)
	}
	return Unmount(mp, f)
}

// Ack acknowledges a QoS 1/2 delivery (PUBACK, or PUBCOMP for QoS 2).
func (c *Client) Ack(id uint64) {
	c.sess.Ack(id)
	if c.acked != nil {
		c.acked.Inc()
	}
	g := c.gw
	if g.m.hooks.Enabled(hooks.MessageAcked) {
		g.m.hooks.Emit(hooks.Event{Name: hooks.MessageAcked, Time: time.Now(), Client: c.info.HookClient()})
	}
}

func (c *Client) deliver(bd broker.Delivery) {
	if c.closed.Load() {
		return
	}
	mp := c.info.Mountpoint
	d := Delivery{
		ID: bd.ID, Topic: Unmount(mp, bd.Msg.Topic), Payload: bd.Msg.Payload, QoS: bd.QoS,
		Retain: bd.Retained, Dup: bd.Dup, Filter: Unmount(mp, bd.Filter), Group: bd.Group,
		Headers: bd.Msg.Headers, Msg: bd.Msg, ClientID: bd.Msg.ClientID,
	}
	c.h.Deliver(d)
	c.gwOut.Inc()
	if c.msgsOut != nil {
		c.msgsOut.Inc()
	}
	g := c.gw
	if g.m.hooks.Enabled(hooks.MessageDelivered) {
		g.m.hooks.Emit(hooks.Event{Name: hooks.MessageDelivered, Time: time.Now(), Client: c.info.HookClient(), Topic: d.Topic, QoS: d.QoS})
	}
}

// Close ends the client because the device left or the channel failed.
// A persistent session is kept (detached) for its expiry.
func (c *Client) Close(reason string) {
	if !c.closed.CompareAndSwap(false, true) {
		return
	}
	c.finish(reason)
}

// Kick ends the client from the framework's side (API, listener stop,
// auth expiry): the Handler is told to close its connection.
//
// The Handler is told before the client is marked closed, so a protocol
// can still publish the device's will from Kick.
func (c *Client) Kick(reason string) {
	if c.closed.Load() || !c.kicking.CompareAndSwap(false, true) {
		return
	}
	c.h.Kick(reason)
	if c.closed.CompareAndSwap(false, true) {
		c.finish(reason)
	}
}

func (c *Client) finish(reason string) {
	c.closeOnce.Do(func() {
		c.stopTimers()
		g := c.gw
		g.clientsMu.Lock()
		mine := g.clients[c.info.ClientID] == c
		if mine {
			delete(g.clients, c.info.ClientID)
		}
		g.clientsMu.Unlock()
		if mine {
			g.connections.Dec()
		}
		c.sess.Detach()
		if mine && c.stats != nil {
			g.m.metrics.Remove(clientKey(g.kind.Name, c.info.ClientID))
		}
		bus := g.m.hooks
		hc := c.info.HookClient()
		if bus.Enabled(hooks.ClientDisconnected) {
			bus.Emit(hooks.Event{Name: hooks.ClientDisconnected, Time: time.Now(), Client: hc, Reason: reason})
		}
		if c.opts.Expiry == 0 && bus.Enabled(hooks.SessionTerminated) {
			bus.Emit(hooks.Event{Name: hooks.SessionTerminated, Time: time.Now(), Client: hc, Reason: reason})
		}
	})
}

// WaitContext is a helper for protocols: a context that ends when the
// client closes or parent ends.
func (c *Client) WaitContext(parent context.Context) context.Context {
	ctx, cancel := context.WithCancel(parent)
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if c.closed.Load() {
					cancel()
					return
				}
			}
		}
	}()
	return ctx
}
