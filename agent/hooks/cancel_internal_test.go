package hooks

import (
	"runtime"
	"sync/atomic"
	"testing"
)

func TestCancelWaitsForConsumer(t *testing.T) {
	const queued = 5
	b := New(Options{})
	defer b.Close()

	started := make(chan struct{})
	release := make(chan struct{})
	var handled atomic.Int64
	var cancelReturned, calledAfterCancel atomic.Bool
	cancel := b.Subscribe("w", []Name{MessageAcked}, queued, func(e Event) {
		if handled.Load() == 0 {
			close(started)
			<-release
		}
		if cancelReturned.Load() {
			calledAfterCancel.Store(true)
		}
		handled.Add(1)
	})
	c := b.consumers[0]

	b.Emit(Event{Name: MessageAcked})
	<-started
	for range queued {
		b.Emit(Event{Name: MessageAcked})
	}
	done := make(chan struct{})
	go func() {
		cancel()
		cancelReturned.Store(true)
		close(done)
	}()
	// Once the consumer is unregistered, cancel is in its wait while the
	// func is still blocked.
	for b.Enabled(MessageAcked) {
		runtime.Gosched()
	}
	if cancelReturned.Load() {
		t.Fatal("cancel returned while the consumer's func was running")
	}
	close(release)
	<-done

	select {
	case <-c.exited:
	default:
		t.Fatal("cancel returned before the consumer goroutine exited")
	}
	if n := handled.Load(); n != 1+queued {
		t.Errorf("handled %d events, want %d: cancel must hand over what is queued", n, 1+queued)
	}
	if calledAfterCancel.Load() {
		t.Error("func called after cancel returned")
	}
	b.Emit(Event{Name: MessageAcked})
	cancel() // idempotent
	if n := handled.Load(); n != 1+queued {
		t.Errorf("handled %d events after cancel", n)
	}
}
