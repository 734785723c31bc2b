//go:build !nogw_gbt32960 && (!nogw_all || gw_gbt32960)

package agent

import _ "github.com/edgeway/edgeway/protocols/gbt32960"
