package auth

import (
	"errors"
	"os"
	"testing"

	"github.com/edgeway/edgeway/agent/config"
	"github.com/edgeway/edgeway/agent/gateway"
)

// testKind is a throw-away gateway kind so that config.Parse accepts
// [gateway.authtest] sections. The snippets declare no listeners, so the
// transports package (the tcp listener type) is not needed.
const testKind = "authtest"

func TestMain(m *testing.M) {
	gateway.Register(gateway.Kind{
		Name:       testKind,
		Transports: []string{"tcp"},
		New: func(*gateway.Gateway) (gateway.Protocol, error) {
			return nil, errors.New("authtest: not runnable")
		},
	})
	code := m.Run()
	gateway.Unregister(testKind)
	os.Exit(code)
}

// parseChain parses a config snippet and returns the authtest gateway's chain.
func parseChain(t *testing.T, snippet string) []*config.Authn {
	t.Helper()
	c, err := config.Parse([]byte(snippet), "test.toml")
	if err != nil {
		t.Fatalf("config.Parse: %v", err)
	}
	gw, ok := c.Gateways[testKind]
	if !ok {
		t.Fatalf("no [gateway.%s] in parsed config", testKind)
	}
	return gw.Authentication.Chain
}
