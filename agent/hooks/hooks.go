// Package hooks is edgeway's event bus. It carries EMQX 5's hook points
// (client.connected, session.subscribed, message.dropped, …) from the
// gateway framework, the broker and the protocols to whoever wants them:
// metrics, the status page's event log, the uplink's presence messages.
//
// There are two kinds of hooks.
//
// Notifications (Emit, Subscribe) are asynchronous. Each consumer owns a
// bounded queue served by one goroutine that the Bus starts and stops; a
// consumer that falls behind loses events, which are counted (Dropped),
// and never slows down the device that caused them. An event nobody
// subscribed to costs one atomic load (plus a map lookup when other names
// have consumers) and allocates nothing, so producers may emit freely;
// use Enabled to skip building an Event that nobody will read.
//
// Vetoes (OnAuthenticate, OnAuthorize, OnPublish and their Run…
// counterparts) run in line, in the caller's goroutine, because their
// answer decides what happens to the client or the message. With no
// handler registered they cost one atomic load and allocate nothing.
//
// The zero-cost paths also hold for a nil *Bus, so a component built
// without hooks (in a unit test, say) needs no special case.
package hooks

import "time"

// Name is a hook point. The constants below are EMQX 5's names; a
// protocol may emit names of its own, which consumers can subscribe to
// like any other.
type Name string

// EMQX 5 hook points.
const (
	ClientConnected     Name = "client.connected"
	ClientDisconnected  Name = "client.disconnected"
	ClientAuthenticate  Name = "client.authenticate"
	ClientAuthorize     Name = "client.authorize"
	SessionCreated      Name = "session.created"
	SessionSubscribed   Name = "session.subscribed"
	SessionUnsubscribed Name = "session.unsubscribed"
	SessionResumed      Name = "session.resumed"
	SessionDiscarded    Name = "session.discarded"
	SessionTakenover    Name = "session.takenover"
	SessionTerminated   Name = "session.terminated"
	MessagePublish      Name = "message.publish"
	MessageDelivered    Name = "message.delivered"
	MessageAcked        Name = "message.acked"
	MessageDropped      Name = "message.dropped"
)

// All lists the EMQX hook points in the order EMQX documents them.
// Treat it as read-only.
var All = []Name{
	ClientConnected,
	ClientDisconnected,
	ClientAuthenticate,
	ClientAuthorize,
	SessionCreated,
	SessionSubscribed,
	SessionUnsubscribed,
	SessionResumed,
	SessionDiscarded,
	SessionTakenover,
	SessionTerminated,
	MessagePublish,
	MessageDelivered,
	MessageAcked,
	MessageDropped,
}

// Client identifies the client an event is about. It holds strings only,
// so a consumer may keep it after the client is gone.
type Client struct {
	Gateway  string // gateway kind, e.g. "mqttsn"
	Listener string // listener id, e.g. "mqttsn:udp:default"
	ClientID string
	Username string
	PeerHost string // "host:port" as seen by the listener
	Protocol string // protocol name and version, e.g. "mqtt-sn/1.2"
}

// Event is a notification. Fields that do not apply to the hook point are
// zero.
//
// An Event is shared by every consumer that receives it: consumers must
// treat Payload and Attrs as read-only, and a producer must not modify
// them after Emit.
type Event struct {
	Name Name
	// Time is when it happened. Emit sets it to time.Now() when zero and
	// at least one consumer wants the event.
	Time   time.Time
	Client Client

	Topic string
	QoS   byte
	// Payload is set for message.* events only, nil otherwise. It is not
	// copied: a queued event keeps its payload alive, so a consumer queue
	// of N events may hold N payloads. Consumers should not retain
	// payloads past the call, and should copy only what they need; size
	// the queue of a consumer that reads payloads with that in mind.
	Payload []byte

	// Reason says why: the disconnect reason for client.disconnected, the
	// drop reason for message.dropped ("queue_full", "no_subscribers",
	// "store_full", …), the outcome of client.authenticate, and so on.
	Reason string
	// Attrs holds optional extras (packet id, session expiry, …).
	Attrs map[string]string
}
