package benchkit

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
)

// Proxy forwards TCP connections to a backend until told to black-hole
// them: then it keeps every connection open, reads and discards what
// either side sends, and accepts new connections the same way — a cloud
// link that silently died, as a carrier NAT or a dead route makes it.
type Proxy struct {
	Addr    string
	backend string
	ln      net.Listener
	hole    atomic.Bool
	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	wg      sync.WaitGroup
	// Accepted counts connections made to the proxy.
	Accepted atomic.Int64
}

// NewProxy listens on a free loopback port and forwards to backend.
func NewProxy(backend string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{Addr: ln.Addr().String(), backend: backend, ln: ln, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Blackhole starts (true) or stops (false) swallowing traffic. Stopping
// closes the swallowed connections, so the client sees the link fail.
func (p *Proxy) Blackhole(on bool) {
	p.hole.Store(on)
	if !on {
		p.closeAll()
	}
}

func (p *Proxy) track(c net.Conn, add bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if add {
		p.conns[c] = struct{}{}
	} else {
		delete(p.conns, c)
	}
}

func (p *Proxy) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}

// Close stops the proxy and every connection.
func (p *Proxy) Close() {
	p.ln.Close()
	p.closeAll()
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.Accepted.Add(1)
		p.track(c, true)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer p.track(c, false)
			defer c.Close()
			if p.hole.Load() {
				_, _ = io.Copy(io.Discard, c)
				return
			}
			b, err := net.Dial("tcp", p.backend)
			if err != nil {
				return
			}
			p.track(b, true)
			defer p.track(b, false)
			defer b.Close()
			done := make(chan struct{}, 2)
			pipe := func(dst, src net.Conn) {
				buf := make([]byte, 32<<10)
				for {
					n, err := src.Read(buf)
					if n > 0 && !p.hole.Load() {
						if _, werr := dst.Write(buf[:n]); werr != nil {
							break
						}
					}
					if err != nil {
						break
					}
				}
				done <- struct{}{}
			}
			go pipe(b, c)
			go pipe(c, b)
			<-done
		}()
	}
}
