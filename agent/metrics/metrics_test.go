package metrics_test

import (
	"maps"
	"sync"
	"testing"

	"github.com/edgeway/edgeway/agent/metrics"
)

func TestConcurrentIncrements(t *testing.T) {
	const workers, perWorker = 8, 5000
	s := metrics.NewSet(map[string]string{"gateway": "coap"})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			// Look the names up every time, so creation races too.
			for range perWorker {
				s.Counter(metrics.PacketsReceived).Inc()
				s.Counter(metrics.BytesReceived).Add(3)
				s.Counter(metrics.DeliveryDropped("queue_full")).Inc()
				g := s.Gauge(metrics.ConnectionsCount)
				g.Inc()
				g.Dec()
			}
			s.Gauge("workers").Add(int64(w))
		})
		wg.Go(func() {
			for range perWorker / 100 {
				_ = s.Snapshot()
			}
		})
	}
	wg.Wait()

	want := map[string]float64{
		metrics.PacketsReceived:               workers * perWorker,
		metrics.BytesReceived:                 3 * workers * perWorker,
		metrics.DeliveryDropped("queue_full"): workers * perWorker,
		metrics.ConnectionsCount:              0,
		"workers":                             workers * (workers - 1) / 2,
	}
	if got := s.Snapshot(); !maps.Equal(got, want) {
		t.Errorf("Snapshot() = %v, want %v", got, want)
	}
	if got := s.Counter(metrics.PacketsReceived).Load(); got != workers*perWorker {
		t.Errorf("Load() = %d", got)
	}
}

func TestSetSnapshotAndLabels(t *testing.T) {
	labels := map[string]string{"gateway": "mqttsn", "listener": "mqttsn:udp:default"}
	s := metrics.NewSet(labels)
	labels["gateway"] = "changed" // NewSet keeps its own copy

	if got := s.Snapshot(); len(got) != 0 {
		t.Errorf("new Set snapshot = %v", got)
	}
	c := s.Counter(metrics.MessagesReceived)
	c.Add(41)
	c.Inc()
	if s.Counter(metrics.MessagesReceived) != c {
		t.Error("second lookup returned another counter")
	}
	g := s.Gauge(metrics.ConnectionsCount)
	g.Set(10)
	g.Add(-3)
	g.Dec()
	s.Counter(metrics.BytesSent) // created at zero

	want := map[string]float64{metrics.MessagesReceived: 42, metrics.ConnectionsCount: 6, metrics.BytesSent: 0}
	if got := s.Snapshot(); !maps.Equal(got, want) {
		t.Errorf("Snapshot() = %v, want %v", got, want)
	}
	got := s.Labels()
	if want := map[string]string{"gateway": "mqttsn", "listener": "mqttsn:udp:default"}; !maps.Equal(got, want) {
		t.Errorf("Labels() = %v, want %v", got, want)
	}
	got["gateway"] = "x"
	if s.Labels()["gateway"] != "mqttsn" {
		t.Error("Labels() returned the Set's own map")
	}
}

func TestKindClashPanics(t *testing.T) {
	s := metrics.NewSet(nil)
	s.Counter("a")
	s.Gauge("b")
	for name, f := range map[string]func(){
		"Gauge of a counter": func() { s.Gauge("a") },
		"Counter of a gauge": func() { s.Counter("b") },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s did not panic", name)
				}
			}()
			f()
		}()
	}
}

func TestRegistry(t *testing.T) {
	r := metrics.NewRegistry()
	gw := r.Set("gateway:mqttsn", map[string]string{"gateway": "mqttsn"})
	if r.Set("gateway:mqttsn", map[string]string{"gateway": "other"}) != gw {
		t.Fatal("Set did not return the existing Set")
	}
	if gw.Labels()["gateway"] != "mqttsn" {
		t.Error("labels of an existing Set replaced")
	}
	r.Set("client:mqttsn:b", map[string]string{"clientid": "b"})
	r.Set("client:mqttsn:a", map[string]string{"clientid": "a"})
	r.Set("listener:mqttsn:udp:default", nil)

	var keys []string
	r.Each(func(key string, s *metrics.Set) { keys = append(keys, key) })
	want := []string{"client:mqttsn:a", "client:mqttsn:b", "gateway:mqttsn", "listener:mqttsn:udp:default"}
	if !equal(keys, want) {
		t.Errorf("Each order %q, want %q", keys, want)
	}

	c := r.Set("client:mqttsn:a", nil).Counter(metrics.PacketsSent)
	r.Remove("client:mqttsn:a")
	r.Remove("no such key")
	if _, ok := r.Lookup("client:mqttsn:a"); ok {
		t.Error("Lookup found a removed Set")
	}
	if s, ok := r.Lookup("client:mqttsn:b"); !ok || s.Labels()["clientid"] != "b" {
		t.Error("Lookup lost another Set")
	}
	c.Inc() // a counter of a removed Set still works
	if s := r.Set("client:mqttsn:a", nil); s.Counter(metrics.PacketsSent).Load() != 0 {
		t.Error("Set after Remove did not start from zero")
	}

	// Each works on a copy: fn may remove.
	keys = nil
	r.Each(func(key string, s *metrics.Set) {
		r.Remove(key)
		keys = append(keys, key)
	})
	if len(keys) != 4 {
		t.Errorf("Each while removing visited %q", keys)
	}
	r.Each(func(key string, s *metrics.Set) { t.Errorf("%s left after removing all", key) })
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func BenchmarkCounterIncParallel(b *testing.B) {
	c := metrics.NewSet(nil).Counter(metrics.PacketsReceived)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c.Inc()
		}
	})
}

func BenchmarkSetCounterLookup(b *testing.B) {
	s := metrics.NewSet(map[string]string{"gateway": "mqttsn"})
	for _, n := range []string{metrics.BytesReceived, metrics.BytesSent, metrics.PacketsReceived, metrics.PacketsSent, metrics.MessagesReceived} {
		s.Counter(n)
	}
	b.ReportAllocs()
	for b.Loop() {
		s.Counter(metrics.PacketsReceived).Inc()
	}
}

func BenchmarkSetCounterLookupParallel(b *testing.B) {
	s := metrics.NewSet(map[string]string{"gateway": "mqttsn"})
	s.Counter(metrics.PacketsReceived)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			s.Counter(metrics.PacketsReceived).Inc()
		}
	})
}
