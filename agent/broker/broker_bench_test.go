package broker

import (
	"fmt"
	"math/rand"
	"testing"
)

type nopDeliverer struct{}

func (nopDeliverer) Deliver(Delivery) {}

// ackDeliverer acknowledges each delivery as it arrives, like a client on
// a fast link.
type ackDeliverer struct{ s *Session }

func (a *ackDeliverer) Deliver(d Delivery) {
	if d.ID != 0 {
		a.s.Ack(d.ID)
	}
}

// benchBroker builds a broker with n subscriptions in the shapes of a
// gateway fleet: per device a single-level wildcard, an exact topic, a
// command subtree and a cross-device alarm filter, spread over 1000
// sessions, plus one '#' per site (1%). It returns topics to publish, most of
// which match two to four subscriptions.
func benchBroker(tb testing.TB, n int) (*Broker, []string) {
	const sessions = 1000
	b := New(Options{})
	ss := make([]*Session, sessions)
	for i := range ss {
		ss[i], _ = b.OpenSession(fmt.Sprint("s", i), nopDeliverer{}, true, SessionOptions{})
	}
	devices := n / 4
	sites := max(1, devices/25)
	for i := 0; i < n; i++ {
		j := i / 4
		site, dev := j%sites, j/sites
		var f string
		switch i % 4 {
		case 0:
			f = fmt.Sprintf("site/%d/dev/%d/+", site, dev)
		case 1:
			f = fmt.Sprintf("site/%d/dev/%d/temp", site, dev)
		case 2:
			f = fmt.Sprintf("site/%d/dev/%d/cmd/#", site, dev)
		case 3:
			f = fmt.Sprintf("site/%d/+/%d/alarm", site, dev)
		}
		if _, err := ss[i%sessions].Subscribe(f, byte(i%3)); err != nil {
			tb.Fatal(err)
		}
	}
	for site := 0; site < sites; site++ {
		if _, err := ss[site%sessions].Subscribe(fmt.Sprintf("site/%d/#", site), 0); err != nil {
			tb.Fatal(err)
		}
	}
	r := rand.New(rand.NewSource(1))
	topics := make([]string, 4096)
	kinds := []string{"temp", "hum", "alarm", "cmd/reboot"}
	for i := range topics {
		topics[i] = fmt.Sprintf("site/%d/dev/%d/%s", r.Intn(sites), r.Intn(devices/sites), kinds[r.Intn(len(kinds))])
	}
	return b, topics
}

func benchMatch(b *testing.B, n int) {
	br, topics := benchBroker(b, n)
	defer br.Close()
	if st := br.Stats(); st.Subscriptions < n*9/10 {
		b.Fatalf("only %d subscriptions", st.Subscriptions)
	}
	sc := &scratch{}
	total := 0
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// The routing half of Publish: trie lookup and per-session merge.
		br.mu.RLock()
		sc.hits = br.trie.match(topics[i&(len(topics)-1)], sc.hits[:0])
		br.mu.RUnlock()
		total += len(sc.dedup())
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pubs/s")
	b.ReportMetric(float64(total)/float64(b.N), "matches/pub")
}

func BenchmarkMatch10k(b *testing.B)  { benchMatch(b, 10_000) }
func BenchmarkMatch100k(b *testing.B) { benchMatch(b, 100_000) }

// BenchmarkPublish10k is a whole Publish into the 10k-subscription broker,
// delivering to no-op Deliverers.
func BenchmarkPublish10k(b *testing.B) {
	br, topics := benchBroker(b, 10_000)
	defer br.Close()
	msgs := make([]*Message, len(topics))
	for i, t := range topics {
		msgs[i] = &Message{Topic: t, Payload: []byte("21.5")}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := br.Publish(msgs[i&(len(msgs)-1)]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pubs/s")
}

// BenchmarkPublishOneSubscriber measures one publish through the broker to
// one session. The message is reused, so allocs/op is the broker's own.
func BenchmarkPublishOneSubscriber(b *testing.B) {
	for _, qos := range []byte{0, 1} {
		b.Run(fmt.Sprint("qos", qos), func(b *testing.B) {
			br := New(Options{})
			defer br.Close()
			ad := &ackDeliverer{}
			var d Deliverer = nopDeliverer{}
			if qos > 0 {
				d = ad
			}
			s, _ := br.OpenSession("sub", d, true, SessionOptions{})
			ad.s = s
			if _, err := s.Subscribe("site/1/dev/+/temp", qos); err != nil {
				b.Fatal(err)
			}
			m := &Message{Topic: "site/1/dev/7/temp", QoS: qos, Payload: []byte("21.5")}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if n, err := br.Publish(m); n != 1 || err != nil {
					b.Fatal(n, err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pubs/s")
			if st := s.Stats(); st.Inflight != 0 || st.Dropped != 0 {
				b.Fatalf("stats %+v", st)
			}
		})
	}
}

// BenchmarkPublishParallel has every P publish QoS 0 to one subscriber,
// the contended case for the session lock.
func BenchmarkPublishParallel(b *testing.B) {
	br := New(Options{})
	defer br.Close()
	s, _ := br.OpenSession("sub", nopDeliverer{}, true, SessionOptions{})
	if _, err := s.Subscribe("site/+/dev/+/temp", 0); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		m := &Message{Topic: "site/1/dev/7/temp", Payload: []byte("21.5")}
		for pb.Next() {
			br.Publish(m)
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pubs/s")
}
