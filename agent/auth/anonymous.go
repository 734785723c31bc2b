package auth

import (
	"context"

	"github.com/edgeway/edgeway/agent/gateway"
)

func init() {
	gateway.RegisterAuthn(gateway.AuthnType{
		Name: "anonymous",
		New: func(any, gateway.AuthnEnv) (gateway.Authenticator, error) {
			return Anonymous{}, nil
		},
	})
}

// Anonymous is the "anonymous" authenticator: it allows every client.
type Anonymous struct{}

// Authenticate implements gateway.Authenticator.
func (Anonymous) Authenticate(context.Context, *gateway.ClientInfo) gateway.AuthResult {
	return gateway.AuthResult{Decision: gateway.Allow}
}
