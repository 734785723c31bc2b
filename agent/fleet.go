package agent

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edgeway/edgeway/agent/broker"
	"github.com/edgeway/edgeway/agent/config"
	"github.com/edgeway/edgeway/uplink"
)

// Push is a config pushed by fleet management on [fleet] config_topic.
//
// The signature is Ed25519 over SignedBytes(version, config) by one of
// [fleet] trusted_keys. Version must grow from push to push: a replayed
// (or older) push is rejected, so a captured message cannot roll a box
// back to an old config.
type Push struct {
	Version uint64 `json:"version"`
	Config  string `json:"config"`
	// Sig is the base64 Ed25519 signature.
	Sig string `json:"sig"`
}

// SignedBytes is what a push's signature covers.
func SignedBytes(version uint64, cfg string) []byte {
	return []byte("edgeway-config-v1\n" + strconv.FormatUint(version, 10) + "\n" + cfg)
}

// PushResult is published on [fleet] config_result_topic after each push.
type PushResult struct {
	Version         uint64         `json:"version"`
	OK              bool           `json:"ok"`
	Applied         []string       `json:"applied,omitempty"`
	RestartRequired []string       `json:"restart_required,omitempty"`
	RolledBack      bool           `json:"rolled_back,omitempty"`
	Error           string         `json:"error,omitempty"`
	Errors          []config.Error `json:"errors,omitempty"`
	Time            time.Time      `json:"time"`
}

// fleet receives pushes through a local broker session subscribed to the
// config topic; the uplink mirrors that subscription upstream like any
// device's, so pushes come down the same path as any cloud message.
type fleet struct {
	a       *Agent
	topic   string
	result  string
	keys    []ed25519.PublicKey
	sess    *broker.Session
	work    chan broker.Delivery
	ctx     context.Context
	cancel  context.CancelFunc
	done    sync.WaitGroup
	verFile string
}

func (f *fleet) Deliver(d broker.Delivery) {
	select {
	case f.work <- d:
	default:
		// A flood of pushes: the newest wins anyway; count and drop.
		f.a.log.Warn("fleet: push dropped, one is still being applied")
		if d.ID != 0 {
			f.sess.Ack(d.ID)
		}
	}
}

func (a *Agent) startFleet() error {
	fc := a.cfg.Fleet
	if fc.ConfigTopic.IsZero() {
		return nil
	}
	f := &fleet{a: a, topic: fc.ConfigTopic.Render(a.vars), result: fc.ConfigResultTopic.Render(a.vars),
		work:    make(chan broker.Delivery, 1),
		verFile: filepath.Join(a.cfg.Agent.DataDir, "fleet.version")}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	for _, k := range fc.TrustedKeys {
		b, _ := base64.StdEncoding.DecodeString(k) // checked by config
		f.keys = append(f.keys, ed25519.PublicKey(b))
	}
	f.sess, _ = a.broker.OpenSession("agent/fleet", f, true, broker.SessionOptions{MaxQueueLen: 4})
	if _, err := f.sess.Subscribe(f.topic, 1); err != nil {
		f.sess.Close()
		return fmt.Errorf("fleet: config_topic: %w", err)
	}
	f.done.Add(1)
	go f.loop()
	a.fleet = f
	return nil
}

func (f *fleet) close() {
	f.cancel()
	f.done.Wait()
	f.sess.Close()
}

func (f *fleet) loop() {
	defer f.done.Done()
	for {
		select {
		case <-f.ctx.Done():
			return
		case d := <-f.work:
			res := f.handle(d.Msg.Payload)
			if d.ID != 0 {
				f.sess.Ack(d.ID)
			}
			f.publish(res)
		}
	}
}

func (f *fleet) publish(r PushResult) {
	if f.result == "" {
		return
	}
	r.Time = time.Now().UTC()
	b, _ := json.Marshal(r)
	if _, err := f.a.broker.Publish(&broker.Message{Topic: f.result, Payload: b, QoS: 1}); err != nil {
		f.a.log.Warn("fleet: result not published", "error", err)
	}
}

