package agent

// Listener types and authenticator types register themselves from init;
// gateway kinds come in through one file each, agent/kinds_<kind>.go, with
// build tags: -tags nogw_<kind> drops one gateway, -tags nogw_all drops
// all, and nogw_all,gw_<kind> keeps only that one.
import (
	_ "github.com/edgeway/edgeway/agent/auth"
	_ "github.com/edgeway/edgeway/transports"
)
