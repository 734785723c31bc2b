package auth

import (
	"context"
	"slices"
	"testing"

	"github.com/edgeway/edgeway/agent/gateway"
)

// TestChainOrder runs parsed chains through the framework's BuildChain and Run.
func TestChainOrder(t *testing.T) {
	builtin := "[[gateway.authtest.authentication]]\ntype = \"built_in\"\nusers = [ { user_id = \"dev1\", password_hash = \"" + hashPasswd + "\" } ]\n"
	anonymous := "[[gateway.authtest.authentication]]\ntype = \"anonymous\"\n"
	disabledAnonymous := "[[gateway.authtest.authentication]]\ntype = \"anonymous\"\nenable = false\n"
	for _, c := range []struct {
		name  string
		links string
		ci    *gateway.ClientInfo
		want  gateway.Decision
		types []string
	}{
		{"unknown user falls through to anonymous", builtin + anonymous, client("c", "stranger", "x"), gateway.Allow, []string{"built_in", "anonymous"}},
		{"known user, right password", builtin + anonymous, client("c", "dev1", "passwd"), gateway.Allow, []string{"built_in", "anonymous"}},
		{"wrong password stops the chain", builtin + anonymous, client("c", "dev1", "wrong"), gateway.Deny, []string{"built_in", "anonymous"}},
		{"disabled anonymous is skipped", builtin + disabledAnonymous, client("c", "stranger", "x"), gateway.Deny, []string{"built_in"}},
		{"disabled first link is skipped", disabledAnonymous + builtin, client("c", "dev1", "passwd"), gateway.Allow, []string{"built_in"}},
		{"all ignore denies", builtin, client("c", "stranger", "x"), gateway.Deny, []string{"built_in"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			chain, err := gateway.BuildChain(parseChain(t, "[gateway.authtest]\n"+c.links), gateway.AuthnEnv{SecurityProfile: "hardened"})
			if err != nil {
				t.Fatal(err)
			}
			defer chain.Close()
			if got := chain.Types(); !slices.Equal(got, c.types) {
				t.Fatalf("chain types %v; want %v", got, c.types)
			}
			if got := chain.Run(context.Background(), c.ci); got.Decision != c.want {
				t.Fatalf("Run = %v (%s); want %v", got.Decision, got.Reason, c.want)
			}
		})
	}
}

// TestBuildChainRejectsBadSpec: specs built in code (not from a file)
// are validated by the constructors too.
func TestBuildChainRejectsBadSpec(t *testing.T) {
	chain := parseChain(t, "[gateway.authtest]\n[[gateway.authtest.authentication]]\ntype = \"built_in\"\n")
	chain[0].Spec.(*BuiltinSpec).Users = []UserSpec{{UserID: "x", PasswordHash: "nope"}}
	if _, err := gateway.BuildChain(chain, gateway.AuthnEnv{}); err == nil {
		t.Fatal("BuildChain accepted a malformed hash")
	}
}