// handle verifies and applies one push. Nothing is touched unless the
// signature is good, the version new, and the config valid.
func (f *fleet) handle(payload []byte) PushResult {
	var p Push
	if err := json.Unmarshal(payload, &p); err != nil {
		return f.reject(0, "push is not JSON {version, config, sig}: "+err.Error())
	}
	sig, err := base64.StdEncoding.DecodeString(p.Sig)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return f.reject(p.Version, "push is not signed")
	}
	signed := SignedBytes(p.Version, p.Config)
	trusted := false
	for _, k := range f.keys {
		if ed25519.Verify(k, signed, sig) {
			trusted = true
			break
		}
	}
	if !trusted {
		return f.reject(p.Version, "signature does not verify with any trusted key")
	}
	if last := f.lastVersion(); p.Version <= last {
		return f.reject(p.Version, fmt.Sprintf("version %d is not newer than %d (replay?)", p.Version, last))
	}
	r, rolledBack, err := f.a.applyGuarded(f.ctx, []byte(p.Config), "fleet")
	res := PushResult{Version: p.Version, Applied: r.Applied, RestartRequired: r.RestartRequired, RolledBack: rolledBack}
	var es config.Errors
	switch {
	case errors.As(err, &es):
		res.Error = "config not valid"
		for _, e := range es {
			res.Errors = append(res.Errors, *e)
		}
		f.a.log.Warn("fleet: push rejected", "version", p.Version, "errors", len(es))
		return res
	case err != nil:
		res.Error = err.Error()
	default:
		res.OK = !rolledBack
	}
	// A push that was applied (even partly, or then rolled back) uses up
	// its version.
	f.saveVersion(p.Version)
	return res
}

func (f *fleet) reject(v uint64, why string) PushResult {
	f.a.log.Warn("fleet: push rejected", "version", v, "reason", why)
	return PushResult{Version: v, Error: why}
}

func (f *fleet) lastVersion() uint64 {
	b, err := os.ReadFile(f.verFile)
	if err != nil {
		return 0
	}
	v, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return v
}

func (f *fleet) saveVersion(v uint64) {
	if err := writeAtomic(f.verFile, []byte(strconv.FormatUint(v, 10)+"\n")); err != nil {
		f.a.log.Error("fleet: version not saved", "error", err)
	}
}

// applyGuarded applies a pushed config; if it changed the uplink and the
// uplink is not connected within [fleet] rollback_after, the previous
// config is applied again. It reports whether it rolled back.
func (a *Agent) applyGuarded(ctx context.Context, data []byte, source string) (Report, bool, error) {
	prev, perr := a.configText()
	r, err := a.ApplyTOML(ctx, data, source, true)
	if err != nil {
		return r, false, err
	}
	wait := a.Config().Fleet.RollbackAfter.D()
	touchedUplink := false
	for _, s := range r.Applied {
		if s == "uplink" {
			touchedUplink = true
		}
	}
	if wait <= 0 || !touchedUplink || perr != nil {
		return r, false, nil
	}
	if a.waitUplink(ctx, wait) {
		return r, false, nil
	}
	if ctx.Err() != nil {
		// Shutting down: the next start decides with the config on disk.
		return r, false, ctx.Err()
	}
	a.log.Error("pushed config lost the uplink: rolling back", "source", source, "after", wait)
	if _, err := a.ApplyTOML(context.Background(), prev, "rollback", true); err != nil {
		return r, false, fmt.Errorf("rollback failed: %w", err)
	}
	return r, true, nil
}

// waitUplink waits until the uplink is connected, d has passed or ctx ends.
func (a *Agent) waitUplink(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if u := a.Uplink(); u != nil && u.Status().State == uplink.StateConnected {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return false
		case <-tick.C:
		}
	}
}

// configText is the running config's text: the file, or the newest kept version.
func (a *Agent) configText() ([]byte, error) {
	if a.opts.ConfigPath != "" {
		if b, err := os.ReadFile(a.opts.ConfigPath); err == nil {
			return b, nil
		}
	}
	h, err := a.History()
	if err != nil || len(h) == 0 {
		return nil, errors.New("agent: running config text unknown")
	}
	return os.ReadFile(h[len(h)-1])
}
