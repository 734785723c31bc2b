package uplink

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// dial opens the transport for one connection attempt: TCP, TLS over TCP,
// or a websocket (ws, wss) carrying MQTT in binary messages.
func (u *Uplink) dial(ctx context.Context) (net.Conn, error) {
	var tcfg *tls.Config
	if u.s.secure {
		var err error
		if tcfg, err = u.tlsConfig(); err != nil {
			return nil, err
		}
	}
	if u.s.websocket {
		d := websocket.Dialer{
			NetDialContext:   u.dialer.DialContext,
			TLSClientConfig:  tcfg,
			Subprotocols:     []string{"mqtt"},
			HandshakeTimeout: u.s.connectTimeout,
			ReadBufferSize:   16 << 10,
			WriteBufferSize:  16 << 10,
		}
		ws, resp, err := d.DialContext(ctx, u.s.wsURL, nil)
		if resp != nil && resp.Body != nil {
			resp.Body.Close()
		}
		if err != nil {
			if resp != nil {
				return nil, fmt.Errorf("websocket handshake: %s: %w", resp.Status, err)
			}
			return nil, fmt.Errorf("websocket: %w", err)
		}
		return &wsConn{ws: ws}, nil
	}
	nc, err := u.dialer.DialContext(ctx, "tcp", u.s.addr)
	if err != nil {
		return nil, err
	}
	if tcfg == nil {
		return nc, nil
	}
	tc := tls.Client(nc, tcfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		nc.Close()
		roots := "the system roots"
		if u.s.tls.CAFile != "" {
			roots = "tls.cacertfile " + u.s.tls.CAFile
		}
		return nil, fmt.Errorf("TLS handshake (server checked against %s): %w", roots, err)
	}
	return tc, nil
}

// tlsConfig reads the [uplink.tls] files. Verification is on unless
// insecure_skip_verify says otherwise.
func (u *Uplink) tlsConfig() (*tls.Config, error) {
	t := u.s.tls
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         t.ServerName,
		InsecureSkipVerify: t.InsecureSkipVerify, // explicit opt-in, warned about at Start
	}
	if cfg.ServerName == "" {
		cfg.ServerName = u.s.host
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.cacertfile: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.cacertfile %s: no PEM certificate found", t.CAFile)
		}
		cfg.RootCAs = pool
	}
	if t.CertFile != "" || t.KeyFile != "" {
		if t.CertFile == "" || t.KeyFile == "" {
			return nil, errors.New("tls: certfile and keyfile go together")
		}
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls.certfile/keyfile: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// wsConn is a websocket as a byte stream. MQTT packets may span
// websocket messages, and one message may hold several packets.
type wsConn struct {
	ws  *websocket.Conn
	r   io.Reader // current message
	wmu sync.Mutex
}

func (c *wsConn) Read(p []byte) (int, error) {
	for {
		if c.r == nil {
			typ, r, err := c.ws.NextReader()
			if err != nil {
				return 0, err
			}
			if typ != websocket.BinaryMessage {
				return 0, errors.New("websocket: text message where MQTT expects binary")
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if err == io.EOF {
			c.r = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

func (c *wsConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *wsConn) Close() error                       { return c.ws.Close() }
func (c *wsConn) LocalAddr() net.Addr                { return c.ws.LocalAddr() }
func (c *wsConn) RemoteAddr() net.Addr               { return c.ws.RemoteAddr() }
func (c *wsConn) SetReadDeadline(t time.Time) error  { return c.ws.SetReadDeadline(t) }
func (c *wsConn) SetWriteDeadline(t time.Time) error { return c.ws.SetWriteDeadline(t) }
func (c *wsConn) SetDeadline(t time.Time) error {
	if err := c.ws.SetReadDeadline(t); err != nil {
		return err
	}
	return c.ws.SetWriteDeadline(t)
}
