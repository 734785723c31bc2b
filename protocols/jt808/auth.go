package jt808

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// registration is what the gateway remembers of a terminal that
// registered: the auth code it was given (bound to its phone) and the
// identity fields that end up in its ClientInfo.
type registration struct {
	code         string
	manufacturer string
	terminalID   string
	at           time.Time
}

func newAuthCode() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// errRejected is a definite answer of the auth service (no retry).
var errRejected = errors.New("jt808/auth: rejected")

// authClient calls the HTTP registry and authentication services.
type authClient struct {
	hc      *http.Client
	retries int
	backoff time.Duration
}

// post sends body as JSON and returns the response body of a 2xx answer.
// Transport errors and 5xx answers are retried with doubling backoff;
// other statuses are a rejection.
func (a *authClient) post(ctx context.Context, url string, body any) ([]byte, error) {
	payload, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	wait := a.backoff
	var last error
	for attempt := 0; attempt <= a.retries; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(wait):
			}
			wait *= 2
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(payload))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := a.hc.Do(req)
		if err != nil {
			last = err
			continue
		}
		rb, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		switch {
		case err != nil:
			last = err
		case resp.StatusCode >= 500:
			last = fmt.Errorf("jt808/auth: %s answered %d", url, resp.StatusCode)
		case resp.StatusCode >= 200 && resp.StatusCode < 300:
			return rb, nil
		default:
			return nil, fmt.Errorf("%w: %s answered %d", errRejected, url, resp.StatusCode)
		}
	}
	return nil, last
}

// register asks the registry; it returns the 0x8100 result and the code.
func (a *authClient) register(ctx context.Context, url, phone string, body obj) (byte, string, error) {
	m := map[string]any{"phone": phone}
	for _, e := range body {
		m[e.k] = e.v
	}
	rb, err := a.post(ctx, url, m)
	if err != nil {
		if errors.Is(err, errRejected) {
			return 2, "", nil
		}
		return 0, "", err
	}
	var ans struct {
		Code     *int   `json:"code"`
		AuthCode string `json:"authcode"`
	}
	if err := json.Unmarshal(rb, &ans); err != nil || ans.Code == nil {
		return 0, "", fmt.Errorf("jt808/auth: registry answer is not {code, authcode}")
	}
	if *ans.Code != 0 {
		if *ans.Code >= 1 && *ans.Code <= 4 {
			return byte(*ans.Code), "", nil
		}
		return 2, "", nil
	}
	if ans.AuthCode == "" {
		return 0, "", fmt.Errorf("jt808/auth: registry gave an empty authcode")
	}
	return 0, ans.AuthCode, nil
}

// authenticate asks the authentication service about code and phone.
func (a *authClient) authenticate(ctx context.Context, url, phone, code string) (bool, error) {
	_, err := a.post(ctx, url, map[string]any{"code": code, "phone": phone})
	if errors.Is(err, errRejected) {
		return false, nil
	}
	return err == nil, err
}
