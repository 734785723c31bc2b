//go:build !nogw_stomp && (!nogw_all || gw_stomp)

package agent

import _ "github.com/edgeway/edgeway/protocols/stomp"
