package agent

// The one place that pulls in listener types, authenticator types and
// gateway kinds; each registers itself from init. A product that wants a
// smaller binary drops a kind here (or behind a build tag).
import (
	_ "github.com/edgeway/edgeway/agent/auth"
	_ "github.com/edgeway/edgeway/transports"
)
