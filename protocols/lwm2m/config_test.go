package lwm2m

import (
	"os"
	"strings"
	"testing"

	"github.com/edgeway/edgeway/agent/config"
)

// The README's example config parses and validates.
func TestREADMEConfig(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "```toml\n")
	if !ok {
		t.Fatal("no toml block in README.md")
	}
	snippet, _, _ := strings.Cut(rest, "```")
	snippet = strings.ReplaceAll(snippet, "/etc/edgeway/lwm2m_xml", t.TempDir())
	c, err := config.Parse([]byte(snippet), "README.md")
	if err != nil {
		t.Fatalf("README config: %v", err)
	}
	spec, ok := c.Gateways["lwm2m"].Spec.(*Config)
	if !ok || spec.Translators.Command.Topic != "dn/#" || spec.QmodeTimeWindow.D().Seconds() != 22 {
		t.Fatalf("README config decoded as %+v", c.Gateways["lwm2m"])
	}
}
