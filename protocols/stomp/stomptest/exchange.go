// Package stomptest holds STOMP test helpers meant to be reused by tests
// outside protocols/stomp: the agent's end-to-end test runs Exchange with
// a real MQTT broker behind the uplink as the Peer, the STOMP package's
// own test with the local broker.
package stomptest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/go-stomp/stomp/v3"
	"github.com/go-stomp/stomp/v3/frame"
)

// Message is what the MQTT side received.
type Message struct {
	Topic   string
	Payload []byte
}

// Peer is the MQTT side of an exchange.
type Peer interface {
	// Subscribe starts receiving on filter; it returns once the
	// subscription is in place. Every message that arrives on filter is
	// sent to the channel.
	Subscribe(filter string) (<-chan Message, error)
	// Publish sends one message.
	Publish(topic string, payload []byte) error
}

// Options describe one exchange.
type Options struct {
	// N messages go each way (default 1000).
	N int
	// QoS of the SENDs (the `qos` header) and of the subscription's ack
	// mode: with QoS > 0 the STOMP subscription is client-individual and
	// acknowledges each message.
	QoS byte
	// UpDest is the STOMP destination of the SENDs; PeerUpFilter is what
	// the peer subscribes to see them (the destination with the
	// mountpoint, and the uplink's prefix, in front).
	UpDest, PeerUpFilter string
	// DownDest is the STOMP subscription; PeerDownTopic is where the peer
	// publishes to reach it.
	DownDest, PeerDownTopic string
	// Timeout bounds each direction (default 30s).
	Timeout time.Duration
}

// Result reports what the exchange measured.
type Result struct {
	Up, Down time.Duration
}

// Exchange sends N SEND frames over c and checks the peer receives each
// exactly once and in order, then has the peer publish N messages and
// checks the STOMP subscription receives each exactly once and in order.
// Both directions first probe until a message gets through, so
// subscriptions that travel (to a cloud broker) are in place.
func Exchange(ctx context.Context, c *stomp.Conn, p Peer, o Options) (Result, error) {
	if o.N == 0 {
		o.N = 1000
	}
	if o.Timeout == 0 {
		o.Timeout = 30 * time.Second
	}
	var res Result
	qos := stomp.SendOpt.Header("qos", strconv.Itoa(int(o.QoS)))

	// STOMP → MQTT.
	up, err := p.Subscribe(o.PeerUpFilter)
	if err != nil {
		return res, fmt.Errorf("peer subscribe %s: %w", o.PeerUpFilter, err)
	}
	probe := func(send func() error, got func() (bool, error)) error {
		deadline := time.Now().Add(o.Timeout)
		for time.Now().Before(deadline) {
			if err := send(); err != nil {
				return err
			}
			ok, err := got()
			if err != nil || ok {
				return err
			}
		}
		return errors.New("probe never got through")
	}
	err = probe(
		func() error { return c.Send(o.UpDest, "text/plain", []byte("probe"), qos) },
		func() (bool, error) { return waitProbe(ctx, up, 200*time.Millisecond) },
	)
	if err != nil {
		return res, fmt.Errorf("up probe: %w", err)
	}
	start := time.Now()
	for i := range o.N {
		opts := []func(*frame.Frame) error{qos}
		if i == o.N-1 {
			opts = append(opts, stomp.SendOpt.Receipt)
		}
		if err := c.Send(o.UpDest, "text/plain", payload("up", i), opts...); err != nil {
			return res, fmt.Errorf("send %d: %w", i, err)
		}
	}
	if err := expect(ctx, o, "up", func() (Message, error) { return recvPeer(ctx, up, o.Timeout) }); err != nil {
		return res, err
	}
	res.Up = time.Since(start)

	// MQTT → STOMP.
	mode := stomp.AckAuto
	if o.QoS > 0 {
		mode = stomp.AckClientIndividual
	}
	sub, err := c.Subscribe(o.DownDest, mode)
	if err != nil {
		return res, fmt.Errorf("stomp subscribe %s: %w", o.DownDest, err)
	}
	// Not unsubscribed: go-stomp v3.1.3 can miss the wake-up for its
	// UNSUBSCRIBE receipt and wait out its whole timeout. The caller's
	// disconnect ends the subscription.
	// ACKs go out from their own goroutine: go-stomp's connection loop
	// blocks handing a MESSAGE to a full subscription channel while an
	// ACK waits for that loop, so acking where messages are read
	// deadlocks once the server's window exceeds go-stomp's buffers.
	acks := make(chan *stomp.Message, o.N+64)
	ackErr := make(chan error, 1)
	go func() {
		var err error
		for m := range acks {
			if err == nil {
				err = c.Ack(m)
			}
		}
		ackErr <- err
	}()
	defer func() {
		close(acks)
		<-ackErr
	}()
	recv := func(wait time.Duration) (Message, error) {
		select {
		case m, ok := <-sub.C:
			if !ok {
				return Message{}, errors.New("subscription closed")
			}
			if m.Err != nil {
				return Message{}, m.Err
			}
			if m.ShouldAck() {
				acks <- m
			}
			return Message{Topic: m.Destination, Payload: m.Body}, nil
		case <-time.After(wait):
			return Message{}, errTimeout
		case <-ctx.Done():
			return Message{}, ctx.Err()
		}
	}
	err = probe(
		func() error { return p.Publish(o.PeerDownTopic, []byte("probe")) },
		func() (bool, error) {
			for {
				m, err := recv(200 * time.Millisecond)
				if errors.Is(err, errTimeout) {
					return false, nil
				}
				if err != nil {
					return false, err
				}
				if string(m.Payload) == "probe" {
					return true, nil
				}
			}
		},
	)
	if err != nil {
		return res, fmt.Errorf("down probe: %w", err)
	}
	start = time.Now()
	for i := range o.N {
		if err := p.Publish(o.PeerDownTopic, payload("down", i)); err != nil {
			return res, fmt.Errorf("peer publish %d: %w", i, err)
		}
	}
	if err := expect(ctx, o, "down", func() (Message, error) { return recv(o.Timeout) }); err != nil {
		return res, err
	}
	res.Down = time.Since(start)
	return res, nil
}

var errTimeout = errors.New("timed out")

func payload(dir string, i int) []byte { return fmt.Appendf(nil, "%s-%05d", dir, i) }

// expect reads until N numbered payloads of dir arrived in order, skipping
// late probes.
func expect(ctx context.Context, o Options, dir string, next func() (Message, error)) error {
	for i := 0; i < o.N; {
		m, err := next()
		if err != nil {
			return fmt.Errorf("%s: after %d of %d messages: %w", dir, i, o.N, err)
		}
		if string(m.Payload) == "probe" {
			continue
		}
		if want := payload(dir, i); !bytes.Equal(m.Payload, want) {
			return fmt.Errorf("%s: message %d is %q, want %q (lost, duplicated or reordered)", dir, i, m.Payload, want)
		}
		i++
	}
	return ctx.Err()
}

func recvPeer(ctx context.Context, ch <-chan Message, wait time.Duration) (Message, error) {
	select {
	case m := <-ch:
		return m, nil
	case <-time.After(wait):
		return Message{}, errTimeout
	case <-ctx.Done():
		return Message{}, ctx.Err()
	}
}

func waitProbe(ctx context.Context, ch <-chan Message, wait time.Duration) (bool, error) {
	for {
		m, err := recvPeer(ctx, ch, wait)
		if errors.Is(err, errTimeout) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if string(m.Payload) == "probe" {
			return true, nil
		}
	}
}
